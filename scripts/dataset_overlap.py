#!/usr/bin/env python3
"""Identical and near-identical posts within and across the splits of two or more corpora (by
default the Twitter-2015 and Twitter-2017 benchmarks).

    python scripts/dataset_overlap.py [--data-root DIR] [--threshold 0.8] [--out results/dataset_overlap.csv]
    python scripts/dataset_overlap.py --corpus twitter2017 --corpus btc=btc --out results/dataset_overlap_btc.csv \
        --pairs results/dataset_overlap_btc_pairs.jsonl

``--corpus`` (repeatable) is a preset name or NAME=PATH, a corpus folder of one's own (train, dev
and test files in any format ``hamner data check`` reads; a relative path not found here is read
from the data root).

Before training on both datasets together (issue 21, lever 2): a test post of one dataset that is
also, or nearly, in the other's training data would be scored after being seen in training. For every
pair of splits (the six splits of the two datasets, each pair once, a split with itself too) it counts
the posts of the first split that have

- an **identical** post in the second: the same text once lower-cased, URLs and a leading "RT"
  dropped and whitespace collapsed (a retweet of the same tweet is identical);
- a **near-identical** post: word-set Jaccard similarity of at least ``--threshold`` (words of
  letters and digits, URLs dropped; both posts of at least 4 such words), identical ones included.

Candidates are the posts that share a word of the first post's rarest three (an inverted index), so
the check stays exact for a Jaccard of 0.8 or more while comparing few pairs. Also writes the near
pairs across datasets to ``--pairs`` (JSONL, for reading them), and the command, commit and machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from itertools import combinations_with_replacement
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPORA = ["twitter2015", "twitter2017"]
SPLIT_NAMES = ("train", "dev", "test")


def parse_corpus(item: str) -> tuple[str, str | None]:
    """``twitter2017`` (a preset) or ``NAME=PATH`` (a corpus folder): (name, path or None)."""
    name, sep, path = item.partition("=")
    if sep and (not name or not path):
        raise SystemExit(f"--corpus expects a preset name or NAME=PATH, got {item!r}")
    return name, path if sep else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "dataset_overlap.csv")
    ap.add_argument("--pairs", type=Path, default=ROOT / "results" / "dataset_overlap_pairs.jsonl")
    ap.add_argument(
        "--corpus", action="append", metavar="PRESET|NAME=PATH",
        help="a corpus to compare (repeatable; default: twitter2015 and twitter2017)",
    )  # fmt: skip
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from hamner.data.corpus import corpus_spec, load_posts
    from hamner.data.overlap import near_duplicates, relative_source, word_set
    from hamner.env import git_revision, machine_description

    t0 = time.perf_counter()
    corpora = [parse_corpus(c) for c in args.corpus or DEFAULT_CORPORA]
    if len({n for n, _ in corpora}) != len(corpora):
        raise SystemExit(f"--corpus names must differ, got {[n for n, _ in corpora]}")
    specs = {n: corpus_spec(n if p is None else None, p, root=args.data_root) for n, p in corpora}
    SPLITS = [(n, s) for n, _ in corpora for s in SPLIT_NAMES]
    posts = {key: load_posts(specs[key[0]], key[1]) for key in SPLITS}
    sets = {key: [word_set(p.words) for p in ps] for key, ps in posts.items()}
    df: Counter[str] = Counter(w for key in SPLITS for s in sets[key] for w in s)
    rows = []
    pairs_out = []
    for a, b in combinations_with_replacement(SPLITS, 2):
        matches = near_duplicates(
            [p.words for p in posts[a]], [p.words for p in posts[b]], args.threshold, same_list=a == b, document_frequency=df
        )
        exact = sum(m is not None and m.identical for m in matches)
        near = sum(m is not None for m in matches)
        if a[0] != b[0]:
            for m in matches:
                if m is not None:
                    pairs_out.append({
                        "a": f"{a[0]}/{a[1]}", "a_source": relative_source(posts[a][m.query].source),
                        "b": f"{b[0]}/{b[1]}", "b_source": relative_source(posts[b][m.other].source),
                        "identical": m.identical, "jaccard": round(m.jaccard, 3),
                    })  # fmt: skip
        rows.append({
            "split_a": f"{a[0]}/{a[1]}", "posts_a": len(posts[a]), "split_b": f"{b[0]}/{b[1]}", "posts_b": len(posts[b]),
            "a_with_identical_in_b": exact, "a_with_near_identical_in_b": near,
            "share_near_pct": round(100 * near / len(posts[a]), 2),
        })  # fmt: skip
        print(rows[-1], flush=True)
    rev = git_revision()
    meta = {
        "threshold": args.threshold, "commit": rev["commit"], "dirty": rev["dirty"],
        "machine": "cpu", "command": "python scripts/dataset_overlap.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    if args.corpus:  # which folders were compared (the default benchmarks' file keeps its columns)
        meta["corpora"] = " ".join(f"{n}={specs[n].files['train'].parent}" for n, _ in corpora)
        meta["machine"] = machine_description(torch.device("cpu"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], *meta])
        w.writeheader()
        w.writerows({**r, **meta} for r in rows)
    args.pairs.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs_out))
    print(f"wrote {args.out} and {args.pairs} ({len(pairs_out)} cross-dataset pairs) in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
