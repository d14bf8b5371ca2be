"""Images per second and peak memory of ``hamner preprocess`` with the packaged models.

The 30 sample images in ``<data-root>/twitter20{15,17}/images`` are linked again and again into a
temporary folder (``--images`` of them in all), and the folder is preprocessed three times, each in a
fresh process so that peak memory is its own: backbone only, detector only, and both, ``--repeats``
times in turn. Time includes decoding and the first (warm-up) image. Model loading
is timed apart from extraction. Writes ``results/bench_preprocess.csv``.

    python benchmarks/preprocess_throughput.py --images 300 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {
    "backbone": ["detector=null"],
    "detector": ["backbone=null"],
    "both": [],
}


def worker(images: str, out: str, mode: str, threads: int) -> None:
    """Runs in a fresh process: load the models, preprocess the folder, print one JSON line."""
    import torch

    from hamner.vision import set_threads
    from hamner.vision.cache import folder_entries, preprocess
    from hamner.vision.config import load_vision_config
    from hamner.vision.extractor import VisualExtractor

    set_threads(threads)
    t0 = time.perf_counter()
    cfg = load_vision_config(None, MODES[mode])
    extractor = VisualExtractor(cfg)
    _ = extractor.fingerprint
    load_s = time.perf_counter() - t0
    entries = folder_entries(images)
    t1 = time.perf_counter()
    manifest = preprocess(entries, out, extractor, progress=False)
    seconds = time.perf_counter() - t1
    print(
        json.dumps(
            {
                "mode": mode,
                "images": len(entries),
                "found": manifest["counts"]["images_found"],
                "threads": threads,
                "torch_threads": torch.get_num_threads(),
                "load_s": round(load_s, 2),
                "seconds": round(seconds, 2),
                "images_per_s": round(len(entries) / seconds, 2),
                "objects_per_image": manifest["objects_per_image"]["mean"],
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


def batch_sweep(samples: list[Path], threads: int, sizes: list[int], repeats: int) -> list[dict[str, object]]:
    """Milliseconds per image of the packaged backbone and detector at several batch sizes."""
    import cv2
    import numpy as np
    import torch

    from hamner.vision import set_threads
    from hamner.vision.backbones import EfficientNetLite0
    from hamner.vision.detectors import OpenCVSSDDetector
    from hamner.vision.images import load_image

    set_threads(threads)
    backbone, detector = EfficientNetLite0().eval(), OpenCVSSDDetector()
    images = [load_image(p).image for p in samples]
    tensors = torch.stack([backbone.preprocessing.to_tensor(im) for im in images])  # shape: (n, 3, 224, 224)
    arrays = [np.asarray(im) for im in images]
    rows: list[dict[str, object]] = []
    for size in sizes:
        batches = [list(range(i, min(i + size, len(images)))) for i in range(0, len(images), size)]
        for part in ("backbone", "detector"):
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                with torch.inference_mode():
                    for idx in batches:
                        if part == "backbone":
                            backbone(tensors[idx])
                        else:
                            blob = cv2.dnn.blobFromImages([arrays[i] for i in idx], size=(300, 300), swapRB=False)
                            with detector.borrow_net() as net:
                                net.setInput(blob)
                                net.forward()
                best = min(best, (time.perf_counter() - t0) / len(images))
            rows.append({"part": part, "batch_size": size, "ms_per_image": round(best * 1000, 1), "threads": threads})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.environ.get("HAMNER_DATA_ROOT", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    parser.add_argument("--images", type=int, default=300, help="how many images to preprocess (the samples repeated)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (each a fresh process)")
    parser.add_argument("--out", default="results/bench_preprocess.csv")
    parser.add_argument(
        "--batch-sweep", action="store_true",
        help="instead: ms per image of backbone and detector at batch sizes 1, 4, 8 -> results/bench_preprocess_batch.csv",
    )
    parser.add_argument("--worker", nargs=3, metavar=("IMAGES", "OUT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.worker[2], args.threads)
        return

    from _results import run_meta, write_csv

    root = Path(args.data_root)
    samples = sorted((root / "twitter2015" / "images").glob("*.jpg")) + sorted((root / "twitter2017" / "images").glob("*.jpg"))
    if not samples:
        sys.exit(f"no sample images under {root}/twitter20*/images")
    meta = run_meta("preprocess_throughput.py")
    if args.batch_sweep:
        sweep = batch_sweep(samples, args.threads, [1, 4, 8], args.repeats)
        write_csv(Path(args.out).with_name("bench_preprocess_batch.csv"), sweep, meta)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="hamner-bench-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i in range(args.images):
            src = samples[i % len(samples)]
            (folder / f"img{i:05d}{src.suffix}").symlink_to(src.resolve())
        for run in range(1, args.repeats + 1):
            for mode in args.modes:
                out_dir = Path(tmp) / f"out-{mode}-{run}"
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--worker", str(folder), str(out_dir), mode]
                done = subprocess.run(cmd, check=True, capture_output=True, text=True)
                parsed = json.loads(done.stdout.strip().splitlines()[-1])
                result = {"mode": parsed["mode"], "run": run, **parsed}
                print(result, flush=True)
                rows.append(result)
    write_csv(args.out, rows, meta)
    for mode in args.modes:
        rates = sorted(r["images_per_s"] for r in rows if r["mode"] == mode)
        print(f"{mode}: median {rates[len(rates) // 2]} images/s (min {rates[0]}, max {rates[-1]})")


if __name__ == "__main__":
    main()
