#!/usr/bin/env python3
"""Tagging speed and memory of a checkpoint on a dataset split, written to a results file.

    python benchmarks/tag_throughput.py --model RUN/best [--dataset twitter2017] [--split test]
        [--batch-sizes 1 32] [--threads 2] [--out results/bench_tag.csv]
    python benchmarks/tag_throughput.py --model RUN/best --posts twitter2015:test btc:test --no-warmup
        --competing 1                   # posts never seen, first pass, one CPU-bound process beside

Measures raw text -> entities through the public API (``Tagger.tag_many``: tokenisation, encoding,
encoder, CRF decoding), after one warm-up pass (``--no-warmup``: none, so the first pass of a new
tagger is measured; with several batch sizes only the first is a new process's first pass), and
appends one row per batch size with posts per second, peak resident memory, the commit and the
machine. ``--posts`` reads other posts (``NAME:SPLIT``: a preset or a corpus folder under the data
root, e.g. ``btc:test``) instead of ``--dataset``/``--split``; ``--competing N`` runs N CPU-bound
processes while it measures; ``--threads 0`` leaves torch's default thread count. A results file
written before these columns existed is rewritten with them (empty in its old rows).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import torch

from hamner.data.datasets import load_split
from hamner.env import git_revision, machine_description, package_versions, peak_memory_mb
from hamner.inference.tagger import Tagger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import competing_load, post_texts, read_posts  # noqa: E402


def append_rows(path: Path, rows: list[dict[str, object]]) -> None:
    """Append ``rows`` to the CSV at ``path``; when they bring new columns, the file is rewritten
    with the old columns first and the new ones after them (empty in the old rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old: list[dict[str, str]] = []
    fields: list[str] = []
    if path.exists():
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            old = list(reader)
    new_fields = [k for r in rows for k in r if k not in fields]
    if path.exists() and not new_fields:
        with path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=fields).writerows(rows)
        return
    fields += list(dict.fromkeys(new_fields))
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(old)
        w.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default="twitter2017")
    ap.add_argument("--split", default="test")
    ap.add_argument("--posts", nargs="+", metavar="NAME:SPLIT", help="tag these posts instead (e.g. twitter2015:test btc:test)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (0: torch's default)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N posts")
    ap.add_argument("--no-warmup", action="store_true", help="measure from the first call (a new tagger's first pass)")
    ap.add_argument("--competing", type=int, default=0, help="CPU-bound processes running while it measures")
    ap.add_argument("--out", type=Path, default=Path("results/bench_tag.csv"))
    args = ap.parse_args()
    if args.threads < 0 or args.competing < 0:
        ap.error("--threads and --competing must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.posts:
        posts = read_posts(args.posts, args.data_root)[: args.limit]
        dataset, split = " ".join(args.posts), ""
    else:
        posts = load_split(args.dataset, args.split, args.data_root)[: args.limit]
        dataset, split = args.dataset, args.split
    texts = post_texts(posts)
    rows: list[dict[str, object]] = []
    with competing_load(args.competing):
        for bs in args.batch_sizes:
            tagger = Tagger.from_pretrained(args.model, batch_size=bs)
            if not args.no_warmup:
                tagger.tag_many(texts[: 2 * bs])  # warm-up
            c0, start = time.process_time(), time.perf_counter()
            if bs == 1:
                for t in texts:
                    tagger.tag(t)
            else:
                tagger.tag_many(texts)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "model": args.model,
                    "dataset": dataset,
                    "split": split,
                    "posts": len(texts),
                    "batch_size": bs,
                    "threads": torch.get_num_threads(),
                    "seconds": round(seconds, 2),
                    "posts_per_second": round(len(texts) / seconds, 1),
                    "peak_mem_mb": round(peak_memory_mb(torch.device("cpu"))),
                    "commit": git_revision()["commit"],
                    "machine": machine_description(torch.device("cpu")),
                    "torch": package_versions()["torch"],
                    "warmup": not args.no_warmup,
                    "competing": args.competing,
                    "cpu_per_wall": round((time.process_time() - c0) / seconds, 2),
                    "load_avg_1min": round(os.getloadavg()[0], 2),
                }
            )
            print(rows[-1])
    append_rows(args.out, rows)


if __name__ == "__main__":
    main()
