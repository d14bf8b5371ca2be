#!/usr/bin/env python3
"""Does bf16 autocast help on a CPU? Training steps and tagging of the packaged MiniLM text tagger
in fp32 and under bf16 autocast, on the same Twitter-2017 posts, alternating, several repeats.

    python benchmarks/precision_cpu.py [--threads 2] [--steps 12] [--repeats 3] [--out results/bench_precision_cpu.csv]

Training: ``--steps`` AdamW steps of batch 16 (forward, CRF loss, backward, clipping, step) of the
``configs/text-only.yaml`` model on training posts in length buckets, as the trainer makes them.
Tagging: ``TextTagger.run`` over 512 test posts in batches of 32. Each figure is the median of
``--repeats`` runs with the range; the weights are the untrained packaged encoder (speed does not
depend on them). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _results import run_meta, write_csv

from hamner.data.datasets import load_split
from hamner.models.tagger import TextTagger
from hamner.precision import autocast
from hamner.training.config import load_config
from hamner.training.trainer import build_optimizer, encode_posts

ROOT = Path(__file__).resolve().parents[1]


def train_seconds(model: TextTagger, batches: list[dict[str, torch.Tensor]], precision: str, cfg: Any) -> float:
    opt = build_optimizer(model, cfg)
    model.train()
    t0 = time.perf_counter()
    for batch in batches:
        with autocast("cpu", precision):
            loss = model(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return (time.perf_counter() - t0) / len(batches)


def tag_seconds(model: TextTagger, words: list[list[str]], precision: str) -> float:
    t0 = time.perf_counter()
    with autocast("cpu", precision):
        model.run(words, batch_size=32)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_precision_cpu.csv"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(ROOT / "configs" / "text-only.yaml")
    torch.manual_seed(0)
    model = TextTagger.from_config(cfg.model)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    train = load_split("twitter2017", "train")[: 16 * args.steps * 4]
    enc = encode_posts(model, train)
    enc.sort(key=lambda e: len(e.input_ids))  # length buckets, like the trainer's sampler
    chunks = [enc[i : i + 16] for i in range(0, len(enc), 16)]
    picked = [chunks[int(i * len(chunks) / args.steps)] for i in range(args.steps)]  # short to long posts
    batches = [model.collate(c) for c in picked]
    words = [p.words for p in load_split("twitter2017", "test")[:512]]
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for precision in ("fp32", "bf16"):
            model.load_state_dict(initial)
            times.setdefault(("train_step", precision), []).append(train_seconds(model, batches, precision, cfg))
            model.eval()
            times.setdefault(("tag_512_posts", precision), []).append(tag_seconds(model, words, precision))
    rows = []
    for (what, precision), values in times.items():
        med = statistics.median(values)
        base = statistics.median(times[(what, "fp32")])
        rows.append({
            "measure": what, "precision": precision, "unit": "s per step (batch 16)" if what == "train_step" else "s for 512 posts (batch 32)",
            "median": round(med, 4), "min": round(min(values), 4), "max": round(max(values), 4),
            "speedup_vs_fp32": round(base / med, 3), "repeats": len(values), "threads": args.threads,
        })  # fmt: skip
        print(rows[-1])
    write_csv(args.out, rows, run_meta("precision_cpu.py"))


if __name__ == "__main__":
    main()
