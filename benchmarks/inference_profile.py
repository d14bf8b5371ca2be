#!/usr/bin/env python3
"""Where the time of a tagged post goes, stage by stage, for PyTorch and exported models.

    python benchmarks/inference_profile.py --models RUN/best EXPORTED_DIR ... [--features DIR]
        [--repeats 3] [--threads 2] [--out results/profile_inference.csv]

Tags the Twitter-2017 test posts (raw text) in batches of 32 through the same steps as
``Tagger.tag_many`` and times each: word tokenisation, window planning and sub-token encoding,
collation, the model (PyTorch's ``fuse`` or the ONNX Runtime session, inputs' conversion
included), CRF decoding (pytorch-crf, or numpy Viterbi for an exported model) and writing each
post's JSON. The stages are summed over the posts; each row is the median of ``--repeats`` passes
(after a warm-up pass, so the word cache is warm as in a long-running tagger) with the range.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import run_meta, write_csv  # noqa: E402

from hamner.data.datasets import load_split  # noqa: E402
from hamner.inference.onnx import OnnxTagger, viterbi  # noqa: E402
from hamner.inference.tagger import Tagger  # noqa: E402

STAGES = ("tokenize", "plan_encode", "collate", "model", "decode", "json")


def one_pass(tagger: Tagger, texts: list[str], features: list[Any] | None) -> dict[str, float]:
    model = tagger.model
    t: dict[str, float] = dict.fromkeys(STAGES, 0.0)
    t0 = time.perf_counter()
    tokens = [tagger.tokenize(x) for x in texts]
    t["tokenize"] = time.perf_counter() - t0
    words = [[w.text for w in ts] for ts in tokens]
    t0 = time.perf_counter()
    _, encoded, order = model.encode_inputs(words, features, "window")
    t["plan_encode"] = time.perf_counter() - t0
    for s in range(0, len(order), 32):
        idx = order[s : s + 32]
        t0 = time.perf_counter()
        batch = model.collate([encoded[u] for u in idx])
        t1 = time.perf_counter()
        if isinstance(model, OnnxTagger):
            out = model.forward_numpy(batch)
            t2 = time.perf_counter()
            viterbi(out["emissions"], batch["word_mask"].sum(1).numpy(), model._start, model._end, model._trans)
        else:
            with torch.no_grad():
                em = model.fuse(batch)["emissions"]
            t2 = time.perf_counter()
            model.crf.decode(em, batch["word_mask"])
        t3 = time.perf_counter()
        t["collate"] += t1 - t0
        t["model"] += t2 - t1
        t["decode"] += t3 - t2
    posts = tagger.tag_many(texts, features=features)
    t0 = time.perf_counter()
    for p in posts:
        json.dumps(p.to_dict(), ensure_ascii=False)
    t["json"] = time.perf_counter() - t0
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--features", help="feature cache for HamLearning models (Twitter-2017)")
    ap.add_argument("--data-root")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/profile_inference.csv")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    posts = load_split("twitter2017", "test", args.data_root)
    texts = [" ".join(p.words) for p in posts]
    rows = []
    for path in args.models:
        tagger = Tagger.from_pretrained(path, batch_size=32)
        if isinstance(tagger.model, OnnxTagger):
            tagger = Tagger(OnnxTagger(path, threads=args.threads), batch_size=32)
        features = None
        if tagger.multimodal:
            from hamner.training.trainer import visual_inputs
            from hamner.vision.cache import FeatureStore

            features = visual_inputs(posts, FeatureStore.open(args.features))
        one_pass(tagger, texts, features)  # warm-up
        passes = [one_pass(tagger, texts, features) for _ in range(args.repeats)]
        total = [sum(p.values()) for p in passes]
        runtime = f"onnx-{tagger.model.precision}" if isinstance(tagger.model, OnnxTagger) else "pytorch-fp32"
        row: dict[str, Any] = {"model": path, "runtime": runtime, "posts": len(texts)}
        for stage in STAGES:
            vals = [p[stage] for p in passes]
            row[f"{stage}_s"] = round(statistics.median(vals), 3)
            row[f"{stage}_share"] = round(float(np.median([p[stage] / s for p, s in zip(passes, total, strict=True)])), 3)
        row["total_s"] = round(statistics.median(total), 3)
        row["total_range"] = f"{min(total):.3f}-{max(total):.3f}"
        rows.append(row)
        print(row, flush=True)
    meta = run_meta("inference_profile.py")
    meta["threads"] = args.threads
    write_csv(args.out, rows, meta)


if __name__ == "__main__":
    main()
