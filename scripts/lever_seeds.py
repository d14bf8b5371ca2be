#!/usr/bin/env python3
"""Each lever against its baseline, seed by seed: mean best dev F1 (what the lever's rule decides on),
mean test F1, and tests of the test gap.

    python scripts/lever_seeds.py --out results/explore/seed3-levers/levers.csv \\
        --lever "LLRD 0.8" twitter2017 results/explore/twitter2017/hamlearning+lr_layer_decay0.8 \\
                results/runs/twitter2017/hamlearning [--lever ...] [--seeds 1 2 3] [--rule 0.2]

A lever's and a baseline's runs are ``DIR/seed<k>`` (``final.json`` with ``dev_f1`` and ``test_f1``),
or, when DIR contains ``{seed}``, DIR with the seed put in (a joint run's second dataset:
``results/explore/joint/seed{seed}/joint/twitter2015``). Every requested seed must exist on both
sides: a lever is compared on the same seeds as its baseline, never on what happens to be there.

Tests of the test gap (one-sided, lever above baseline), per row:

- ``seed_t_p_value``: paired t-test over the seeds' test F1 (always);
- ``post_*`` and ``seed_post_*``: the paired bootstraps of ``scripts/significance.py``, over the test
  posts with the models fixed, and over seeds and posts. Only when every run of both sides has its
  ``test_predictions.jsonl.gz`` (checked against its ``final.json``); otherwise empty, and the
  ``bootstrap`` column says which runs have none.

``test_*_std`` is the sample standard deviation over the seeds. ``rule_met`` is whether the dev gap
reaches ``--rule`` (the +0.2 every lever's rule used). Writes the CSV with the command, the commit
and the machine; refuses a source tree with uncommitted changes unless ``--allow-dirty``. With
``--docs PAGE``, the table between ``<!-- lever-seeds:start -->`` and ``<!-- lever-seeds:end -->`` in
PAGE is rewritten from the rows (the page must have the markers); with ``--readme PAGE``, a narrower table (the dev and test gaps) between ``<!-- lever-seeds-short:start -->``
and ``<!-- lever-seeds-short:end -->``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import sys
from pathlib import Path

import torch

from hamner.env import git_revision, machine_description
from hamner.evaluation.predictions import RUN_PREDICTIONS, PostPrediction, read_run_predictions
from hamner.evaluation.significance import paired_bootstrap, paired_seed_t_test, seed_and_post_bootstrap

COLUMNS = [
    "lever", "dataset", "lever_runs", "baseline_runs", "seeds", "dev_lever", "dev_baseline", "dev_gap", "rule",
    "rule_met", "test_lever", "test_baseline", "test_gap", "test_lever_std", "test_baseline_std",
    "test_lever_per_seed", "test_baseline_per_seed",
    "seed_t_p_value", "post_ci_low", "post_ci_high", "post_p_value", "seed_post_ci_low", "seed_post_ci_high",
    "seed_post_p_value", "bootstrap", "samples", "bootstrap_seed", "command", "commit", "machine",
]  # fmt: skip


def run_dir(pattern: str, seed: int) -> Path:
    return Path(pattern.format(seed=seed)) if "{seed}" in pattern else Path(pattern) / f"seed{seed}"


def scores(pattern: str, seeds: list[int]) -> list[tuple[float, float]]:
    """(best dev F1, test F1) of each seed's run."""
    out = []
    for seed in seeds:
        final = run_dir(pattern, seed) / "final.json"
        if not final.exists():
            raise SystemExit(f"{final}: no such run (every seed in --seeds must exist for the lever and its baseline)")
        rec = json.loads(final.read_text())
        try:
            out.append((float(rec["dev_f1"]), float(rec["test_f1"])))
        except KeyError as exc:
            raise SystemExit(f"{final}: no {exc.args[0]}") from None
    return out


def predictions(pattern: str, seeds: list[int]) -> tuple[list[list[PostPrediction]], list[str]]:
    """Each seed's checked test predictions, and the runs that have none."""
    found, missing = [], []
    for seed in seeds:
        run = run_dir(pattern, seed)
        if not (run / RUN_PREDICTIONS).exists():
            missing.append(str(run))
            continue
        try:
            found.append(read_run_predictions(run))
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    return found, missing


def baseline_name(pattern: str) -> str:
    """The config a baseline's runs belong to: the last path part that is not a seed."""
    parts = [p for p in Path(pattern).parts if not p.startswith("seed")]
    return parts[-1] if parts else pattern


def pct(x: object) -> str:
    """A fraction from the CSV as F1 points."""
    return f"{100 * float(str(x)):.2f}"


def gap(x: object) -> str:
    """A signed gap from the CSV in F1 points; one that rounds to zero is +0.00, not -0.00."""
    return f"{round(100 * float(str(x)), 2) + 0.0:+.2f}"


def markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| lever | dataset | baseline | seeds | best dev F1 (mean): lever / baseline | dev gap | test F1 (mean): lever / baseline | "
        "test gap | seeds and posts: 95 % interval, p | paired t over seeds, p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        boot = (
            f"{gap(r['seed_post_ci_low'])} to {gap(r['seed_post_ci_high'])}, {float(str(r['seed_post_p_value'])):.3f}"
            if r["bootstrap"] == "run" else "– (no per-post predictions)"
        )  # fmt: skip
        rule = "" if r["rule_met"] else " (under +" + f"{float(str(r['rule'])):.1f})"
        lines.append(
            f"| {r['lever']} | {r['dataset']} | `{baseline_name(str(r['baseline_runs']))}` | {r['seeds']} | "
            f"{pct(r['dev_lever'])} / {pct(r['dev_baseline'])} | {gap(r['dev_gap'])}{rule} | "
            f"{pct(r['test_lever'])} / {pct(r['test_baseline'])} | {gap(r['test_gap'])} | {boot} | "
            f"{float(str(r['seed_t_p_value'])):.3f} |"
        )
    return "\n".join(lines)


def markdown_short(rows: list[dict[str, object]]) -> str:
    """The README's narrower form of the table: the gaps that decide and report, each lever once per dataset."""
    rules = sorted({f"+{float(str(r['rule'])):.1f}" for r in rows})
    lines = [
        f"| lever | dataset | against | seeds | mean best dev F1: gap (rule {', '.join(rules)}) | mean test F1: lever / baseline (gap) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['lever']} | {r['dataset']} | `{baseline_name(str(r['baseline_runs']))}` | {r['seeds']} | {gap(r['dev_gap'])} | "
            f"{pct(r['test_lever'])} / {pct(r['test_baseline'])} ({gap(r['test_gap'])}) |"
        )
    return "\n".join(lines)


def write_docs(page: Path, table: str, marker: str) -> None:
    """Put ``table`` between PAGE's ``<!-- MARKER:start -->`` and ``<!-- MARKER:end -->`` (which must be there)."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = page.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{page}: no {start} ... {end} markers to put the table between")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    page.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lever", nargs=4, action="append", required=True, metavar=("NAME", "DATASET", "LEVER_RUNS", "BASELINE_RUNS"))
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--rule", type=float, default=0.2, help="the dev gain, in F1 points, a lever's rule asks for")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    ap.add_argument("--allow-dirty", action="store_true", help="write results although the source tree has uncommitted changes")
    ap.add_argument("--docs", type=Path, help="a page whose lever-seeds table is rewritten from the rows")
    ap.add_argument(
        "--readme", type=Path,
        help="a page (the README) whose narrower table between <!-- lever-seeds-short:start --> and "
        "<!-- lever-seeds-short:end --> is rewritten from the rows",
    )
    args = ap.parse_args()
    rev = git_revision()
    if rev["dirty"] and not args.allow_dirty:
        raise SystemExit("the source tree has uncommitted changes: commit them first (or pass --allow-dirty, recorded as +dirty)")
    common = {
        "command": shlex.join(["python", *sys.argv]), "commit": f"{rev['commit']}{'+dirty' if rev['dirty'] else ''}",
        "machine": machine_description(torch.device("cpu")), "samples": args.samples, "bootstrap_seed": args.seed,
        "rule": args.rule, "seeds": " ".join(map(str, args.seeds)),
    }  # fmt: skip
    rows: list[dict[str, object]] = []
    for name, dataset, lever_runs, base_runs in args.lever:
        lev, base = scores(lever_runs, args.seeds), scores(base_runs, args.seeds)
        dev_l, dev_b = statistics.mean(d for d, _ in lev), statistics.mean(d for d, _ in base)
        test_l, test_b = [t for _, t in lev], [t for _, t in base]
        row = {
            **common, "lever": name, "dataset": dataset, "lever_runs": lever_runs, "baseline_runs": base_runs,
            "dev_lever": f"{dev_l:.4f}", "dev_baseline": f"{dev_b:.4f}", "dev_gap": f"{dev_l - dev_b:.4f}",
            "rule_met": 100 * (dev_l - dev_b) >= args.rule - 1e-9,
            "test_lever": f"{statistics.mean(test_l):.4f}", "test_baseline": f"{statistics.mean(test_b):.4f}",
            "test_gap": f"{statistics.mean(test_l) - statistics.mean(test_b):.4f}",
            "test_lever_std": f"{statistics.stdev(test_l):.4f}" if len(test_l) >= 2 else "",
            "test_baseline_std": f"{statistics.stdev(test_b):.4f}" if len(test_b) >= 2 else "",
            "test_lever_per_seed": " ".join(f"{t:.4f}" for t in test_l),
            "test_baseline_per_seed": " ".join(f"{t:.4f}" for t in test_b),
            "seed_t_p_value": f"{paired_seed_t_test(test_l, test_b):.4f}" if len(args.seeds) >= 2 else "",
        }  # fmt: skip
        pred_l, miss_l = predictions(lever_runs, args.seeds)
        pred_b, miss_b = predictions(base_runs, args.seeds)
        if miss_l or miss_b:
            row["bootstrap"] = f"not run: no {RUN_PREDICTIONS} in " + ", ".join(miss_l + miss_b)
            line = f"paired t over seeds p = {row['seed_t_p_value']}; no bootstrap ({len(miss_l + miss_b)} runs without predictions)"
        else:
            ref = pred_b[0]
            for posts in pred_l + pred_b:
                if [(p.source, p.words, p.gold) for p in posts] != [(p.source, p.words, p.gold) for p in ref]:
                    raise SystemExit(f"{name}: the runs were not scored on the same test posts and gold tags")
            gold = [p.gold for p in ref]
            a, b = [[p.pred for p in r] for r in pred_l], [[p.pred for p in r] for r in pred_b]
            posts_only = paired_bootstrap(gold, a, b, n_samples=args.samples, seed=args.seed)
            both = seed_and_post_bootstrap(gold, a, b, paired=True, n_samples=args.samples, seed=args.seed)
            row.update({
                "post_ci_low": f"{posts_only.ci_low:.4f}", "post_ci_high": f"{posts_only.ci_high:.4f}",
                "post_p_value": f"{posts_only.p_value:.4f}", "seed_post_ci_low": f"{both.ci_low:.4f}",
                "seed_post_ci_high": f"{both.ci_high:.4f}", "seed_post_p_value": f"{both.p_value:.4f}", "bootstrap": "run",
            })  # fmt: skip
            line = (
                f"paired t over seeds p = {row['seed_t_p_value']}; seeds and posts "
                f"{100 * both.ci_low:+.2f} to {100 * both.ci_high:+.2f}, p = {both.p_value:.3f}"
            )
        rows.append(row)
        print(
            f"{name} ({dataset}, seeds {common['seeds']}): dev {100 * dev_l:.2f} against {100 * dev_b:.2f} "
            f"({100 * (dev_l - dev_b):+.2f}, rule {'met' if row['rule_met'] else 'not met'}); test "
            f"{100 * statistics.mean(test_l):.2f} against {100 * statistics.mean(test_b):.2f} "
            f"({100 * (statistics.mean(test_l) - statistics.mean(test_b)):+.2f}); {line}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")
    if args.docs is not None:
        write_docs(args.docs, markdown(rows), "lever-seeds")
        print(f"rewrote the lever-seeds table of {args.docs}")
    if args.readme is not None:
        write_docs(args.readme, markdown_short(rows), "lever-seeds-short")
        print(f"rewrote the lever-seeds-short table of {args.readme}")


if __name__ == "__main__":
    main()
