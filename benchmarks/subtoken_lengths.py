#!/usr/bin/env python3
"""Sub-tokens per post with and without the URL placeholder, per dataset split; writes a results file.

    python benchmarks/subtoken_lengths.py [--encoder packaged:all-MiniLM-L6-v2] [--out results/subtoken_lengths.csv]

Backs the README's statement of how much of Twitter-2015's encoder input URLs take.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from transformers import AutoTokenizer

from hamner.data.datasets import SPLITS, load_split
from hamner.data.encoding import WordEncoder
from hamner.env import git_revision
from hamner.models.encoder import resolve_encoder_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="packaged:all-MiniLM-L6-v2")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=Path("results/subtoken_lengths.csv"))
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(resolve_encoder_path(args.encoder))
    raw, placeholder = WordEncoder(tok, 10_000), WordEncoder(tok, 10_000, "url")
    rows = []
    for dataset in ("twitter2015", "twitter2017"):
        for split in SPLITS:
            posts = load_split(dataset, split, args.data_root)
            n_raw = sum(len(raw.encode(p.words).input_ids) for p in posts)
            n_ph = sum(len(placeholder.encode(p.words).input_ids) for p in posts)
            rows.append(
                {
                    "dataset": dataset,
                    "split": split,
                    "posts": len(posts),
                    "subtokens_per_post_raw_urls": round(n_raw / len(posts), 2),
                    "subtokens_per_post_url_placeholder": round(n_ph / len(posts), 2),
                    "share_removed": round(1 - n_ph / n_raw, 4),
                    "encoder": args.encoder,
                    "commit": git_revision()["commit"],
                }
            )
            print(rows[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
