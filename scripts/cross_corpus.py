#!/usr/bin/env python3
"""Cross-corpus scores of the single-corpus BTC and Twitter-2017 models (issue 31, the pre-registered
protocol in results/explore/README.md: descriptive, no decision).

    python scripts/cross_corpus.py --btc-runs /work/btc-runs/btc/btc-text-only \\
        --twitter2017-runs /work/btc-runs/twitter2017/text-only --seeds 1 2 3 \\
        [--out results/explore/btc-joint/cross_corpus.csv]

Each run's dev-chosen checkpoint (``DIR/seed<k>/best``, or DIR with ``{seed}`` put in) is scored
four ways on the types both corpora annotate, PER LOC ORG:

- on the other corpus's test split (``cross-corpus``), MISC dropped from the gold and from the
  predictions: ``hamner evaluate --model M --gold OTHER/test.txt --type-map MISC=O --json``;
- on its own test split, the in-corpus reference (``in-corpus``): Twitter-2017's with
  ``--type-map MISC=O``, BTC's as it is (neither BTC nor its model has a MISC).

The scores are computed in this process by :func:`hamner.cli.evaluate_checkpoint` from the
arguments of the command written in each row's ``command`` column, so a row is exactly what that
command prints. A Twitter-2017 model's MISC predictions are left out of its scores and counted in
``predictions_not_scored``. Each row names the checkpoint's training commit (``run_commit``, from
its ``run.json``), the commit of the source that scored it (``commit``) and the machine, and the
run's own test F1 from its ``final.json`` (``run_test_f1``, on every type of its corpus): on BTC's
in-corpus row, the same checkpoint, split and types, the two must agree (a warning says when not).
Only finished runs are scored (a ``final.json``: ``best/`` is there from the first epoch on).

Writes ``--out`` (one row per model, test split and seed), ``--summary`` (per direction: mean and
sample standard deviation over the seeds of the in-corpus reference, the cross-corpus score and
the drop between them, seed by seed) and ``--markdown`` (the summary as a table to paste into
results/explore/README.md and the docs). ``--table`` prints that table from an existing ``--out``
CSV without scoring anything. Refuses a source tree with uncommitted changes unless
``--allow-dirty``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hamner.env import git_revision, machine_description

log = logging.getLogger("cross_corpus")

SHARED = ("PER", "LOC", "ORG")  # the types both corpora annotate (BTC has no MISC)
CORPORA = ("btc", "twitter2017")
NAMES = {"btc": "BTC", "twitter2017": "Twitter-2017"}
# MISC=O drops MISC from the gold (Twitter-2017's) and from a four-type model's predictions (on BTC);
# only the BTC model on BTC's own test split is scored as it is (neither has a MISC)
DROP_MISC = ["--type-map", "MISC=O"]
OUT = Path("results/explore/btc-joint/cross_corpus.csv")

COLUMNS = [
    "trained_on", "tested_on", "kind", "seed", "model", "gold", "types", "micro_precision", "micro_recall",
    "micro_f1", "tp", "n_pred", "n_gold", *(f"f1_{t}" for t in SHARED), "predictions_not_scored", "not_scored",
    "run_test_f1", "command", "run_commit", "commit", "machine", "date",
]  # fmt: skip
SUMMARY_COLUMNS = [
    "trained_on", "tested_on", "seeds", "in_corpus_f1_mean", "in_corpus_f1_std", "cross_f1_mean", "cross_f1_std",
    "drop_mean", "drop_std", "drop_per_seed", *(f"cross_f1_{t}_mean" for t in SHARED),
    *(f"drop_{t}_mean" for t in SHARED), "predictions_not_scored_mean", "commit", "machine",
]  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One score: a corpus's model of one seed on one corpus's test split."""

    trained_on: str
    tested_on: str
    seed: int
    run: Path  # the run folder: best/, run.json, final.json

    @property
    def kind(self) -> str:
        return "in-corpus" if self.trained_on == self.tested_on else "cross-corpus"


def run_dir(pattern: str | os.PathLike[str], seed: int) -> Path:
    """``DIR/seed<k>``, or DIR with the seed put in where it holds ``{seed}`` (as scripts/lever_seeds.py)."""
    text = str(pattern)
    return Path(text.format(seed=seed)) if "{seed}" in text else Path(text) / f"seed{seed}"


def gold_file(data_root: Path, corpus: str) -> Path:
    return data_root / corpus / "test.txt"


def evaluate_argv(job: Job, data_root: Path, device: str, batch_size: int) -> list[str]:
    """The ``hamner evaluate`` arguments of one score (the row's command, without ``hamner``)."""
    argv = ["evaluate", "--model", str(job.run / "best"), "--gold", str(gold_file(data_root, job.tested_on))]
    if not job.trained_on == job.tested_on == "btc":
        argv += DROP_MISC
    if device != "cpu":
        argv += ["--device", device]
    if batch_size != 64:
        argv += ["--batch-size", str(batch_size)]
    return [*argv, "--json"]


def run_commit(run: Path) -> str:
    """The commit a run was trained at, from its ``run.json`` (``+dirty`` when its tree was)."""
    path = run / "run.json"
    if not path.exists():
        raise SystemExit(f"{path}: no such file (every run scored must say which commit trained it)")
    rev = json.loads(path.read_text()).get("git", {})
    if "commit" not in rev:
        raise SystemExit(f"{path}: no git.commit")
    return f"{rev['commit']}{'+dirty' if rev.get('dirty') else ''}"


def run_test(run: Path) -> tuple[float, set[str]]:
    """The run's own test F1 and the types it scored (its ``final.json``, written when it finished)."""
    final = json.loads((run / "final.json").read_text())
    return float(final["test_f1"]), set(final["test"]["per_type"])


def score(job: Job, data_root: Path, device: str, batch_size: int) -> dict[str, Any]:
    """One row: ``hamner evaluate`` of the job, run in this process."""
    from hamner.cli import build_parser, evaluate_checkpoint

    argv = evaluate_argv(job, data_root, device, batch_size)
    for need in (job.run / "best", gold_file(data_root, job.tested_on)):
        if not need.exists():
            raise SystemExit(f"{need}: no such file or folder ({NAMES[job.trained_on]} seed {job.seed})")
    answer = evaluate_checkpoint(build_parser().parse_args(argv)).answer
    per_type = answer["per_type"]
    if set(per_type) != set(SHARED):
        raise SystemExit(
            f"{job.run / 'best'} on {argv[4]}: scored types {sorted(per_type)}, expected {list(SHARED)} "
            "(a checkpoint or corpus with another label set than the protocol's)"
        )
    micro, not_scored = answer["micro"], answer.get("not_scored", {})
    own = run_test(job.run)
    if job.kind == "in-corpus" and own[1] == set(SHARED) and abs(own[0] - micro["f1"]) > 1e-6:
        # the same checkpoint on the same split and types as the run's final.json (BTC): the same F1 is expected
        log.warning(
            "%s on %s: F1 %.6f, but the run's final.json says %.6f on the same types",
            job.run / "best", argv[4], micro["f1"], own[0],
        )  # fmt: skip
    return {
        "trained_on": job.trained_on, "tested_on": job.tested_on, "kind": job.kind, "seed": job.seed,
        "model": str(job.run / "best"), "gold": argv[4], "types": " ".join(SHARED),
        "micro_precision": f"{micro['precision']:.6f}", "micro_recall": f"{micro['recall']:.6f}",
        "micro_f1": f"{micro['f1']:.6f}", "tp": micro["tp"], "n_pred": micro["n_pred"], "n_gold": micro["n_gold"],
        **{f"f1_{t}": f"{per_type[t]['f1']:.6f}" for t in SHARED},
        "predictions_not_scored": sum(not_scored.values()),
        "not_scored": " ".join(f"{t}={n}" for t, n in not_scored.items()),
        "run_test_f1": f"{own[0]:.6f}", "command": "hamner " + shlex.join(argv), "run_commit": run_commit(job.run),
    }  # fmt: skip


def jobs(runs: dict[str, str], seeds: Sequence[int]) -> list[Job]:
    """Every model of every seed on its own test split, then on the other corpus's; every run must exist
    (the directions are compared on the same seeds, never on what happens to be there)."""
    out = []
    for seed in seeds:
        for trained_on in CORPORA:
            run = run_dir(runs[trained_on], seed)
            if not (run / "best").is_dir():
                raise SystemExit(f"{run / 'best'}: no checkpoint ({NAMES[trained_on]} seed {seed}; every seed in --seeds must exist)")
            if not (run / "final.json").exists():  # best/ is there from the first epoch on
                raise SystemExit(f"{run}: no final.json ({NAMES[trained_on]} seed {seed} has not finished: best/ may still change)")
            run_commit(run)  # a run.json that says which commit trained it, before anything is scored
            for tested_on in (trained_on, *(c for c in CORPORA if c != trained_on)):
                out.append(Job(trained_on, tested_on, seed, run))
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) >= 2 else float("nan")


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per direction (trained on A, tested on B): the in-corpus reference, the cross-corpus score and the
    drop, each as mean and sample standard deviation over the seeds that have both rows."""
    by_key = {(r["trained_on"], r["tested_on"], int(r["seed"])): r for r in rows}
    out = []
    for trained_on in CORPORA:
        for tested_on in CORPORA:
            if tested_on == trained_on:
                continue
            seeds = sorted(
                s for a, b, s in by_key if (a, b) == (trained_on, tested_on) and (trained_on, trained_on, s) in by_key
            )
            if not seeds:
                continue
            own = [by_key[trained_on, trained_on, s] for s in seeds]
            cross = [by_key[trained_on, tested_on, s] for s in seeds]

            def f(rs: list[dict[str, Any]], col: str) -> list[float]:
                return [float(r[col]) for r in rs]

            drops = [a - b for a, b in zip(f(own, "micro_f1"), f(cross, "micro_f1"), strict=True)]
            (im, isd), (cm, csd), (dm, dsd) = _mean_std(f(own, "micro_f1")), _mean_std(f(cross, "micro_f1")), _mean_std(drops)
            commits = sorted({str(r.get("commit", "")) for r in own + cross})
            machines = sorted({str(r.get("machine", "")) for r in own + cross})
            out.append({
                "trained_on": trained_on, "tested_on": tested_on, "seeds": " ".join(map(str, seeds)),
                "in_corpus_f1_mean": f"{im:.4f}", "in_corpus_f1_std": f"{isd:.4f}",
                "cross_f1_mean": f"{cm:.4f}", "cross_f1_std": f"{csd:.4f}",
                "drop_mean": f"{dm:.4f}", "drop_std": f"{dsd:.4f}", "drop_per_seed": " ".join(f"{d:.4f}" for d in drops),
                **{f"cross_f1_{t}_mean": f"{statistics.mean(f(cross, f'f1_{t}')):.4f}" for t in SHARED},
                **{
                    f"drop_{t}_mean": f"{statistics.mean(a - b for a, b in zip(f(own, f'f1_{t}'), f(cross, f'f1_{t}'), strict=True)):.4f}"
                    for t in SHARED
                },
                "predictions_not_scored_mean": f"{statistics.mean(f(cross, 'predictions_not_scored')):.1f}",
                "commit": " ".join(commits), "machine": " ".join(machines),
            })  # fmt: skip
    return out


def pts(x: object) -> str:
    """A fraction as F1 points."""
    return f"{100 * float(str(x)):.2f}"


def spread(mean: object, std: object) -> str:
    """Mean ± sample std in F1 points (the std left out when there is one seed)."""
    s = float(str(std))
    return pts(mean) if s != s else f"{pts(mean)} ± {pts(std)}"


def markdown(summary: Sequence[dict[str, Any]]) -> str:
    """The summary as a Markdown table (F1 points, PER LOC ORG)."""
    lines = [
        "| trained on | tested on | seeds | own test F1 (in-corpus) | other corpus's test F1 | drop | "
        "drop PER / LOC / ORG | MISC predictions left out (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        per_type = " / ".join(f"{100 * float(r[f'drop_{t}_mean']):.2f}" for t in SHARED)
        lines.append(
            f"| {NAMES[r['trained_on']]} | {NAMES[r['tested_on']]} | {r['seeds']} | "
            f"{spread(r['in_corpus_f1_mean'], r['in_corpus_f1_std'])} | {spread(r['cross_f1_mean'], r['cross_f1_std'])} | "
            f"{spread(r['drop_mean'], r['drop_std'])} | {per_type} | {r['predictions_not_scored_mean']} |"
        )
    return "\n".join(lines) + "\n"


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    log.info("wrote %s", path)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--btc-runs", help="the btc-text-only runs: DIR/seed<k>/best (or a path with {seed})")
    ap.add_argument("--twitter2017-runs", help="the Twitter-2017 text-only runs: DIR/seed<k>/best (or a path with {seed})")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--data-root", type=Path, help="folder with btc/ and twitter2017/ (default: $HAMNER_DATA_ROOT)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"the rows (default {OUT})")
    ap.add_argument("--summary", type=Path, help="the summary CSV (default: OUT's folder, cross_corpus_summary.csv)")
    ap.add_argument("--markdown", type=Path, help="the summary table (default: OUT's folder, cross_corpus_summary.md)")
    ap.add_argument("--table", action="store_true", help="print the summary table of an existing --out CSV; score nothing")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--allow-dirty", action="store_true", help="score although the source tree has uncommitted changes (recorded as +dirty)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    summary_path = args.summary or args.out.with_name(args.out.stem + "_summary.csv")
    markdown_path = args.markdown or args.out.with_name(args.out.stem + "_summary.md")

    if args.table:
        if not args.out.exists():
            raise SystemExit(f"{args.out}: no such file (score first, without --table)")
        with args.out.open(newline="") as fh:
            rows: list[dict[str, Any]] = list(csv.DictReader(fh))
        sys.stdout.write(markdown(summarize(rows)))
        return 0
    if not args.btc_runs or not args.twitter2017_runs:
        ap.error("--btc-runs and --twitter2017-runs are required (unless --table)")
    data_root = args.data_root or (Path(os.environ["HAMNER_DATA_ROOT"]) if os.environ.get("HAMNER_DATA_ROOT") else None)
    if data_root is None:
        ap.error("pass --data-root or set HAMNER_DATA_ROOT")

    if args.threads:
        torch.set_num_threads(args.threads)
    rev = git_revision()
    if rev["dirty"] and not args.allow_dirty:
        raise SystemExit("the source tree has uncommitted changes: commit them first (or pass --allow-dirty, recorded as +dirty)")
    common = {
        "commit": f"{rev['commit']}{'+dirty' if rev['dirty'] else ''}",
        "machine": machine_description(torch.device(args.device)), "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    todo = jobs({"btc": args.btc_runs, "twitter2017": args.twitter2017_runs}, args.seeds)
    rows = []
    for k, job in enumerate(todo, start=1):
        row = {**score(job, data_root, args.device, args.batch_size), **common}
        log.info(
            "%d/%d %s seed %d on %s test (%s): F1 %s (PER LOC ORG), %d MISC predictions left out",
            k, len(todo), NAMES[job.trained_on], job.seed, NAMES[job.tested_on], job.kind, pts(row["micro_f1"]),
            row["predictions_not_scored"],
        )  # fmt: skip
        rows.append(row)
    write_csv(args.out, COLUMNS, rows)
    summary = summarize(rows)
    write_csv(summary_path, SUMMARY_COLUMNS, summary)
    table = markdown(summary)
    command = shlex.join(["python", "scripts/cross_corpus.py", *(sys.argv[1:] if argv is None else argv)])
    markdown_path.write_text(f"{table}\n`{command}` at {common['commit']}, {common['machine']}\n")
    log.info("wrote %s", markdown_path)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
