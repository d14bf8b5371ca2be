#!/usr/bin/env python3
"""An ensemble of trained runs against its members: dev and test F1, and a paired bootstrap on test.

    python scripts/ensemble_report.py --runs runs/ckpt/twitter2017/hamlearning/seed{1,2,3} \
        --features features/twitter2017 --out results/explore/ensemble3 [--samples 10000]

Each run directory is a finished training run (``best/``, ``final.json``, ``test_predictions.jsonl.gz``).
The ensemble (``hamner tag --model A --model B ...``: the product of the members' CRFs) tags the
dataset's dev and test splits once; its scores go to ``<out>/dev.json`` and ``<out>/test.json`` (the
JSON of ``hamner evaluate``) and its per-post tags to ``<out>/*_predictions.jsonl.gz``. Each member's
small files are copied to ``<out>/members/seed<k>/``. ``<out>/summary.json`` has the members' best dev
and test F1, the ensemble's, and a paired bootstrap over the test posts of the ensemble against the
members' mean (the members' own test predictions, checked against their final.json), with the command,
the commit and the machine. Refuses to write from a source tree with uncommitted changes unless
``--allow-dirty``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL_FILES = ("final.json", "run.json", "config.yaml", "metrics.jsonl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="finished training runs (two or more), one per member")
    ap.add_argument("--features", help="the dataset's feature cache (HamLearning members)")
    ap.add_argument("--data-root")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--allow-dirty", action="store_true", help="write results although the source tree has uncommitted changes")
    args = ap.parse_args()
    if len(args.runs) < 2:
        ap.error("an ensemble needs two or more runs")

    import torch

    from hamner.data.datasets import load_split
    from hamner.env import git_revision, machine_description
    from hamner.evaluation.metrics import entity_scores
    from hamner.evaluation.predictions import read_predictions, write_predictions
    from hamner.evaluation.significance import paired_bootstrap
    from hamner.inference.tagger import load_model
    from hamner.training.trainer import visual_inputs
    from hamner.vision.cache import FeatureStore

    rev = git_revision()
    if rev["dirty"] and not args.allow_dirty:
        raise SystemExit("the source tree has uncommitted changes: commit them first (or pass --allow-dirty, recorded as +dirty)")
    runs = [Path(r) for r in args.runs]
    finals = [json.loads((r / "final.json").read_text()) for r in runs]
    datasets = {f["dataset"] for f in finals}
    if len(datasets) != 1:
        raise SystemExit(f"the runs were tested on different datasets: {sorted(datasets)}")
    dataset = datasets.pop()
    model = load_model([r / "best" for r in runs])
    if model.config.multimodal and not args.features:
        raise SystemExit(f"the members of {', '.join(args.runs)} are HamLearning models: pass their dataset's feature cache with --features")
    store = FeatureStore.open(args.features) if model.config.multimodal else None
    args.out.mkdir(parents=True, exist_ok=True)
    scores = {}
    t0 = time.perf_counter()
    for split in ("dev", "test"):
        posts = load_split(dataset, split, args.data_root)
        preds = model.run([p.words for p in posts], visual_inputs(posts, store), args.batch_size, True, split)
        report = entity_scores([p.tags for p in posts], [p.tags for p in preds])
        scores[split] = report.micro.f1
        source = args.features if store is not None else "none (a text-only model)"
        out = {"dataset": dataset, "split": split, "visual_input": source, "precision": "fp32", **report.to_dict()}
        (args.out / f"{split}.json").write_text(json.dumps(out, indent=2) + "\n")
        write_predictions(args.out / f"{split}_predictions.jsonl.gz", posts, [p.tags for p in preds], [p.relevance for p in preds])
        print(f"ensemble {split} F1 {100 * report.micro.f1:.2f}", flush=True)
    seconds = time.perf_counter() - t0
    # the members' own test predictions, checked against what their runs reported
    members = []
    for r, f in zip(runs, finals, strict=True):
        got = read_predictions(r / "test_predictions.jsonl.gz")
        f1 = entity_scores([p.gold for p in got], [p.pred for p in got]).micro.f1
        if abs(f1 - f["test_f1"]) > 1e-12:
            raise SystemExit(f"{r}/test_predictions.jsonl.gz scores {f1} but final.json says {f['test_f1']}")
        members.append(got)
        dest = args.out / "members" / f"seed{f['seed']}"
        dest.mkdir(parents=True, exist_ok=True)
        for name in SMALL_FILES:
            shutil.copy2(r / name, dest / name)
    ens = read_predictions(args.out / "test_predictions.jsonl.gz")
    if [p.gold for p in ens] != [p.gold for p in members[0]]:
        raise SystemExit("the ensemble's test posts differ from the members' (another data root?)")
    boot = paired_bootstrap([p.gold for p in ens], [[p.pred for p in ens]], [[p.pred for p in m] for m in members], args.samples)
    dev_m = [f["dev_f1"] for f in finals]
    test_m = [f["test_f1"] for f in finals]
    summary = {
        "dataset": dataset,
        "members": [{"run": str(r), "seed": f["seed"], "best_dev_f1": f["dev_f1"], "test_f1": f["test_f1"]} for r, f in zip(runs, finals, strict=True)],
        "members_mean_dev_f1": sum(dev_m) / len(dev_m),
        "members_mean_test_f1": sum(test_m) / len(test_m),
        "ensemble_dev_f1": scores["dev"],
        "ensemble_test_f1": scores["test"],
        "dev_gain": scores["dev"] - sum(dev_m) / len(dev_m),
        "test_gain": scores["test"] - sum(test_m) / len(test_m),
        "test_bootstrap_vs_members_mean": {
            "delta": boot.delta, "ci_low": boot.ci_low, "ci_high": boot.ci_high, "confidence": boot.confidence,
            "p_value": boot.p_value, "samples": args.samples, "resamples": "test posts (the members and the ensemble fixed)",
        },
        "tagging_seconds_dev_and_test": round(seconds, 1),
        "command": "python scripts/ensemble_report.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "commit": f"{rev['commit']}{'+dirty' if rev['dirty'] else ''}",
        "machine": machine_description(torch.device("cpu")),
        "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("members", "command", "machine")}, indent=2))


if __name__ == "__main__":
    main()
