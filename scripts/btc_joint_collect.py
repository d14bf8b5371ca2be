#!/usr/bin/env python3
"""Collect the BTC + Twitter-2017 runs of issue 31's pre-registered protocol (results/explore/README.md)
into the repository, and print what compares them.

    python scripts/btc_joint_collect.py --runs /work/btc-runs --commit 9277e4b [--seeds 1 2 3] [--compare]

``--runs`` is the runs' ``train.output_dir``; each finished run's small files are copied, never its
weights (``best/``, ``last/``):

- ``RUNS/twitter2017/btc-twitter2017-joint-text-only/seed<k>`` -> ``OUT/joint/seed<k>``, and its BTC side
  ``.../seed<k>/joint/btc`` -> ``OUT/joint/seed<k>/joint/btc``;
- ``RUNS/btc/btc-text-only/seed<k>`` -> ``OUT/btc/seed<k>``;
- ``RUNS/twitter2017/text-only/seed<k>`` -> ``OUT/twitter2017/seed<k>``.

A run is finished when its ``final.json`` is there (a joint run: its BTC side's too); an unfinished
or missing one is listed and skipped. A file already in OUT is left as it is when it is the same
bytes, and is an error when it differs (``--replace`` overwrites). ``--commit`` (the pre-registered
one) makes a run trained at another commit, or from a tree with uncommitted changes, an error:
every checkpoint compared must come from the same code.

Then prints, for the runs collected: each run's best dev F1 and test F1; Twitter-2017's MISC
per-type test F1, joint against single-corpus, per seed (BTC has no MISC: the joint model may learn
to leave it untagged); and the exact ``scripts/lever_seeds.py`` command that decides rule 1 (joint
against single-corpus Twitter-2017, mean best dev F1, +0.2) and reports rule 2 (joint BTC side against
``btc-text-only``), with ``--compare`` also runs it, and the ``scripts/cross_corpus.py`` command.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("btc_joint_collect")

REPO = Path(__file__).resolve().parents[1]
OUT = Path("results/explore/btc-joint")
# the three configs of the protocol: OUT's folder name -> the run folder under train.output_dir
SOURCES = {
    "joint": "twitter2017/btc-twitter2017-joint-text-only",
    "btc": "btc/btc-text-only",
    "twitter2017": "twitter2017/text-only",
}
JOINT_SIDE = Path("joint/btc")  # a joint run's BTC checkpoint, final.json and predictions
RUN_FILES = ("final.json", "run.json", "config.yaml", "metrics.jsonl")
OPTIONAL_FILES = ("test_predictions.jsonl.gz",)  # a run without them has no post-level bootstrap
SIDE_FILES = ("final.json",)
SIDE_OPTIONAL = ("test_predictions.jsonl.gz",)


@dataclass(frozen=True)
class Copy:
    src: Path
    dst: Path


def finished(run: Path, joint: bool) -> bool:
    return (run / "final.json").exists() and (not joint or (run / JOINT_SIDE / "final.json").exists())


def plan(runs: Path, out: Path, seeds: Sequence[int]) -> tuple[list[Copy], list[str], dict[str, list[int]]]:
    """The files to copy, the runs not finished (or absent), and the seeds collected per config."""
    copies: list[Copy] = []
    waiting: list[str] = []
    done: dict[str, list[int]] = {name: [] for name in SOURCES}
    for name, source in SOURCES.items():
        joint = name == "joint"
        for seed in seeds:
            run, dst = runs / source / f"seed{seed}", out / name / f"seed{seed}"
            if not finished(run, joint):
                waiting.append(f"{run} ({'not finished: no final.json' if run.exists() else 'no such run'})")
                continue
            missing = [f for f in RUN_FILES if not (run / f).exists()]
            if missing:
                raise SystemExit(f"{run}: finished (final.json) but without {', '.join(missing)}")
            copies += [Copy(run / f, dst / f) for f in RUN_FILES + OPTIONAL_FILES if (run / f).exists()]
            if joint:
                side = run / JOINT_SIDE
                copies += [Copy(side / f, dst / JOINT_SIDE / f) for f in SIDE_FILES + SIDE_OPTIONAL if (side / f).exists()]
            done[name].append(seed)
    return copies, waiting, done


def check_commits(runs: Path, done: dict[str, list[int]], commit: str | None) -> list[str]:
    """Each collected run's training commit; with ``commit``, an error for any other (or a dirty tree)."""
    lines, wrong = [], []
    for name, seeds in done.items():
        for seed in seeds:
            path = runs / SOURCES[name] / f"seed{seed}" / "run.json"
            rev = json.loads(path.read_text()).get("git", {})
            got = str(rev.get("commit", "unknown"))
            lines.append(f"{name} seed {seed}: {got[:12]}{' (dirty)' if rev.get('dirty') else ''}")
            if commit is not None and (not got.startswith(commit) or rev.get("dirty") is not False):
                wrong.append(f"{path}: trained at {got}{' with uncommitted changes' if rev.get('dirty') else ''}")
    if wrong:
        raise SystemExit(f"runs not trained at the pre-registered commit {commit}:\n  " + "\n  ".join(wrong))
    return lines


def copy_all(copies: Sequence[Copy], replace: bool) -> int:
    """Copy every file; the same bytes already there are left; other bytes are an error unless ``replace``."""
    differ = [c for c in copies if c.dst.exists() and c.dst.read_bytes() != c.src.read_bytes()]
    if differ and not replace:
        raise SystemExit(
            "already collected with other contents (a rerun?); pass --replace to overwrite:\n  "
            + "\n  ".join(f"{c.dst} != {c.src}" for c in differ)
        )
    n = 0
    for c in copies:
        if c.dst.exists() and c.dst.read_bytes() == c.src.read_bytes():
            continue
        c.dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(c.src, c.dst)
        n += 1
    return n


def final(out: Path, name: str, seed: int, side: bool = False) -> dict[str, object]:
    path = out / name / f"seed{seed}" / (JOINT_SIDE if side else Path()) / "final.json"
    return dict(json.loads(path.read_text()))


def not_scored(counts: object) -> str:
    """``{"MISC": 12}`` as ``MISC 12``."""
    return ", ".join(f"{t} {n}" for t, n in counts.items()) if isinstance(counts, dict) else str(counts)


def scores_report(out: Path, done: dict[str, list[int]]) -> list[str]:
    """Each collected run's best epoch, best dev F1 and test F1 (F1 points)."""
    lines = []
    for name, seeds in done.items():
        for seed in seeds:
            sides = [("twitter2017", False), ("btc", True)] if name == "joint" else [(name, False)]
            for corpus, side in sides:
                f = final(out, name, seed, side)
                lines.append(
                    f"{name:<12} seed {seed} {corpus:<12} best epoch {f['best_epoch']}: dev {100 * float(str(f['dev_f1'])):.2f}, "
                    f"test {100 * float(str(f['test_f1'])):.2f}"
                    + (f" (predictions not scored: {not_scored(f['predictions_not_scored'])})" if f.get("predictions_not_scored") else "")
                )
    return lines


def misc_f1(test: object) -> float:
    per_type = test["per_type"] if isinstance(test, dict) else {}
    if "MISC" not in per_type:
        raise SystemExit("a Twitter-2017 final.json without a MISC per-type score")
    return float(per_type["MISC"]["f1"])


def misc_report(out: Path, done: dict[str, list[int]]) -> list[str]:
    """Twitter-2017's MISC per-type test F1, joint against single-corpus, on the seeds both have."""
    seeds = [s for s in done["joint"] if s in done["twitter2017"]]
    if not seeds:
        return ["Twitter-2017 MISC test F1: no seed with both a joint and a single-corpus run yet"]
    joint = [misc_f1(final(out, "joint", s)["test"]) for s in seeds]
    single = [misc_f1(final(out, "twitter2017", s)["test"]) for s in seeds]
    lines = [
        f"Twitter-2017 MISC test F1 seed {s}: joint {100 * j:.2f}, single-corpus {100 * b:.2f} ({100 * (j - b):+.2f})"
        for s, j, b in zip(seeds, joint, single, strict=True)
    ]
    gap = statistics.mean(joint) - statistics.mean(single)
    std = (
        f" (sample std of the per-seed gaps {100 * statistics.stdev(j - b for j, b in zip(joint, single, strict=True)):.2f})"
        if len(seeds) >= 2 else ""
    )  # fmt: skip
    lines.append(
        f"Twitter-2017 MISC test F1, mean over seeds {' '.join(map(str, seeds))}: joint {100 * statistics.mean(joint):.2f}, "
        f"single-corpus {100 * statistics.mean(single):.2f} ({100 * gap:+.2f}){std}"
    )
    return lines


def lever_seeds_command(out: Path, seeds: Sequence[int]) -> list[str]:
    """Rule 1 (decides) and rule 2 (reports) through scripts/lever_seeds.py, on the collected files."""
    return [
        "python", "scripts/lever_seeds.py", "--out", str(out / "rules.csv"),
        "--lever", "+ BTC (joint, rule 1)", "twitter2017", str(out / "joint"), str(out / "twitter2017"),
        "--lever", "+ Twitter-2017 (joint, rule 2)", "btc", str(out / "joint" / "seed{seed}" / JOINT_SIDE), str(out / "btc"),
        "--seeds", *map(str, seeds), "--rule", "0.2",
    ]  # fmt: skip


def cross_corpus_command(runs: Path, seeds: Sequence[int]) -> list[str]:
    return [
        "python", "scripts/cross_corpus.py", "--btc-runs", str(runs / SOURCES["btc"]),
        "--twitter2017-runs", str(runs / SOURCES["twitter2017"]), "--seeds", *map(str, seeds),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, required=True, help="the runs' train.output_dir (e.g. /work/btc-runs)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where the files go (default {OUT})")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--commit", help="the pre-registered commit (a prefix): a run trained at another one is an error")
    ap.add_argument("--replace", action="store_true", help="overwrite collected files whose contents differ")
    ap.add_argument("--compare", action="store_true", help="also run the lever_seeds.py command once every seed is collected")
    ap.add_argument("--allow-dirty", action="store_true", help="--compare: passed to lever_seeds.py (a source tree with uncommitted changes)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    copies, waiting, done = plan(args.runs, args.out, args.seeds)
    commits = check_commits(args.runs, done, args.commit)
    n = copy_all(copies, args.replace)
    log.info("%d files copied, %d already there, into %s", n, len(copies) - n, args.out)
    report = ["collected (training commit):", *commits]
    if waiting:
        report += ["not collected (not finished):", *waiting]
    report += ["", *scores_report(args.out, done), "", *misc_report(args.out, done), ""]
    complete = all(done[name] == list(args.seeds) for name in SOURCES)
    lever = lever_seeds_command(args.out, args.seeds)
    cross = cross_corpus_command(args.runs, args.seeds)
    report += [
        "rules 1 and 2 (mean best dev F1 over the seeds, +0.2; test gaps with the paired t-test and bootstraps):",
        "  " + shlex.join(lever) + ("" if complete else "   # not yet: some runs are not collected"),
        "cross-corpus scores (PER LOC ORG; the checkpoints stay in --runs):",
        "  " + shlex.join(cross) + ("" if complete else "   # not yet: some runs are not collected"),
    ]
    print("\n".join(report))
    if args.compare:
        if not complete:
            raise SystemExit("--compare: not every run of every config is collected yet")
        return subprocess.run([sys.executable, str(REPO / lever[1]), *lever[2:], *(["--allow-dirty"] if args.allow_dirty else [])], check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
