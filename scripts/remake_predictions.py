#!/usr/bin/env python3
"""Write test_predictions.jsonl.gz for finished runs trained before training wrote it.

    python scripts/remake_predictions.py [--runs runs] [RUN_DIR ...]

For every run directory (default: all under --runs) that has final.json and its best/ checkpoint
but no test_predictions.jsonl.gz, runs ``hamner evaluate --split test --predictions`` on best/,
with the feature cache named by the run's config.yaml (data.features) for a multimodal model, and
then checks that the predictions score exactly the test_f1 in final.json; a mismatch deletes the
file and fails. The runs must have been trained on this data root (HAMNER_DATA_ROOT or --data-root).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from hamner.evaluation.metrics import entity_scores
from hamner.evaluation.predictions import read_predictions

PREDICTIONS = "test_predictions.jsonl.gz"


def remake(run: Path, data_root: str | None) -> str:
    out = run / PREDICTIONS
    if out.exists():
        return "kept"
    final = json.loads((run / "final.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    meta = json.loads((run / "best" / "hamner_config.json").read_text())
    cmd = [sys.executable, "-m", "hamner.cli", "evaluate", "--model", str(run / "best"), "--split", "test",
           "--dataset", final["dataset"], "--predictions", str(out), "--json"]  # fmt: skip
    if data_root:
        cmd += ["--data-root", data_root]
    if meta["model_class"] != "TextTagger":
        features = cfg["data"].get("features")
        if not features:
            raise SystemExit(f"{run}: a {meta['model_class']} run whose config.yaml names no data.features")
        cmd += ["--features", features.replace("{dataset}", final["dataset"])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{run}: hamner evaluate failed:\n{proc.stderr[-2000:]}")
    posts = read_predictions(out)
    f1 = entity_scores([p.gold for p in posts], [p.pred for p in posts]).micro.f1
    if abs(f1 - final["test_f1"]) > 1e-9:
        out.unlink()
        raise SystemExit(f"{run}: the remade predictions score {f1:.6f}, final.json says {final['test_f1']:.6f}")
    return f"written, F1 {f1:.4f} = final.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs_dirs", nargs="*", type=Path, help="run directories (default: every finished run under --runs)")
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--data-root")
    args = ap.parse_args()
    runs = args.runs_dirs or sorted(f.parent for f in args.runs.rglob("final.json"))
    for run in runs:
        if not (run / "best" / "hamner_config.json").exists():
            print(f"{run}: no best/ checkpoint, skipped", flush=True)
            continue
        print(f"{run}: {remake(run, args.data_root)}", flush=True)


if __name__ == "__main__":
    main()
