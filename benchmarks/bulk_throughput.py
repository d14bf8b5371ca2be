#!/usr/bin/env python3
"""``hamner tag`` against ``hamner bulk`` (embedded Ray, 2 CPUs) on the same posts; memory of bulk
against the number of posts. Writes ``results/bench_bulk.csv``.

    python benchmarks/bulk_throughput.py [--model DIR] [--mm-model DIR] [--repeats 3]
        [--text-posts 5000] [--image-posts 300] [--memory-posts 10000 50000] [--out results/bench_bulk.csv]
        [--tools tag tag-1t-x2 bulk bulk-1x2t] [--skip images memory]

``--tools`` adds two layouts that separate Ray's own cost from the thread layout: two ``hamner tag``
processes of one thread each, each on half the posts (bulk's default layout without Ray), and bulk
with one tagging actor of two threads (hamner tag's layout on Ray).

Every measurement is one command run as a subprocess, timed from start to exit (model loading and,
for bulk, starting Ray included). Each repeat runs tag and bulk one after the other, alternating which
goes first. The fixed cost (a one-post input) is measured too, so that ``marginal rows/s`` =
(posts - 1) / (time - time of one post) says what each costs per post once it runs. Memory: the
peak resident set (VmHWM) of the driver (the ``hamner`` process) and of every Ray worker process
(``ray::`` in its command line), polled every 0.2 s; ``workers_peak_sum_mb`` is the peak of their sum.
The text posts are Twitter-2017 texts (all splits, repeated); the image posts the 30 sample images of
../shared/data repeated, each with a Twitter-2017 text. Without --model, an untrained MiniLM
text-only checkpoint is made (speed does not depend on training); without --mm-model, an untrained
HamLearning one over the packaged image models.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import run_meta, write_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_text_model(directory: Path) -> Path:
    from hamner.models.config import TaggerConfig
    from hamner.models.tagger import TextTagger

    return TextTagger.from_config(TaggerConfig()).save_pretrained(directory)


def make_small_model(directory: Path) -> Path:
    """An untrained text-only checkpoint over a 2-layer, 64-wide random BERT with the packaged MiniLM's
    tokenizer: the same words, sub-tokens and pipeline per row at a fraction of the encoder's cost, so
    that a memory run reaches many rows in minutes (the model's own memory does not depend on the
    number of rows)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hamner.models.config import TaggerConfig
    from hamner.models.encoder import resolve_encoder_path
    from hamner.models.tagger import TextTagger

    enc = directory / "encoder"
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder_path("packaged:all-MiniLM-L6-v2"))
    tokenizer.save_pretrained(enc)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    BertModel(cfg).save_pretrained(enc)
    return TextTagger.from_config(TaggerConfig(encoder=str(enc))).save_pretrained(directory / "ckpt")


def make_hamlearning_model(directory: Path) -> Path:
    import torch

    from hamner.models.tagger import TextTagger
    from hamner.training.config import load_config
    from hamner.vision.config import VisionConfig
    from hamner.vision.extractor import VisualExtractor

    cfg = load_config(ROOT / "configs" / "hamlearning.yaml", [])
    extractor = VisualExtractor(VisionConfig())
    cfg.model.vision = dict(extractor.identity()["settings"])
    cfg.model.vision_fingerprint = extractor.fingerprint
    assert extractor.backbone is not None
    cfg.model.visual_channels = int(extractor.backbone.out_channels)
    torch.manual_seed(0)
    return TextTagger.from_config(cfg.model).eval().save_pretrained(directory)


def twitter_texts(data_root: str | None) -> list[str]:
    from hamner.data.datasets import load_split

    texts = []
    for split in ("train", "valid", "test"):
        texts += [" ".join(p.words) for p in load_split("twitter2017", split, data_root)]
    return texts


def write_posts(path: Path, texts: list[str], n: int, images: list[Path] | None = None) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            rec: dict[str, Any] = {"id": i, "text": texts[i % len(texts)]}
            if images:
                rec["image"] = str(images[i % len(images)])
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def _hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _ray_workers(session: set[int]) -> list[int]:
    """Ray worker processes that did not exist before this run (other users' Ray is not counted)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in session:
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"ray::"):
            out.append(int(entry))
    return out


def run(cmds: list[list[str]], watch_workers: bool, env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Run commands side by side; wall seconds until the last ends, the drivers' (largest) and the
    Ray workers' peak memory."""
    before = set(_ray_workers(set())) if watch_workers else set()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env_extra or {})}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for cmd in cmds]
    peaks: dict[int, int] = {}
    driver = {"hwm": 0}
    total = {"sum": 0}
    samples: list[tuple[float, int, int]] = []  # (seconds, drivers' RSS, workers' RSS sum) in kB
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            drivers_now = 0
            for proc in procs:
                hwm = _hwm_kb(proc.pid)
                if hwm:
                    driver["hwm"] = max(driver["hwm"], hwm)
                drivers_now += _rss_kb(proc.pid)
            now = 0
            if watch_workers:
                for pid in _ray_workers(before):
                    got = _hwm_kb(pid)
                    if got:
                        peaks[pid] = max(peaks.get(pid, 0), got)
                    now += _rss_kb(pid)
                total["sum"] = max(total["sum"], now)
            samples.append((time.perf_counter() - t0, drivers_now, now))
            stop.wait(0.2)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    outs = []
    for cmd, proc in zip(cmds, procs, strict=True):
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
        outs.append(out)
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    out = b"".join(outs)
    return {
        "seconds": seconds,
        "driver_peak_mb": round(driver["hwm"] / 1024),
        "workers": len(peaks),
        "worker_peak_mb": round(max(peaks.values(), default=0) / 1024),
        "workers_peak_sum_mb": round(total["sum"] / 1024),
        **rss_trend(samples, seconds),
        "stdout": out.decode(),
    }


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y on x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def rss_trend(samples: list[tuple[float, int, int]], seconds: float) -> dict[str, Any]:
    """Resident memory while the job runs: the drivers' and the workers' (summed) RSS at a quarter of
    the run and at nine tenths of it, and the slope of a line fitted between the two (MB per minute;
    flat memory gives about 0). The first quarter (Ray and the actors starting) and the last tenth
    (writing the last shards, shutting down) are left out."""
    late = [s for s in samples if seconds / 4 <= s[0] <= 0.9 * seconds and s[1]]
    if len(late) < 10:
        return {}
    out: dict[str, Any] = {}
    for name, k in (("driver", 1), ("workers", 2)):
        out[f"{name}_rss_q1_mb"] = round(late[0][k] / 1024)
        out[f"{name}_rss_q9_mb"] = round(late[-1][k] / 1024)
        out[f"{name}_rss_slope_mb_per_min"] = round(_slope([(t / 60, v / 1024) for t, v in ((s[0], s[k]) for s in late)]), 2)
    return out


def tag_cmd(model: Path, posts: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "hamner.cli", "tag", "--model", str(model), str(posts), "-o", str(out), "--no-progress"]


def bulk_cmd(model: Path, posts: Path, out: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "hamner.cli", "bulk", "--model", str(model), "--input", str(posts), "--output", str(out),
        "--num-cpus", "2", "--overwrite", "--no-progress", *extra,
    ]  # fmt: skip


#: the columns of :func:`rss_trend`
TREND = [f"{w}_rss_{k}" for w in ("driver", "workers") for k in ("q1_mb", "q9_mb", "slope_mb_per_min")]

#: extra hamner bulk options of each bulk variant
TOOLS: dict[str, list[str]] = {"tag": [], "tag-1t-x2": [], "bulk": [], "bulk-1x2t": ["--tag-actors", "1", "--cpus-per-tag-actor", "2"]}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a text-only checkpoint (default: an untrained MiniLM one)")
    ap.add_argument("--mm-model", type=Path, help="a HamLearning checkpoint (default: an untrained one, packaged image models)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--text-posts", type=int, default=5000)
    ap.add_argument("--image-posts", type=int, default=300)
    ap.add_argument("--memory-posts", type=int, nargs="*", default=[10_000, 50_000])
    ap.add_argument(
        "--memory-model", choices=["text", "small"], default="text",
        help="the model of the memory runs: the text-only one, or a small random encoder with its tokenizer (fast: for large --memory-posts)",
    )  # fmt: skip
    ap.add_argument("--bulk-args", default="", help="extra hamner bulk options, e.g. '--tag-actors 1 --cpus-per-tag-actor 2'")
    ap.add_argument("--skip", nargs="*", default=[], choices=["text", "images", "memory"])
    ap.add_argument(
        "--tools", nargs="+", default=["tag", "bulk"], choices=list(TOOLS),
        help="tag: hamner tag as it runs (torch's default threads, one per core); tag-1t-x2: two hamner tag processes "
        "side by side, one thread each, each on half the posts (the layout of bulk's two actors, without Ray); bulk: "
        "hamner bulk with its defaults; bulk-1x2t: one tagging actor of 2 threads (the layout of hamner tag)",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench_bulk.csv")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-bulk-"))
    texts = twitter_texts(args.data_root)
    model = args.model or make_text_model(work / "text-only")
    model_name = {model: str(args.model) if args.model else "untrained MiniLM text-only"}
    extra = args.bulk_args.split()
    rows: list[dict[str, Any]] = []

    def measure(kind: str, model: Path, posts: Path, n: int, order: list[str], repeat: int) -> None:
        for tool in order:
            out = work / f"out-{tool}"
            env: dict[str, str] = {}
            if tool == "tag":
                cmds = [tag_cmd(model, posts, out.with_suffix(".jsonl"))]
            elif tool == "tag-1t-x2":
                lines = posts.read_text().splitlines(keepends=True)
                halves = [work / f"half{k}.jsonl" for k in (0, 1)]
                halves[0].write_text("".join(lines[: (len(lines) + 1) // 2]))
                halves[1].write_text("".join(lines[(len(lines) + 1) // 2 :]))
                cmds = [tag_cmd(model, h, h.with_suffix(".out.jsonl")) for h in halves]
                env = {"OMP_NUM_THREADS": "1"}
            else:
                cmds = [bulk_cmd(model, posts, out, extra + TOOLS[tool])]
            load = loadavg()
            got = run(cmds, watch_workers=tool.startswith("bulk"), env_extra=env)
            row = {
                "input": kind, "posts": n, "tool": tool, "repeat": repeat, "seconds": round(got["seconds"], 2),
                "rows_per_s": round(n / got["seconds"], 1), "driver_peak_mb": got["driver_peak_mb"],
                "workers": got["workers"], "worker_peak_mb": got["worker_peak_mb"],
                "workers_peak_sum_mb": got["workers_peak_sum_mb"], "loadavg_1_5_15": load,
                "bulk_args": " ".join(extra + TOOLS[tool]) if tool.startswith("bulk") else "",
                "model": model_name.get(model, str(model)),
                **{k: got.get(k, "") for k in TREND},
            }  # fmt: skip
            print(row, flush=True)
            rows.append(row)

    plans: list[tuple[str, Path, int, list[Path] | None]] = []
    if "text" not in args.skip:
        plans.append(("text", model, args.text_posts, None))
    if "images" not in args.skip:
        images = sorted((Path(args.data_root or os.environ.get("HAMNER_DATA_ROOT", ROOT.parent / "shared" / "data"))).glob("twitter20*/images/*.jpg"))
        mm = args.mm_model or make_hamlearning_model(work / "hamlearning")
        plans.append(("text+image", mm, args.image_posts, images))
    for kind, m, n, imgs in plans:
        full = write_posts(work / f"{kind}-{n}.jsonl", texts, n, imgs)
        one = write_posts(work / f"{kind}-1.jsonl", texts, 1, imgs)
        for repeat in range(1, args.repeats + 1):
            order = list(args.tools) if repeat % 2 else list(reversed(args.tools))
            measure(kind, m, one, 1, order, repeat)
            measure(kind, m, full, n, order, repeat)
    memory_model = model
    if args.memory_posts and "memory" not in args.skip and args.memory_model == "small":
        memory_model = make_small_model(work / "small")
        model_name[memory_model] = "untrained 2-layer 64-wide BERT, MiniLM tokenizer"
    for n in args.memory_posts if "memory" not in args.skip else []:
        posts = write_posts(work / f"memory-{n}.jsonl", texts, n)
        measure("text (memory)", memory_model, posts, n, ["bulk"], 1)
    write_csv(args.out, rows, run_meta("bulk_throughput.py"))  # (tag-1t-x2: the larger of the two drivers' peaks)
    summarise(rows)


def summarise(rows: list[dict[str, Any]]) -> None:
    """Medians and ranges per input and tool, and the marginal rate (the one-post run subtracted)."""
    groups: dict[tuple[str, str, int], list[float]] = {}
    for r in rows:
        groups.setdefault((r["input"], r["tool"], r["posts"]), []).append(r["seconds"])
    for (kind, tool, n), secs in sorted(groups.items()):
        if n == 1:
            continue
        fixed = groups.get((kind, tool, 1))
        med = statistics.median(secs)
        line = f"{kind:14s} {tool:5s} {n:6d} posts: median {med:.1f} s ({min(secs):.1f}-{max(secs):.1f}), {n / med:.1f} rows/s end to end"
        if fixed:
            line += f"; fixed cost {statistics.median(fixed):.1f} s, marginal {(n - 1) / (med - statistics.median(fixed)):.1f} rows/s"
        print(line)


if __name__ == "__main__":
    main()
