#!/usr/bin/env python3
"""``hamner tag`` on a large JSONL file: time to the first output byte, posts/s and resident memory
over time, written to a results file.

    python benchmarks/tag_stream.py [--model DIR] [--mb 100] [--seconds 120] [--threads 2]
        [--out results/bench_tag_stream.csv]

Without ``--model`` the real packaged MiniLM text-only model is built untrained
(``TextTagger.from_config(TaggerConfig())``: the same size and cost as a trained one). The input is
the Twitter-2017 texts repeated until the file has ``--mb`` megabytes. ``hamner tag`` runs as a
child process for at most ``--seconds``; its resident memory (RSS, from /proc) is sampled every
second, and the output file's size gives the time of the first byte and the posts written. One row
per sample goes to ``--out`` (a CSV), with a summary row first (``t_s`` = "summary").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _results import run_meta, write_csv


def make_input(path: Path, megabytes: float, data_root: str | None) -> int:
    from hamner.data.datasets import load_split

    texts = [" ".join(p.words) for split in ("train", "valid", "test") for p in load_split("twitter2017", split, data_root)]
    target, size, n = int(megabytes * 1e6), 0, 0
    with path.open("w", encoding="utf-8") as fh:
        while size < target:
            line = json.dumps({"id": f"p{n}", "text": texts[n % len(texts)]}, ensure_ascii=False) + "\n"
            fh.write(line)
            size += len(line.encode("utf-8"))
            n += 1
    return n


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint (default: the packaged MiniLM text-only model, untrained)")
    ap.add_argument("--mb", type=float, default=100.0, help="input size in megabytes")
    ap.add_argument("--seconds", type=float, default=120.0, help="stop hamner tag after this long")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=Path("results/bench_tag_stream.csv"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            from hamner.models.config import TaggerConfig
            from hamner.models.tagger import TextTagger

            model = str(TextTagger.from_config(TaggerConfig()).save_pretrained(work / "minilm-untrained"))
        src, out = work / "posts.jsonl", work / "tagged.jsonl"
        posts_in = make_input(src, args.mb, args.data_root)
        in_bytes = src.stat().st_size
        cmd = [sys.executable, "-m", "hamner.cli", "tag", "--model", model, str(src), "-o", str(out), "--no-progress",
               "--batch-size", str(args.batch_size)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        samples, first_byte = [], None
        while proc.poll() is None and time.perf_counter() - start < args.seconds:
            time.sleep(1.0)
            t = time.perf_counter() - start
            size = out.stat().st_size if out.exists() else 0
            if first_byte is None and size > 0:
                first_byte = t
            try:
                mem = rss_mb(proc.pid)
            except FileNotFoundError:
                break
            samples.append({"t_s": round(t, 1), "rss_mb": round(mem), "output_bytes": size})
        finished = proc.poll() is not None
        if not finished:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        elapsed = time.perf_counter() - start
        done = sum(1 for _ in out.open("rb")) if out.exists() else 0
    tagging = [s for s in samples if first_byte is not None and s["t_s"] >= first_byte]
    peak = max(s["rss_mb"] for s in samples)
    summary = {
        "t_s": "summary",
        "rss_mb": peak,
        "output_bytes": "",
        "model": args.model or "packaged MiniLM text-only, untrained",
        "input_mb": round(in_bytes / 1e6, 1),
        "input_posts": posts_in,
        "posts_done": done,
        "finished": finished,
        "seconds": round(elapsed, 1),
        "first_output_byte_s": round(first_byte, 1) if first_byte is not None else "",
        "posts_per_second": round(done / (elapsed - first_byte), 1) if first_byte is not None and elapsed > first_byte else "",
        "rss_first_output_mb": tagging[0]["rss_mb"] if tagging else "",
        "rss_last_mb": samples[-1]["rss_mb"],
        "threads": args.threads,
        "batch_size": args.batch_size,
    }
    print(json.dumps(summary))
    rows = [summary, *({**s, **{k: "" for k in summary if k not in s}} for s in samples)]
    write_csv(args.out, rows, run_meta("tag_stream.py"))


if __name__ == "__main__":
    main()
