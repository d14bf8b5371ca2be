#!/usr/bin/env python3
"""Test (and dev) F1 of a checkpoint on PyTorch fp32 and exported to ONNX Runtime fp32 and int8.

    python benchmarks/onnx_f1.py --model RUN/best [--features DIR] [--out results/onnx_f1.csv]

Appends one row per runtime: the dataset the checkpoint was trained on, its dev and test F1
(entity-level, conlleval, the words as the dataset cuts them, as ``hamner evaluate``), the change
from PyTorch, and the share of test words whose tag differs from PyTorch's.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import run_meta  # noqa: E402

from hamner.data.datasets import load_split  # noqa: E402
from hamner.evaluation.metrics import entity_scores  # noqa: E402
from hamner.inference.onnx import export, is_exported, load_model  # noqa: E402
from hamner.training.trainer import visual_inputs  # noqa: E402
from hamner.vision.cache import FeatureStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--features")
    ap.add_argument("--data-root")
    ap.add_argument("--work", default="/tmp/hamner-onnx-f1")
    ap.add_argument("--out", default="results/onnx_f1.csv")
    args = ap.parse_args()
    src = Path(args.model)
    dataset = json.loads((src / "hamner_config.json").read_text())["trained_on"]
    work = Path(args.work) / dataset / src.parent.parent.name
    dirs = {"pytorch-fp32": src}
    for name, int8 in (("onnx-fp32", False), ("onnx-int8", True)):
        d = work / name
        if not is_exported(d):
            export(src, d, int8=int8)
        dirs[name] = d
    store = FeatureStore.open(args.features) if args.features else None
    splits = {s: load_split(dataset, s, args.data_root) for s in ("dev", "test")}
    vis = {s: visual_inputs(p, store) for s, p in splits.items()}
    tags: dict[str, dict[str, list[list[str]]]] = {}
    rows = []
    for name, d in dirs.items():
        model = load_model(d)
        tags[name] = {s: [p.tags for p in model.run([x.words for x in posts], vis[s], 32, progress=True, desc=f"{name} {s}")] for s, posts in splits.items()}
        f1 = {s: 100 * entity_scores([p.tags for p in posts], tags[name][s]).micro.f1 for s, posts in splits.items()}
        base = tags["pytorch-fp32"]["test"]
        words = [(a, b) for x, y in zip(base, tags[name]["test"], strict=True) for a, b in zip(x, y, strict=True)]
        rows.append({
            "dataset": dataset, "model": str(src), "kind": src.parent.parent.name, "runtime": name,
            "dev_f1": round(f1["dev"], 2), "test_f1": round(f1["test"], 2),
            "test_words_changed": sum(a != b for a, b in words), "test_words": len(words),
        })  # fmt: skip
    for r in rows:
        r["test_f1_minus_pytorch"] = round(r["test_f1"] - rows[0]["test_f1"], 2)
        print(r)
    meta = run_meta("onnx_f1.py")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with out.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], *meta])
        if new:
            w.writeheader()
        w.writerows({**r, **meta} for r in rows)


if __name__ == "__main__":
    main()
