#!/usr/bin/env python3
"""Seconds per training epoch of ``hamner train`` from one or more source trees, alternating, so
that a change to the training loop can be measured against the code before it on the same machine.

    python benchmarks/train_speed.py --tree before=/path/to/old/checkout --tree after=. \
        [--posts 320] [--repeats 3] [--threads 1] [--set train.precision=bf16] [--out results/bench_train_cpu.csv]

Each repeat runs every tree once, in turn (so slow drifts of a shared machine hit all of them), as
``python -m hamner.cli train --config configs/text-only.yaml`` on the first ``--posts`` Twitter-2017
training posts, one epoch, with the tree's ``src`` first on PYTHONPATH, and reads the epoch's
training seconds from the run's metrics.jsonl (evaluation excluded), and the SHA-256 of the
checkpoint it saved: equal hashes across trees mean the change left training bit for bit the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import run_meta, write_csv

ROOT = Path(__file__).resolve().parents[1]


def commit_of(tree: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def epoch_seconds(tree: Path, args: argparse.Namespace, out: Path) -> tuple[float, str]:
    cmd = [
        sys.executable, "-m", "hamner.cli", "train", "--config", str(tree / "configs" / "text-only.yaml"),
        "--set", f"data.max_train_posts={args.posts}", "--set", "data.max_eval_posts=64", "--set", "train.epochs=1",
        "--set", f"train.num_threads={args.threads}", "--set", "train.progress=false", "--set", f"train.output_dir={out}",
    ]  # fmt: skip
    for kv in args.set or []:
        cmd += ["--set", kv]
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    runs = list(out.glob("**/metrics.jsonl"))
    weights = runs[0].parent / "best" / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    return float(json.loads(runs[0].read_text().splitlines()[0])["epoch_seconds"]), digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", required=True, metavar="LABEL=DIR")
    ap.add_argument("--posts", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra config overrides for every tree")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_train_cpu.csv"))
    args = ap.parse_args()
    trees = {label: Path(d).resolve() for label, d in (t.split("=", 1) for t in args.tree)}
    times: dict[str, list[float]] = {label: [] for label in trees}
    digests: dict[str, set[str]] = {label: set() for label in trees}
    for r in range(args.repeats):
        for label, tree in trees.items():
            with tempfile.TemporaryDirectory() as tmp:
                seconds, digest = epoch_seconds(tree, args, Path(tmp))
            times[label].append(seconds)
            digests[label].add(digest)
            print(f"repeat {r + 1}: {label} {times[label][-1]:.1f} s", flush=True)
    first = next(iter(trees))
    rows = [
        {
            "tree": label, "tree_commit": commit_of(tree), "posts": args.posts, "threads": args.threads,
            "overrides": " ".join(args.set or []), "epoch_s_median": round(statistics.median(times[label]), 2),
            "epoch_s_min": round(min(times[label]), 2), "epoch_s_max": round(max(times[label]), 2),
            "vs_first": round(statistics.median(times[label]) / statistics.median(times[first]), 3),
            "repeats": args.repeats, "weights_sha256": " ".join(sorted(digests[label])),
        }  # fmt: skip
        for label, tree in trees.items()
    ]
    write_csv(args.out, rows, run_meta("train_speed.py"))


if __name__ == "__main__":
    main()
