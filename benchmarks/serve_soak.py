"""Memory of a long-running ``hamner serve``: a soak of text, images and bad bodies, with bursts of big PNGs.

For each model (a text-only checkpoint, served with ``--no-objects``, and a HamLearning checkpoint
whose extractor reads every image), starts a real server on 127.0.0.1 and sends ``--requests``
requests from ``--clients`` async clients, in ``--rounds`` rounds. A round is a mixed phase (real
Twitter-2017 test texts; the sample pictures as multipart and base64; bad bodies: invalid JSON,
invalid UTF-8 in a form, empty text, a 2,000-character run of "!", a non-image, a truncated JPEG,
a 120 kB PNG whose header claims 20,000 x 20,000 pixels, a text/plain body) and then a burst: 8
concurrent uploads of a 6000 x 6000 PNG (120 kB on the wire, 137 MiB decoded), sent at once.

The server's resident memory (VmRSS from /proc) is sampled every ``--sample-s`` seconds. The memory
ceiling is stated before the run: the RSS after warm-up, plus ``--max-decoding`` images at the
decoded-image budget (``--max-image-decoded-mb``, the most the decoding pool can hold at once), plus
``--slack-mb``. Writes ``results/bench_serve_soak.csv`` (one row per model and phase: requests,
status counts, 5xx, p50/p95 latency, RSS at the end and the highest sample of the phase),
``results/bench_serve_soak_rss.csv`` (the RSS samples) and ``results/bench_serve_soak.md`` (summary).

The models are tiny random ones (tests/conftest.py, tests/synthetic.py: a 2-layer BERT of width 32;
the HamLearning one reads images with the test suite's fake backbone and detector), so the memory
measured is the server's own: decoding, queues, the web layer. ``--models hamlearning-real`` (not
in the default set; much slower on a CPU) soaks a HamLearning checkpoint whose extractor is the
packaged EfficientNet-Lite0 and SSD-MobileNet-V2, to see the image models' own memory too.

    python benchmarks/serve_soak.py                       # 20,000 requests
    python benchmarks/serve_soak.py --models hamlearning --requests 20000 --rounds 10   # one model, longer
    python benchmarks/serve_soak.py --requests 800 --rounds 2 --out /tmp/soak.csv   # a short check
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


#: the models --models can pick: what each is (for the results)
MODELS = {
    "text-only": "a tiny random text-only checkpoint (tests/conftest.py), served with --no-objects: images are decoded, not read",
    "hamlearning": "a tiny random HamLearning checkpoint (tests/synthetic.py) whose extractor is the test suite's fake backbone and detector",
    "hamlearning-real": "a tiny random HamLearning checkpoint whose extractor is the packaged EfficientNet-Lite0 and SSD-MobileNet-V2 (COCO)",
}


def build_models(base: Path, wanted: list[str]) -> dict[str, Path]:
    """The tiny checkpoints asked for (the test suite's builders)."""
    sys.path.insert(0, str(TESTS))
    from conftest import tiny_text_checkpoint
    from synthetic import tiny_hamlearning_checkpoint

    out: dict[str, Path] = {}
    for name in wanted:
        if name == "text-only":
            out[name] = tiny_text_checkpoint(base / name, max_length=64)
        else:
            ckpt = tiny_hamlearning_checkpoint(base / name, vision={} if name == "hamlearning-real" else None)["ckpt"]
            assert isinstance(ckpt, Path)
            out[name] = ckpt
    return out


def png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def header_bomb() -> bytes:
    """A real 8 x 8 PNG whose header claims 20,000 x 20,000 pixels (refused before decoding)."""
    import struct
    import zlib

    from PIL import Image

    data = bytearray(png(Image.new("1", (8, 8))))
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", 20_000, 20_000)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def request_kinds(texts: list[str], images: list[bytes]) -> list[tuple[str, int, Any]]:
    """(name, expected status, a function of i giving httpx.post keyword arguments); weights by repetition."""
    truncated = images[0][: len(images[0]) // 3]
    form = {"content-type": "application/x-www-form-urlencoded"}
    kinds: list[tuple[str, int, Any]] = [
        ("text", 200, lambda i: {"json": {"text": texts[i % len(texts)]}}),
        ("text-form", 200, lambda i: {"data": {"text": texts[i % len(texts)]}}),
        ("image-multipart", 200, lambda i: {"data": {"text": texts[i % len(texts)]}, "files": {"image": ("p.jpg", images[i % len(images)], "image/jpeg")}}),
        ("image-base64", 200, lambda i: {"json": {"text": texts[i % len(texts)], "image_base64": base64.b64encode(images[i % len(images)]).decode()}}),
        ("bad-json", 400, lambda i: {"content": b'{"text": "hi",', "headers": {"content-type": "application/json"}}),
        ("bad-utf8-form", 400, lambda i: {"content": b"text=Obama+%FF+Paris", "headers": form}),
        ("empty-text", 422, lambda i: {"json": {"text": "   "}}),
        ("too-many-words", 422, lambda i: {"json": {"text": "!" * 2000}}),
        ("not-image", 400, lambda i: {"data": {"text": "hi"}, "files": {"image": ("x.jpg", b"<html>404</html>", "image/jpeg")}}),
        ("truncated-image", 400, lambda i: {"data": {"text": "hi"}, "files": {"image": ("t.jpg", truncated, "image/jpeg")}}),
        ("pixel-bomb", 413, lambda i: {"data": {"text": "hi"}, "files": {"image": ("b.png", BOMB, "image/png")}}),
        ("text-plain", 415, lambda i: {"content": b"hi", "headers": {"content-type": "text/plain"}}),
    ]
    # most traffic is good: text x4, images x2 each, every bad kind once
    return kinds[:1] * 4 + kinds[1:2] * 2 + kinds[2:4] * 2 + kinds[4:]


BOMB = b""


class Sampler(threading.Thread):
    """VmRSS of a process every ``every`` seconds, labelled with the phase running."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.phase = "start"
        self.samples: list[tuple[float, str, float]] = []
        self.t0 = time.perf_counter()
        self._halt = threading.Event()

    def rss(self) -> float:
        from hamner.serve.process import rss_mb

        return rss_mb(self.pid)

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.perf_counter() - self.t0, self.phase, self.rss()))
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.samples.append((time.perf_counter() - self.t0, self.phase, self.rss()))


async def send(base: str, jobs: list[tuple[str, int, dict[str, Any]]], clients: int) -> list[tuple[str, int, int, float]]:
    """(kind, expected, status, ms) of each job, sent by ``clients`` clients back to back."""
    out: list[tuple[str, int, int, float]] = []
    it = iter(jobs)

    async def client(c: httpx.AsyncClient) -> None:
        for name, expected, kw in it:
            t0 = time.perf_counter()
            r = await c.post("/v1/tag", **kw)
            out.append((name, expected, r.status_code, (time.perf_counter() - t0) * 1000))

    async with httpx.AsyncClient(base_url=base, timeout=300, limits=httpx.Limits(max_connections=clients)) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    return out


def phase_row(model: str, phase: str, results: list[tuple[str, int, int, float]], sampler: Sampler) -> dict[str, Any]:
    statuses = Counter(status for _, _, status, _ in results)
    wrong = [(n, e, s) for n, e, s, _ in results if s != e]
    ok_ms = [ms for _, e, s, ms in results if s == 200]
    rss = [r for _, p, r in sampler.samples if p == phase]
    return {
        "model": model,
        "phase": phase,
        "requests": len(results),
        "status_counts": json.dumps(dict(sorted(statuses.items())), separators=(",", ":")),
        "n_5xx": sum(n for s, n in statuses.items() if s >= 500),
        "unexpected": len(wrong),
        "p50_ms_200": round(percentile(ok_ms, 50), 1) if ok_ms else None,
        "p95_ms_200": round(percentile(ok_ms, 95), 1) if ok_ms else None,
        "p50_ms_all": round(percentile([r[3] for r in results], 50), 1),
        "p95_ms_all": round(percentile([r[3] for r in results], 95), 1),
        "rss_max_mb": round(max(rss), 1) if rss else None,
        "rss_end_mb": round(sampler.samples[-1][2], 1),
    }


def soak(model: str, ckpt: Path, args: argparse.Namespace, texts: list[str], images: list[bytes], big: bytes, log_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    from hamner.serve.process import rss_mb, running_server

    kinds = request_kinds(texts, images)
    flags = ["--threads", str(args.threads), "--max-decoding", str(args.max_decoding), "--max-image-decoded-mb", str(args.max_image_decoded_mb)]
    if model == "text-only":
        flags.append("--no-objects")  # the packaged image models are not needed: images are decoded, not extracted
    per_round = args.requests // len(args.models) // args.rounds - 8  # the models share --requests; each burst is 8 requests
    rows: list[dict[str, Any]] = []
    with running_server(ckpt, *flags, log_path=log_dir / f"serve-{model}.log") as (base, proc):
        warm = [(n, e, f(i)) for i, (n, e, f) in enumerate(kinds * 3)]
        asyncio.run(send(base, warm, 1))
        asyncio.run(send(base, [("big-png", 200, {"data": {"text": texts[0]}, "files": {"image": ("big.png", big, "image/png")}})], 1))
        baseline = rss_mb(proc.pid)
        ceiling = baseline + args.max_decoding * args.max_image_decoded_mb + args.slack_mb
        print(f"{model}: RSS after warm-up {baseline:.0f} MB; ceiling {ceiling:.0f} MB", flush=True)
        sampler = Sampler(proc.pid, args.sample_s)
        sampler.start()
        counter = 0
        for rnd in range(1, args.rounds + 1):
            sampler.phase = phase = f"round{rnd}-mixed"
            jobs = []
            for _ in range(per_round):
                name, expected, make = kinds[counter % len(kinds)]
                jobs.append((name, expected, make(counter)))
                counter += 1
            results = asyncio.run(send(base, jobs, args.clients))
            rows.append(phase_row(model, phase, results, sampler))
            print(rows[-1], flush=True)
            sampler.phase = phase = f"round{rnd}-burst8x6000px"
            burst = [("big-png", 200, {"data": {"text": texts[k]}, "files": {"image": ("big.png", big, "image/png")}}) for k in range(8)]
            results = asyncio.run(send(base, burst, 8))
            rows.append(phase_row(model, phase, results, sampler))
            print(rows[-1], flush=True)
        sampler.phase = "idle"
        time.sleep(2.0)
        sampler.stop()
        alive = proc.poll() is None and httpx.get(f"{base}/healthz").status_code == 200
    samples: list[dict[str, Any]] = [{"model": model, "t_s": round(t, 2), "phase": p, "rss_mb": round(r, 1)} for t, p, r in sampler.samples]
    peak = max(r for _, _, r in sampler.samples)
    rounds_end = [r["rss_end_mb"] for r in rows if r["phase"].endswith("burst8x6000px")]
    summary = {
        "model": model,
        "requests": sum(r["requests"] for r in rows),
        "n_5xx": sum(r["n_5xx"] for r in rows),
        "unexpected_status": sum(r["unexpected"] for r in rows),
        "rss_after_warmup_mb": round(baseline, 1),
        "ceiling_mb": round(ceiling, 1),
        "rss_peak_mb": peak,
        "below_ceiling": peak < ceiling,
        "rss_after_each_burst_mb": rounds_end,
        "rss_end_mb": samples[-1]["rss_mb"],
        "server_alive": alive,
    }
    return rows, samples, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="in all, split evenly between the models")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["text-only", "hamlearning"], help="which servers to soak")
    parser.add_argument("--rounds", type=int, default=5, help="mixed phases, each followed by a burst of 8 big PNGs")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-decoding", type=int, default=2)
    parser.add_argument("--max-image-decoded-mb", type=int, default=256)
    parser.add_argument("--slack-mb", type=int, default=200, help="allowed over baseline + the decoding pool's budget")
    parser.add_argument("--sample-s", type=float, default=0.25)
    parser.add_argument("--data-root", default=os.environ.get("HAMNER_DATA_ROOT", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--out", default="results/bench_serve_soak.csv")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _results import run_meta, write_csv
    from PIL import Image

    from hamner.data.datasets import load_split

    global BOMB
    BOMB = header_bomb()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")])
    texts = [" ".join(p.words) for p in load_split("twitter2017", "test", args.data_root)]
    images = [p.read_bytes() for p in sorted(Path(args.data_root).glob("twitter20*/images/*.jpg"))]
    big = png(Image.new("RGB", (6000, 6000), (200, 30, 30)))
    print(f"{len(texts)} texts, {len(images)} sample images, big PNG {len(big):,} bytes", flush=True)
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hamner-soak-") as tmp:
        models = build_models(Path(tmp), args.models)
        for model in args.models:  # in the order given
            ckpt = models[model]
            model_rows, model_samples, summary = soak(model, ckpt, args, texts, images, big, Path(tmp))
            rows += model_rows
            samples += model_samples
            summaries.append(summary)
            print(summary, flush=True)
    meta = {**run_meta("serve_soak.py"), "clients": args.clients, "threads": args.threads, "max_decoding": args.max_decoding, "max_image_decoded_mb": args.max_image_decoded_mb}
    write_csv(out, rows, meta)
    write_csv(out.with_name(out.stem + "_rss.csv"), samples, {"commit": meta["commit"]})
    md = [
        "# hamner serve soak",
        "",
        f"`{meta['command']}` at {meta['commit']}{' (dirty)' if meta['dirty'] else ''} on {meta['machine']}, {meta['date']};",
        f"{args.clients} clients, --threads {args.threads}, --max-decoding {args.max_decoding}, --max-image-decoded-mb {args.max_image_decoded_mb};",
        "Models: " + "; ".join(f"{name}: {MODELS[name]}" for name in args.models) + ".",
        "Ceiling = RSS after warm-up + max-decoding x max-image-decoded-mb + slack "
        f"({args.slack_mb} MB). Phases and latencies: {out.name}; RSS samples: {out.stem}_rss.csv.",
        "",
        "| model | requests | 5xx | unexpected status | RSS after warm-up (MB) | ceiling (MB) | peak (MB) | after each burst (MB) | end (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for sm in summaries:
        md.append(
            f"| {sm['model']} | {sm['requests']:,} | {sm['n_5xx']} | {sm['unexpected_status']} | {sm['rss_after_warmup_mb']:.0f} | {sm['ceiling_mb']:.0f} | "
            f"{sm['rss_peak_mb']:.0f} | {', '.join(f'{v:.0f}' for v in sm['rss_after_each_burst_mb'])} | {sm['rss_end_mb']:.0f} |"
        )
    md += ["", "| model | phase | requests | 5xx | p50 ms (200s) | p95 ms (200s) | RSS max (MB) | RSS end (MB) |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        md.append(
            f"| {row['model']} | {row['phase']} | {row['requests']} | {row['n_5xx']} | {row['p50_ms_200']} | {row['p95_ms_200']} | "
            f"{row['rss_max_mb']} | {row['rss_end_mb']} |"
        )
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summaries}, indent=2) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
