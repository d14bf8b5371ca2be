#!/usr/bin/env python3
"""What a model costs: tagging throughput with cached visual features, and its training cost.

    python benchmarks/model_cost.py --models runs/twitter2017/text-only/seed1 runs/twitter2017/hamlearning/seed1 \
        [--features features/twitter2017] [--split test] [--batch-sizes 1 32] [--threads 2] \
        [--out results/bench_model_cost.csv]

For each run directory (its ``best/`` checkpoint and ``final.json``): posts per second through
``TextTagger.run`` on the split's words, a multimodal model reading each post's features from the
cache (no image decoding: that cost is ``benchmarks/preprocess_throughput.py``'s), after a warm-up
pass; peak resident memory of the process after each measurement (each model is measured in a fresh
spawned process, since a process's peak only grows); and, from the run's own files, minutes per
training epoch and training peak memory. Run it on an otherwise idle machine: concurrent work changes every number.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import torch
from _results import run_meta, write_csv

from hamner.data.datasets import load_split
from hamner.env import peak_memory_mb
from hamner.models.tagger import TextTagger
from hamner.training.trainer import visual_inputs
from hamner.vision.cache import FeatureStore


def measure(run: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Throughput and peak memory of one run's ``best/`` checkpoint, in the calling process."""
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    final = json.loads((run / "final.json").read_text())
    model = TextTagger.from_pretrained(run / "best").eval()
    posts = load_split(final["dataset"], args.split, args.data_root)
    words = [p.words for p in posts]
    visuals = None
    if model.config.multimodal:
        store = FeatureStore.open(args.features or f"features/{final['dataset']}")
        visuals = visual_inputs(posts, store)  # a post missing from the cache is an error naming it
    for bs in args.batch_sizes:
        model.run(words[: 2 * bs], visuals[: 2 * bs] if visuals else None, batch_size=bs)  # warm-up
        start = time.perf_counter()
        model.run(words, visuals, batch_size=bs)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "run": str(run),
                "config": final["config"],
                "dataset": final["dataset"],
                "split": args.split,
                "posts": len(words),
                "batch_size": bs,
                "threads": args.threads,
                "posts_per_second": round(len(words) / seconds, 1),
                "tag_peak_mem_mb": round(peak_memory_mb(torch.device("cpu"))),
                "parameters": sum(p.numel() for p in model.parameters()),
                "train_epoch_minutes": round(final["epoch_minutes"], 2),
                "train_peak_mem_mb": round(final["peak_mem_mb"]),
                "train_machine": final["run"]["machine"],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True, help="run directories holding best/ and final.json")
    ap.add_argument(
        "--features", default=None, help="feature cache for multimodal models (default: features/<dataset>)"
    )
    ap.add_argument("--split", default="test")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=Path("results/bench_model_cost.csv"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    ctx = multiprocessing.get_context("spawn")
    for run in args.models:
        with ctx.Pool(1) as pool:  # a fresh process per model: its peak memory is its own
            measured = pool.apply(measure, (Path(run), args))
        for row in measured:
            print(row)
        rows.extend(measured)
    write_csv(args.out, rows, run_meta("model_cost.py"))


if __name__ == "__main__":
    main()
