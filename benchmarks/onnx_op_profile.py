#!/usr/bin/env python3
"""Where an exported model's time goes on one thread: the session against the Python around it,
and ONNX Runtime's kernel time by operator and by layer kind.

    python benchmarks/onnx_op_profile.py --model EXPORT [--model EXPORT2 ...] \\
        [--posts twitter2015:test btc:test] [--limit 2500] [--out results/onnx_op_profile.csv]

For each exported model (``hamner export`` output), in this process and on one thread:

1. ``Tagger.tag_many`` tags the posts in chunks of 256, as ``hamner tag`` reads them, with the
   session's ``run`` timed: the share of the wall time spent in the session, the rest being
   tokenization, encoding, collation, Viterbi and building the answers (``part`` = ``session`` and
   ``outside_session``, seconds and share);
2. the same batches (32 posts, ordered by length) go through a fresh one-thread session with ONNX
   Runtime's profiler on: its kernel time summed by operator type (``part`` = ``op:<type>``) and by
   the layer the node belongs to (``part`` = ``layer:<kind>``: the encoder's attention
   input projections, attention output, feed-forward input and output, the char CNN, the rest).

One row per part and model, with the share of the total.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import post_texts, read_posts  # noqa: E402
from _results import run_meta, write_csv  # noqa: E402

CHUNK = 256
BATCH = 32
#: the layer a node belongs to, by the first pattern its name matches
LAYERS = [
    ("attention_in", r"/attention/self/(query|key|value)/"),
    ("attention_out", r"/attention/output/dense/"),
    ("ffn_in", r"/intermediate/dense/"),
    ("ffn_out", r"/encoder/.*/output/dense/"),  # after attention_out: the feed-forward one
    ("attention_scores", r"/attention/self/"),
    ("char_cnn", r"/char_cnn/"),
    ("encoder_other", r"/encoder/"),
]


def layer_of(node: str) -> str:
    for name, pattern in LAYERS:
        if re.search(pattern, node):
            return name
    return "other"


class _TimedSession:
    """An ONNX Runtime session whose ``run`` adds its wall time to ``seconds``."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.seconds = 0.0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def split_session_time(tagger: Any, texts: list[str]) -> dict[str, float]:
    """Wall seconds of ``tagger`` (one thread) tagging ``texts``, and of the session's runs within it."""
    tagger.tag(texts[0])  # the first post's one-time costs are not the pass's
    timed = _TimedSession(tagger.model.session)
    tagger.model.session = timed
    t = time.perf_counter()
    for s in range(0, len(texts), CHUNK):
        tagger.tag_many(texts[s : s + CHUNK])
    wall = time.perf_counter() - t
    tagger.model.session = timed._session
    return {"wall": wall, "session": timed.seconds}


def kernel_times(tagger: Any, texts: list[str], work: Path) -> tuple[Counter[str], Counter[str]]:
    """ONNX Runtime's kernel microseconds over the posts' batches, by operator type and by layer."""
    from hamner.inference.onnx import ONNX_FILE, cpu_session

    model = tagger.model
    words = [[t.text for t in tagger.tokenize(x)] for x in texts]
    _, encoded, order = model.encode_inputs(words, None, "window")
    feeds = [model.feeds(model.collate([encoded[u] for u in order[s : s + BATCH]])) for s in range(0, len(order), BATCH)]
    work.mkdir(parents=True, exist_ok=True)
    session = cpu_session(model.directory / ONNX_FILE, 1, profile_prefix=work / "ort_profile")  # as OnnxTagger makes it
    for f in feeds:
        session.run(None, {n: f[n] for n in model.input_names})
    path = session.end_profiling()
    by_op: Counter[str] = Counter()
    by_layer: Counter[str] = Counter()
    for event in json.loads(Path(path).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
            by_layer[layer_of(event["name"])] += event["dur"]
    os.remove(path)
    return by_op, by_layer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="an exported model directory (repeatable)")
    ap.add_argument("--posts", nargs="+", default=["twitter2015:test", "btc:test"], metavar="NAME:SPLIT")
    ap.add_argument("--data-root")
    ap.add_argument("--limit", type=int, default=2500)
    ap.add_argument("--work", default="/tmp/hamner-onnx-op-profile")
    ap.add_argument("--out", default="results/onnx_op_profile.csv")
    args = ap.parse_args()
    from hamner.inference.onnx import is_exported
    from hamner.inference.tagger import Tagger

    for m in args.model:
        if not is_exported(m):
            raise SystemExit(f"--model {m}: not an exported model (make one with 'hamner export')")
    texts = post_texts(read_posts(args.posts, args.data_root))[: args.limit]
    rows: list[dict[str, Any]] = []
    for model_dir in args.model:
        rule = json.loads((Path(model_dir) / "onnx_export.json").read_text()).get("int8_rule")
        base = {"model": model_dir, "int8_rule": json.dumps(rule, sort_keys=True) if rule else "fp32", "posts": len(texts)}
        tagger = Tagger.from_pretrained(model_dir, batch_size=BATCH, threads=1)
        split = split_session_time(tagger, texts)
        outside = split["wall"] - split["session"]
        for part, seconds in (("session", split["session"]), ("outside_session", outside)):
            rows.append({**base, "part": part, "seconds": round(seconds, 3), "share": round(seconds / split["wall"], 4)})
        by_op, by_layer = kernel_times(tagger, texts, Path(args.work))
        for prefix, counts in (("op", by_op), ("layer", by_layer)):
            total = sum(counts.values())
            for name, us in counts.most_common():
                rows.append({**base, "part": f"{prefix}:{name}", "seconds": round(us / 1e6, 3), "share": round(us / total, 4)})
        print(
            f"{model_dir}: session {split['session'] / split['wall']:.0%} of {split['wall']:.1f} s; "
            + ", ".join(f"{k} {v / sum(by_layer.values()):.0%}" for k, v in by_layer.most_common()),
            flush=True,
        )
    write_csv(args.out, rows, run_meta("onnx_op_profile.py"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
