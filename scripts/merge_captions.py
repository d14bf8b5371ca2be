#!/usr/bin/env python3
"""Join a second caption source to the BLIP-2 captions, for an exploratory cache with two captions.

    python scripts/merge_captions.py --dataset twitter2017 --out /tmp/captions-2src.txt
    hamner preprocess --dataset twitter2017 --images $HAMNER_DATA_ROOT/twitter2017/images \
        --captions /tmp/captions-2src.txt --out features/twitter2017-2captions

Each output line is ``<IMGID>.jpg :<BLIP-2 caption>. <VIT-CMNet caption>``. An image the second
source does not list (Twitter-2017's 358 images missing from the release) keeps its BLIP-2
caption alone, as does one whose two captions are the same sentence; the count is printed. A second-source line whose file name is not an image of the
dataset is an error naming the line.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path, PureWindowsPath

from hamner.data.conll import read_captions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="twitter2017")
    ap.add_argument("--data-root", default=os.environ.get("HAMNER_DATA_ROOT", "../shared/data"))
    ap.add_argument("--second", default=None, help="CSV img_path,seq (default: <dataset>/vitcmnet_image_captions.csv)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    folder = Path(args.data_root) / args.dataset
    first = read_captions(folder / "blip2_captions.txt")
    second_path = Path(args.second) if args.second else folder / "vitcmnet_image_captions.csv"
    second: dict[str, str] = {}
    with second_path.open(newline="", encoding="utf-8") as fh:
        for line_no, row in enumerate(csv.DictReader(fh), start=2):
            key = PureWindowsPath(row["img_path"]).stem  # the paths are Windows paths
            if key not in first:
                if PureWindowsPath(row["img_path"]).name == "inf.png":  # the release's placeholder image
                    continue
                raise SystemExit(f"{second_path}:{line_no}: {row['img_path']!r} has no BLIP-2 caption in {folder}")
            second[key] = " ".join(row["seq"].split())
    alone = 0
    with args.out.open("w", encoding="utf-8") as out:
        for key, caption in first.items():
            extra = second.get(key)
            if extra and extra.lower().rstrip(". ") == caption.lower().rstrip(". "):
                extra = None  # the same sentence twice adds nothing
            alone += extra is None
            text = f"{caption.rstrip('. ')}. {extra}" if extra else caption
            out.write(f"{key}.jpg :{text}\n")
    print(f"{len(first)} captions written to {args.out}; {len(second)} listed by the second source, {alone} kept BLIP-2 alone")


if __name__ == "__main__":
    main()
