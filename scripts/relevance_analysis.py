#!/usr/bin/env python3
"""Does HamLearning's r measure text-image relevance on the real test posts? r with each post's own
visual input against r with another post's (a fixed derangement: post i gets post i+1's input).

    python scripts/relevance_analysis.py --runs runs/twitter2017/hamlearning/seed1 [...] \
        [--features features/<dataset>] [--out results/relevance_swap.csv]

Writes one row per run and visual input kind of the post that receives the swapped input (pixels:
its own image was read; words: its caption only), with the mean r before and after the swap, and
the share of posts whose r dropped. Tags are not scored here: the test split is scored once, by the
training run itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hamner.data.datasets import load_split
from hamner.env import git_revision, machine_description
from hamner.models.tagger import TextTagger
from hamner.training.trainer import visual_inputs
from hamner.vision.cache import FeatureStore


def kind(feats: Any) -> str:
    return "pixels" if feats.has_image else ("words" if len(feats.semantic) else "none")


def analyse(run: Path, features: str | None, data_root: str | None) -> list[dict[str, Any]]:
    final = json.loads((run / "final.json").read_text())
    model = TextTagger.from_pretrained(run / "best").eval()
    if not model.config.multimodal or not model.config.use_relevance:
        raise SystemExit(f"{run}: not a HamLearning model with relevance r")
    posts = load_split(final["dataset"], "test", data_root)
    store = FeatureStore.open(features or f"features/{final['dataset']}")
    own = visual_inputs(posts, store) or []  # a post missing from the cache is an error naming it
    swapped = own[1:] + own[:1]
    words = [p.words for p in posts]
    r_own = [p.relevance or 0.0 for p in model.run(words, own)]
    r_swap = [p.relevance or 0.0 for p in model.run(words, swapped)]
    rows = []
    for k in ("pixels", "words"):
        idx = [i for i, f in enumerate(own) if kind(f) == k and kind(swapped[i]) != "none"]
        if not idx:
            continue
        rows.append(
            {
                "dataset": final["dataset"],
                "config": final["config"],
                "seed": final["seed"],
                "visual": k,
                "posts": len(idx),
                "r_own_mean": round(sum(r_own[i] for i in idx) / len(idx), 4),
                "r_swapped_mean": round(sum(r_swap[i] for i in idx) / len(idx), 4),
                "share_lower_when_swapped": round(sum(r_swap[i] < r_own[i] for i in idx) / len(idx), 4),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", type=Path, required=True, help="run directories with best/ and final.json")
    ap.add_argument("--features", default=None)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("results/relevance_swap.csv"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [row for run in args.runs for row in analyse(run, args.features, args.data_root)]
    meta = {
        "commit": git_revision()["commit"],
        "machine": machine_description(torch.device("cpu")),
        "command": "python scripts/relevance_analysis.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], *meta])
        w.writeheader()
        w.writerows({**r, **meta} for r in rows)
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
