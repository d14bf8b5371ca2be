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

    python benchmarks/inference_profile.py --unseen --models RUN/best EXPORTED_DIR ... \
        [--posts twitter2015:test btc:test] [--limit 2500] [--threads N] [--out results/profile_unseen.csv]

``--unseen`` profiles what a new process meets instead: each model in a fresh process (default
threads, as users get them, unless ``--threads``), loaded (``load_s``), then a first pass over posts
it has never seen and a second pass over the same posts, in chunks of 256 as ``hamner tag`` reads
them, stage by stage; a row per model and pass, with the distinct batch shapes the model saw (each
new shape can cost a kernel's first-use set-up) and the threads in use.
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


def one_pass(tagger: Tagger, texts: list[str], features: list[Any] | None, shapes: set[tuple[int, ...]] | None = None) -> dict[str, float]:
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
        if shapes is not None:
            shapes.add(tuple(batch["input_ids"].shape))
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


def unseen_worker(path: str, texts: list[str], threads: int | None) -> list[dict[str, Any]]:
    """Load ``path`` and profile two passes over ``texts`` in chunks of 256 (this process's first)."""
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    tagger = Tagger.from_pretrained(path, batch_size=32, threads=threads)
    load_s = time.perf_counter() - t0
    rows = []
    for label in ("first", "second"):
        t: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        shapes: set[tuple[int, ...]] = set()
        for c in range(0, len(texts), 256):
            part = one_pass(tagger, texts[c : c + 256], None, shapes)
            for k in STAGES:
                t[k] += part[k]
        row: dict[str, Any] = {"model": path, "runtime": _runtime(tagger), "pass": label, "posts": len(texts), "load_s": round(load_s, 2)}
        row.update({f"{k}_s": round(v, 3) for k, v in t.items()})
        row["total_s"] = round(sum(t.values()), 3)
        row["posts_per_s"] = round(len(texts) / sum(t.values()), 1)  # the stages' time (json: of posts tagged again)
        row["batch_shapes"] = len(shapes)
        row["torch_threads"] = torch.get_num_threads()
        model: Any = tagger.model
        row["ort_threads"] = getattr(model, "threads", "") if isinstance(model, OnnxTagger) else ""
        rows.append(row)
    return rows


def _runtime(tagger: Tagger) -> str:
    return f"onnx-{tagger.model.precision}" if isinstance(tagger.model, OnnxTagger) else "pytorch-fp32"


def main_unseen(args: argparse.Namespace) -> None:
    import subprocess

    from _load import post_texts, read_posts

    texts = post_texts(read_posts(args.posts, args.data_root))[: args.limit]
    if args.unseen_worker:
        print("RESULT " + json.dumps(unseen_worker(args.unseen_worker, texts, args.threads)))
        return
    rows: list[dict[str, Any]] = []
    for path in args.models:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--unseen", "--unseen-worker", path, "--models", path,
               "--posts", *args.posts, "--limit", str(args.limit)]  # fmt: skip
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.data_root:
            cmd += ["--data-root", args.data_root]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            raise SystemExit(f"{path} failed:\n{proc.stderr[-3000:]}")
        for row in json.loads(line[len("RESULT ") :]):
            print(row, flush=True)
            rows.append(row)
    meta = run_meta("inference_profile.py")
    meta["threads"] = args.threads or "default"
    import hamner

    meta["hamner_src"] = str(Path(hamner.__file__).resolve().parent)
    write_csv(args.out or "results/profile_unseen.csv", rows, meta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--features", help="feature cache for HamLearning models (Twitter-2017)")
    ap.add_argument("--data-root")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: 2; with --unseen: hamner's default)")
    ap.add_argument("--out", help="results file (default: results/profile_inference.csv; --unseen: results/profile_unseen.csv)")
    ap.add_argument("--unseen", action="store_true", help="first and second pass over posts a fresh process never saw")
    ap.add_argument("--posts", nargs="+", default=["twitter2015:test", "btc:test"], metavar="NAME:SPLIT")
    ap.add_argument("--limit", type=int, default=2500, help="--unseen: at most this many posts")
    ap.add_argument("--unseen-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.unseen:
        main_unseen(args)
        return
    args.threads = args.threads or 2
    args.out = args.out or "results/profile_inference.csv"
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
