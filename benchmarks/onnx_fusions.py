#!/usr/bin/env python3
"""Whether ONNX Runtime's graph fusions pay on this machine: an exported model's session with some
of them turned off, against all of them on.

    python benchmarks/onnx_fusions.py --model EXPORT [--model EXPORT2 ...] \\
        [--disable SkipLayerNormFusion ...] [--threads 1 2] [--posts twitter2015:test btc:test] \\
        [--limit 2500] [--repeats 5] [--out results/onnx_fusions.csv]

For each exported model (``hamner export`` output) and thread count, one session with every fusion
(``ORT_ENABLE_ALL``, nothing disabled) and one per ``--disable`` value (a comma-separated list of
ONNX Runtime optimizer names) run the same batches: the posts (unseen by the model) in batches of
32 ordered by length. The sessions alternate, ``--repeats`` times, so drift of a shared machine hits
all alike. Each row: the median posts/s of the session alone and its range, the ratio to all
fusions on, and how far the emissions move (largest absolute difference, share of words whose best
tag changes). :data:`hamner.inference.onnx.DISABLED_OPTIMIZERS` cites the committed file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import post_texts, read_posts  # noqa: E402
from _results import run_meta, write_csv  # noqa: E402

BATCH = 32


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="an exported model directory (repeatable)")
    ap.add_argument(
        "--disable", action="append", default=[], help="optimizers to turn off, comma-separated (repeatable)"
    )
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--posts", nargs="+", default=["twitter2015:test", "btc:test"], metavar="NAME:SPLIT")
    ap.add_argument("--data-root")
    ap.add_argument("--limit", type=int, default=2500)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="results/onnx_fusions.csv")
    args = ap.parse_args()
    import numpy as np

    from hamner.inference.onnx import ONNX_FILE, OnnxTagger, cpu_session, is_exported
    from hamner.inference.tagger import Tagger

    for m in args.model:
        if not is_exported(m):
            raise SystemExit(f"--model {m}: not an exported model (make one with 'hamner export')")
    variants = [""] + [",".join(x.strip() for x in d.split(",") if x.strip()) for d in args.disable]
    texts = post_texts(read_posts(args.posts, args.data_root))[: args.limit]
    rows: list[dict[str, Any]] = []
    for model_dir in args.model:
        tagger = Tagger.from_pretrained(model_dir, batch_size=BATCH, threads=1)
        model = tagger.model
        assert isinstance(model, OnnxTagger)
        words = [[t.text for t in tagger.tokenize(x)] for x in texts]
        _, encoded, order = model.encode_inputs(words, None, "window")
        batches = [model.collate([encoded[u] for u in order[s : s + BATCH]]) for s in range(0, len(order), BATCH)]
        masks = [b["word_mask"].numpy().astype(bool) for b in batches]  # the posts' words, not padding
        feeds = [model.feeds(b) for b in batches]
        for threads in args.threads:
            sessions = {v: cpu_session(Path(model_dir) / ONNX_FILE, threads, disabled=v.split(",") if v else ()) for v in variants}
            for session in sessions.values():
                session.run(None, feeds[0])
            speed: dict[str, list[float]] = {v: [] for v in variants}
            outs: dict[str, list[Any]] = {}
            for _ in range(args.repeats):
                for v, session in sessions.items():
                    t = time.perf_counter()
                    outs[v] = [session.run(None, f)[0] for f in feeds]
                    speed[v].append(len(order) / (time.perf_counter() - t))
            base = statistics.median(speed[""])
            for v in variants:
                diff = max(float(np.abs(a - b).max()) for a, b in zip(outs[v], outs[""], strict=True))
                changed = [(a.argmax(-1) != b.argmax(-1))[m] for a, b, m in zip(outs[v], outs[""], masks, strict=True)]
                moved = float(np.mean(np.concatenate(changed)))
                med = statistics.median(speed[v])
                rows.append({
                    "model": model_dir, "threads": threads, "disabled": v or "none", "posts": len(order),
                    "session_posts_per_s": round(med, 1), "range": f"{min(speed[v]):.1f}-{max(speed[v]):.1f}",
                    "vs_all_fusions": round(med / base, 3), "max_abs_diff": f"{diff:.2e}", "best_tag_changed": round(moved, 5),
                })  # fmt: skip
                print(rows[-1], flush=True)
    write_csv(args.out, rows, run_meta("onnx_fusions.py"))


if __name__ == "__main__":
    main()
