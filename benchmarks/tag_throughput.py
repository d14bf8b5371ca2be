#!/usr/bin/env python3
"""Tagging speed and memory of a checkpoint on a dataset split, written to a results file.

    python benchmarks/tag_throughput.py --model RUN/best [--dataset twitter2017] [--split test]
        [--batch-sizes 1 32] [--threads 2] [--out results/bench_tag.csv]

Measures raw text -> entities through the public API (``Tagger.tag_many``: tokenisation, encoding,
encoder, CRF decoding), after one warm-up pass, and appends one row per batch size with posts per
second, peak resident memory, the commit and the machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch

from hamner.data.datasets import load_split
from hamner.env import git_revision, machine_description, package_versions, peak_memory_mb
from hamner.inference.tagger import Tagger


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default="twitter2017")
    ap.add_argument("--split", default="test")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N posts")
    ap.add_argument("--out", type=Path, default=Path("results/bench_tag.csv"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    posts = load_split(args.dataset, args.split, args.data_root)[: args.limit]
    texts = [" ".join(p.words) for p in posts]
    rows = []
    for bs in args.batch_sizes:
        tagger = Tagger.from_pretrained(args.model, batch_size=bs)
        tagger.tag_many(texts[: 2 * bs])  # warm-up
        start = time.perf_counter()
        if bs == 1:
            for t in texts:
                tagger.tag(t)
        else:
            tagger.tag_many(texts)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "model": args.model,
                "dataset": args.dataset,
                "split": args.split,
                "posts": len(texts),
                "batch_size": bs,
                "threads": args.threads,
                "seconds": round(seconds, 2),
                "posts_per_second": round(len(texts) / seconds, 1),
                "peak_mem_mb": round(peak_memory_mb(torch.device("cpu"))),
                "commit": git_revision()["commit"],
                "machine": machine_description(torch.device("cpu")),
                "torch": package_versions()["torch"],
            }
        )
        print(rows[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists()
    with args.out.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
