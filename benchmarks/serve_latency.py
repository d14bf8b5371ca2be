"""Requests per second and latency percentiles of ``hamner serve``, with and without micro-batching.

Starts a real server process on 127.0.0.1 (``--threads`` torch/OpenCV threads) for each batching
setting (off; greedy: a free worker takes every queued request; wait5ms: the first request also
waits 5 ms for company), then, for each concurrency level, ``C`` async clients send requests back to back until
``--requests`` are answered: text-only requests (the raw text of Twitter-2017 test posts) and
text+image requests (a test post with one of the 30 sample images, multipart). The clients run on
the same machine and take some of its CPU. Writes ``results/bench_serve.csv``.

``--posts NAME:SPLIT ...`` (a preset or a corpus folder under the data root: ``twitter2015:test
btc:test``) sends these posts instead, each server seeing every text at most once while there are
enough (column ``repeated_texts``: requests whose text that server had been sent before);
``--competing N`` runs N CPU-bound processes beside the server and clients while it measures.

    python benchmarks/serve_latency.py --model runs/twitter2017/text-only/seed1/best
    python benchmarks/serve_latency.py --model RUN/best --posts twitter2015:test btc:test --competing 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from hamner.serve.process import running_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import competing_load, post_texts, read_posts  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def load(
    base: str, kind: str, concurrency: int, total: int, texts: list[str], images: list[Path], first: int = 0
) -> dict[str, Any]:
    """``total`` requests by ``concurrency`` clients; request ``i`` sends text ``first + i`` (mod the texts)."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    image_bytes = [p.read_bytes() for p in images]

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            t0 = time.perf_counter()
            if kind == "text":
                r = await c.post("/v1/tag", json={"text": texts[(first + i) % len(texts)]})
            else:
                k = i % len(image_bytes)
                r = await c.post("/v1/tag", data={"text": texts[(first + i) % len(texts)]}, files={"image": (images[k].name, image_bytes[k], "image/jpeg")})
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


def repeats(seen: set[int], first: int, total: int, n: int) -> int:
    """Requests of a load (texts ``first``, ``first + 1``, ... mod ``n``) whose text was sent before
    (``seen``: the texts a server has been sent; updated)."""
    count = 0
    for i in ((first + k) % n for k in range(total)):
        count += i in seen
        seen.add(i)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/twitter2017/text-only/seed1/best")
    parser.add_argument("--data-root", default=os.environ.get("HAMNER_DATA_ROOT", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--text-requests", type=int, default=240)
    parser.add_argument("--image-requests", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="the server's --threads (0: none given, the server's default)")
    parser.add_argument("--posts", nargs="+", metavar="NAME:SPLIT", help="send these posts, each new to the server (default: Twitter-2017 test, reused)")
    parser.add_argument("--competing", type=int, default=0, help="CPU-bound processes running while it measures")
    parser.add_argument("--out", default="results/bench_serve.csv")
    args = parser.parse_args()

    from _results import run_meta, write_csv

    from hamner.data.datasets import load_split

    if args.competing < 0 or args.threads < 0:
        parser.error("--competing and --threads must be >= 0")
    posts = read_posts(args.posts, args.data_root) if args.posts else load_split("twitter2017", "test", args.data_root)
    texts = post_texts(posts)
    images = sorted(Path(args.data_root).glob("twitter20*/images/*.jpg"))
    settings = {
        "off": ["--no-batching"],
        "greedy": ["--batch-wait-ms", "0"],  # the default: take whatever is queued when the worker is free
        "wait5ms": ["--batch-wait-ms", "5"],
    }
    rows = []
    with competing_load(args.competing):
        for batching, extra in settings.items():
            flags = [*(["--threads", str(args.threads)] if args.threads else []), *extra]
            with running_server(args.model, *flags) as (base, _):
                # with --posts every load takes the next texts (new to this server); without, all start at the first
                sent, seen = 0, set[int]()
                # warm-up: both request kinds, so first-call costs are not measured
                for kind, total in (("text", 8), ("image", 4 if args.image_requests else 0)):
                    if total == 0:
                        continue
                    asyncio.run(load(base, kind, 1, total, texts, images, sent))
                    repeats(seen, sent, total, len(texts))
                    sent += total if args.posts else 0
                for kind, total in (("text", args.text_requests), ("image", args.image_requests)):
                    if total == 0:  # --image-requests 0: a text-only run
                        continue
                    for c in args.concurrency:
                        got = asyncio.run(load(base, kind, c, total, texts, images, sent))
                        repeated = repeats(seen, sent, total, len(texts))
                        sent += total if args.posts else 0
                        row = {"batching": batching, **got, "repeated_texts": repeated, "load_avg_1min": round(os.getloadavg()[0], 2)}
                        print(row, flush=True)
                        rows.append(row)
    meta = {"threads": args.threads or "default", "model": args.model, "posts": " ".join(args.posts) if args.posts else "twitter2017:test", "competing": args.competing}
    write_csv(args.out, rows, {**meta, **run_meta("serve_latency.py")})

if __name__ == "__main__":
    main()
