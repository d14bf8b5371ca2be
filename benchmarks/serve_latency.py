"""Requests per second and latency percentiles of ``hamner serve``, with and without micro-batching.

Starts a real server process on 127.0.0.1 (``--threads`` torch/OpenCV threads) for each batching
setting (off; greedy: a free worker takes every queued request; wait5ms: the first request also
waits 5 ms for company), then, for each concurrency level, ``C`` async clients send requests back to back until
``--requests`` are answered: text-only requests (the raw text of Twitter-2017 test posts) and
text+image requests (a test post with one of the 30 sample images, multipart). The clients run on
the same machine and take some of its CPU. Writes ``results/bench_serve.csv``.

    python benchmarks/serve_latency.py --model runs/twitter2017/text-only/seed1/best
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from hamner.serve.process import running_server


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def load(base: str, kind: str, concurrency: int, total: int, texts: list[str], images: list[Path]) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    image_bytes = [p.read_bytes() for p in images]

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            t0 = time.perf_counter()
            if kind == "text":
                r = await c.post("/v1/tag", json={"text": texts[i % len(texts)]})
            else:
                k = i % len(image_bytes)
                r = await c.post("/v1/tag", data={"text": texts[i % len(texts)]}, files={"image": (images[k].name, image_bytes[k], "image/jpeg")})
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += r.status_code != 200

    async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=concurrency)) as c:
        before = (await c.get("/healthz")).json()
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        after = (await c.get("/healthz")).json()
    batches = after["batches"] - before["batches"]
    return {
        "kind": kind,
        "concurrency": concurrency,
        "requests": total,
        "errors": errors,
        "req_per_s": round(total / wall, 2),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "mean_batch": round((after["requests"] - before["requests"]) / batches, 2) if batches else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/twitter2017/text-only/seed1/best")
    parser.add_argument("--data-root", default=os.environ.get("HAMNER_DATA_ROOT", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--text-requests", type=int, default=240)
    parser.add_argument("--image-requests", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/bench_serve.csv")
    args = parser.parse_args()

    from _results import run_meta, write_csv

    from hamner.data.datasets import load_split

    texts = [" ".join(p.words) for p in load_split("twitter2017", "test", args.data_root)]
    images = sorted(Path(args.data_root).glob("twitter20*/images/*.jpg"))
    settings = {
        "off": ["--no-batching"],
        "greedy": ["--batch-wait-ms", "0"],  # the default: take whatever is queued when the worker is free
        "wait5ms": ["--batch-wait-ms", "5"],
    }
    rows = []
    for batching, extra in settings.items():
        flags = ["--threads", str(args.threads), *extra]
        with running_server(args.model, *flags) as (base, _):
            # warm-up: both request kinds, so first-call costs are not measured
            asyncio.run(load(base, "text", 1, 8, texts, images))
            asyncio.run(load(base, "image", 1, 4, texts, images))
            for kind, total in (("text", args.text_requests), ("image", args.image_requests)):
                for c in args.concurrency:
                    row = {"batching": batching, **asyncio.run(load(base, kind, c, total, texts, images))}
                    print(row, flush=True)
                    rows.append(row)
    write_csv(args.out, rows, {"threads": args.threads, "model": args.model, **run_meta("serve_latency.py")})

if __name__ == "__main__":
    main()
