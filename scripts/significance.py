#!/usr/bin/env python3
"""Paired bootstrap over test posts: is one config's 3-seed mean F1 above another's by chance?

    python scripts/summarize_results.py   # first: copies each run's files into results/runs
    python scripts/significance.py [--results results] [--pair hamlearning text-only] [--samples 10000]

Reads every run's per-post test predictions, ``<results>/runs/<dataset>/<config>/seed<k>/
test_predictions.jsonl.gz``: training writes them from the dev-chosen checkpoint, and for a run
trained before it did, ``hamner evaluate`` remakes them from that checkpoint:

    hamner evaluate --model runs/twitter2017/hamlearning/seed1/best --features features/twitter2017 \
        --predictions runs/twitter2017/hamlearning/seed1/test_predictions.jsonl.gz

Before comparing, every file is checked against its run: its micro F1 must equal the ``test_f1``
in the run's final.json (so the files are the predictions behind the reported numbers), and both
configs must have the same posts, words and gold tags in the same order. Writes ``<results>/significance.csv``: one row per dataset and
pair, with the command, the commit and the machine. See hamner.evaluation.significance for what
the intervals and p-values mean: ``ci_low``/``ci_high``/``p_value`` resample the test posts for
the trained models at hand (test-set sampling only); ``seed_post_*`` also resample the seeds
(training randomness too); ``seed_t_p`` is a one-sided paired t-test on the per-seed F1 (the
configs' common seeds). Refuses to run from a source tree with uncommitted changes (the commit it
records would not be the code that ran) unless ``--allow-dirty``.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

import torch

from hamner.env import git_revision, machine_description
from hamner.evaluation.metrics import entity_scores
from hamner.evaluation.predictions import PostPrediction, read_run_predictions
from hamner.evaluation.significance import paired_bootstrap, paired_seed_t_test, seed_and_post_bootstrap

COLUMNS = [
    "dataset", "config_a", "config_b", "seeds_a", "seeds_b", "posts", "f1_a", "f1_b", "delta",
    "ci_low", "ci_high", "confidence", "p_value", "seed_post_ci_low", "seed_post_ci_high", "seed_post_p_value",
    "seed_t_p_value", "samples", "bootstrap_seed", "command", "commit", "machine",
]  # fmt: skip


def load_runs(results: Path, dataset: str, config: str) -> dict[int, list[PostPrediction]]:
    """Every seed's predictions of ``config``, each checked against the run's recorded test F1."""
    runs: dict[int, list[PostPrediction]] = {}
    for run in sorted((results / "runs" / dataset / config).glob("seed*")):
        try:
            runs[int(run.name.removeprefix("seed"))] = read_run_predictions(run)
        except ValueError as exc:
            raise SystemExit(f"{exc} (see --help)") from None
    if not runs:
        raise SystemExit(f"no runs under {results / 'runs' / dataset / config}")
    return runs


def check_same_posts(a: list[PostPrediction], b: list[PostPrediction], where: str) -> None:
    if len(a) != len(b):
        raise SystemExit(f"{where}: {len(a)} posts against {len(b)}")
    for x, y in zip(a, b, strict=True):
        if (x.source, x.words, x.gold) != (y.source, y.words, y.gold):
            raise SystemExit(f"{where}: the post at {x.source} differs from the one at {y.source} (words or gold tags)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--pair", nargs=2, action="append", metavar=("CONFIG_A", "CONFIG_B"),
                    help="compare A against B (default: hamlearning text-only); repeatable")  # fmt: skip
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    ap.add_argument("--allow-dirty", action="store_true", help="write results although the source tree has uncommitted changes")
    args = ap.parse_args()
    pairs = args.pair or [["hamlearning", "text-only"]]
    command = shlex.join(["python", *sys.argv])
    rev = git_revision()
    if rev["dirty"] and not args.allow_dirty:
        raise SystemExit("the source tree has uncommitted changes: commit them first (or pass --allow-dirty, recorded as +dirty)")
    commit = f"{rev['commit']}{'+dirty' if rev['dirty'] else ''}"
    machine = machine_description(torch.device("cpu"))
    rows = []
    for dataset_dir in sorted(p for p in (args.results / "runs").iterdir() if p.is_dir()):
        dataset = dataset_dir.name
        for config_a, config_b in pairs:
            if not (dataset_dir / config_a).is_dir() or not (dataset_dir / config_b).is_dir():
                continue
            a = load_runs(args.results, dataset, config_a)
            b = load_runs(args.results, dataset, config_b)
            reference = next(iter(a.values()))
            for name, runs in ((config_a, a), (config_b, b)):
                for seed, posts in runs.items():
                    check_same_posts(reference, posts, f"{dataset}/{name}/seed{seed}")
            gold = [p.gold for p in reference]
            res = paired_bootstrap(
                gold, [[p.pred for p in r] for r in a.values()], [[p.pred for p in r] for r in b.values()],
                n_samples=args.samples, seed=args.seed,
            )  # fmt: skip
            paired = list(a) == list(b)  # the same seeds: resample them as pairs
            both = seed_and_post_bootstrap(
                gold, [[p.pred for p in r] for r in a.values()], [[p.pred for p in r] for r in b.values()],
                paired=paired, n_samples=args.samples, seed=args.seed,
            )  # fmt: skip
            common = sorted(set(a) & set(b))
            per_seed = {
                name: [entity_scores([p.gold for p in runs[k]], [p.pred for p in runs[k]]).micro.f1 for k in common]
                for name, runs in (("a", a), ("b", b))
            }
            t_p = paired_seed_t_test(per_seed["a"], per_seed["b"]) if len(common) >= 2 else None
            rows.append({
                "dataset": dataset, "config_a": config_a, "config_b": config_b,
                "seeds_a": " ".join(map(str, a)), "seeds_b": " ".join(map(str, b)), "posts": res.n_posts,
                "f1_a": f"{res.f1_a:.4f}", "f1_b": f"{res.f1_b:.4f}", "delta": f"{res.delta:.4f}",
                "ci_low": f"{res.ci_low:.4f}", "ci_high": f"{res.ci_high:.4f}", "confidence": res.confidence,
                "p_value": f"{res.p_value:.4f}", "seed_post_ci_low": f"{both.ci_low:.4f}",
                "seed_post_ci_high": f"{both.ci_high:.4f}", "seed_post_p_value": f"{both.p_value:.4f}",
                "seed_t_p_value": f"{t_p:.4f}" if t_p is not None else "", "samples": res.n_samples, "bootstrap_seed": args.seed,
                "command": command, "commit": commit, "machine": machine,
            })  # fmt: skip
            print(
                f"{dataset}: {config_a} {100 * res.f1_a:.2f} vs {config_b} {100 * res.f1_b:.2f}: "
                f"delta {100 * res.delta:+.2f} ({100 * res.confidence:.0f}% interval {100 * res.ci_low:+.2f} to "
                f"{100 * res.ci_high:+.2f}), one-sided p = {res.p_value:.3f}; seeds and posts resampled: "
                f"{100 * both.ci_low:+.2f} to {100 * both.ci_high:+.2f}, p = {both.p_value:.3f}"
                + (f"; paired t over seeds p = {t_p:.3f}" if t_p is not None else "")
            )
    if not rows:
        raise SystemExit(f"no dataset under {args.results / 'runs'} has runs of both configs of a pair")
    out = args.results / "significance.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
