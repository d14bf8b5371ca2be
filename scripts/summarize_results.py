#!/usr/bin/env python3
"""Collect finished runs into results/ and regenerate results/summary.csv and the README table.

    python scripts/summarize_results.py [--runs runs] [--results results] [--readme README.md]

1. Every run directory under --runs with a final.json is copied (its small files: final.json,
   metrics.jsonl, config.yaml, run.json, the curves, test_relevance.csv and
   test_predictions.jsonl.gz; never the weights) to results/runs/<dataset>/<config>/seed<k>/.
2. results/summary.csv gets one row per (dataset, config) over all runs in results/runs, with the
   columns dataset, config, seeds, p_mean, r_mean, f1_mean, f1_std (sample standard deviation over
   seeds), f1_PER, f1_LOC, f1_ORG, f1_MISC, epoch_minutes, peak_mem_mb, commit, machine, then extras.
   All scores are test-set fractions (0 to 1) of the checkpoint chosen on dev.
3. results/comparison.csv: each config against the text-only baseline with the same word channels
   on the same dataset: ``text-only`` for configs with the char channel, ``text-only-no-chars`` (where
   it has runs) for those without, so a row measures what its visual side adds to the same text
   path (micro and per-type F1 changes, mean over the seeds each has), and results/relevance.csv: the distribution
   of HamLearning's r over each run's test posts, by visual input (pixels: the image was read;
   words: caption only).
4. The tables of docs/results.md between the markers ``<!-- results:start -->`` / ``<!-- results:end -->``
   and ``<!-- comparison:start -->`` / ``<!-- comparison:end -->``, and the README's headline table
   (``<!-- headline:start -->`` / ``<!-- headline:end -->``: our two main models beside the published
   systems of results/published.csv; docs/index.md holds the same block), are rewritten from those files.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

COLUMNS = [
    "dataset", "config", "seeds", "p_mean", "r_mean", "f1_mean", "f1_std",
    "f1_PER", "f1_LOC", "f1_ORG", "f1_MISC", "epoch_minutes", "peak_mem_mb", "commit", "machine",
    "f1_per_seed", "dev_f1_mean", "best_epochs", "encoder", "epochs", "seed_ids", "chars", "f1_strict_mean",
]  # fmt: skip
RUN_FILES = (
    "final.json", "metrics.jsonl", "config.yaml", "run.json", "training_curves.png", "test_relevance.csv",
    "test_predictions.jsonl.gz",
)  # fmt: skip
TYPES = ("PER", "LOC", "ORG", "MISC")
COMPARISON_COLUMNS = [
    "dataset", "config", "baseline", "seeds", "baseline_seeds", "f1_mean", "delta_f1", "delta_f1_same_seeds",
    *[f"delta_{t}" for t in TYPES], "std_pooled",
]  # fmt: skip
RELEVANCE_COLUMNS = ["dataset", "config", "seed", "visual", "posts", "mean", "std", "q10", "q50", "q90"]
PUBLISHED_TEXT_ONLY = {"twitter2015": 0.7181, "twitter2017": 0.8344}  # BERT-base-cased CRF (UMT paper)


def collect(runs: Path, results: Path) -> int:
    n = 0
    for final in sorted(runs.rglob("final.json")):
        run = final.parent
        data = json.loads(final.read_text())
        dest = results / "runs" / data["dataset"] / data["config"] / f"seed{data['seed']}"
        if (dest / "final.json").exists() and (dest / "final.json").read_bytes() != final.read_bytes():
            raise SystemExit(
                f"{run} and the committed {dest} are different runs of the same dataset/config/seed; "
                "remove one, or train with another config name or seed"
            )
        dest.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if (run / name).exists():
                shutil.copy2(run / name, dest / name)
        n += 1
    return n


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def summarize(results: Path) -> list[dict[str, object]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for final in sorted((results / "runs").rglob("final.json")):
        d = json.loads(final.read_text())
        d["_config"] = yaml.safe_load((final.parent / "config.yaml").read_text())
        groups[(d["dataset"], d["config"])].append(d)
    rows = []
    for (dataset, config), runs in sorted(groups.items()):
        runs.sort(key=lambda r: r["seed"])
        f1 = [r["test"]["micro"]["f1"] for r in runs]

        def type_f1(t: str, runs: list[dict] = runs) -> float:
            return mean([r["test"]["per_type"].get(t, {"f1": 0.0})["f1"] for r in runs])

        commits = sorted(
            {r["run"]["git"]["commit"][:12] + ("+dirty" if r["run"]["git"].get("dirty") else "") for r in runs}
        )
        machines = sorted({r["run"]["machine"] for r in runs})
        rows.append(
            {
                "dataset": dataset,
                "config": config,
                "seeds": len(runs),
                "p_mean": round(mean([r["test"]["micro"]["precision"] for r in runs]), 4),
                "r_mean": round(mean([r["test"]["micro"]["recall"] for r in runs]), 4),
                "f1_mean": round(mean(f1), 4),
                "f1_std": round(statistics.stdev(f1), 4) if len(f1) > 1 else "",
                "f1_PER": round(type_f1("PER"), 4),
                "f1_LOC": round(type_f1("LOC"), 4),
                "f1_ORG": round(type_f1("ORG"), 4),
                "f1_MISC": round(type_f1("MISC"), 4),
                "epoch_minutes": round(mean([r["epoch_minutes"] for r in runs]), 2),
                "peak_mem_mb": round(max(r["peak_mem_mb"] for r in runs)),
                "commit": ";".join(commits),
                "machine": ";".join(machines),
                "f1_per_seed": " ".join(f"{x:.4f}" for x in f1),
                "dev_f1_mean": round(mean([r["dev_f1"] for r in runs]), 4),
                "best_epochs": " ".join(str(r["best_epoch"]) for r in runs),
                "encoder": runs[0]["_config"]["model"]["encoder"],
                "epochs": runs[0]["_config"]["train"]["epochs"],
                "seed_ids": " ".join(str(r["seed"]) for r in runs),
                "chars": bool(runs[0]["_config"]["model"].get("use_chars", False)),
                # the same predictions scored as strict IOB2 (an orphan I- tag is no entity), for
                # comparisons with systems scored that way; empty unless every run kept its predictions
                "f1_strict_mean": _strict_mean(results, dataset, config, runs),
                # unrounded, for the deltas of compare() (not written: keys starting with _)
                "_f1": {str(r["seed"]): r["test"]["micro"]["f1"] for r in runs},
                "_f1_mean": mean(f1),
                "_type_f1": {t: type_f1(t) for t in TYPES},
            }
        )
    return rows


def _strict_mean(results: Path, dataset: str, config: str, runs: list[dict]) -> object:
    from hamner.evaluation.metrics import entity_scores
    from hamner.evaluation.predictions import read_predictions

    f1 = []
    for r in runs:
        path = results / "runs" / dataset / config / f"seed{r['seed']}" / "test_predictions.jsonl.gz"
        if not path.exists():
            return ""
        posts = read_predictions(path)
        f1.append(entity_scores([p.gold for p in posts], [p.pred for p in posts], mode="strict").micro.f1)
    return round(mean(f1), 4)


BASELINES = {True: "text-only", False: "text-only-no-chars"}  # by char channel; fallback "text-only"


def compare(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Each config's F1 minus its text-only baseline's on the same dataset (micro and per type), in
    points: the baseline with the same char channel (``BASELINES``), else ``text-only``."""
    by_key = {(r["dataset"], r["config"]): r for r in rows}
    out = []
    for r in rows:
        if r["config"] in BASELINES.values():
            continue
        b = by_key.get((r["dataset"], BASELINES[bool(r.get("chars"))]))
        b = b or by_key.get((r["dataset"], "text-only"))
        if b is None:
            continue
        stds = [float(x) for x in (r["f1_std"], b["f1_std"]) if x != ""]
        # every delta from unrounded values (rounding the means first moved +0.716 to +0.71)
        mine: dict[str, float] = r["_f1"]  # type: ignore[assignment]
        theirs: dict[str, float] = b["_f1"]  # type: ignore[assignment]
        rt: dict[str, float] = r["_type_f1"]  # type: ignore[assignment]
        bt: dict[str, float] = b["_type_f1"]  # type: ignore[assignment]
        common = sorted(set(mine) & set(theirs))
        out.append(
            {
                "dataset": r["dataset"],
                "config": r["config"],
                "baseline": b["config"],
                "seeds": r["seeds"],
                "baseline_seeds": b["seeds"],
                "f1_mean": r["f1_mean"],
                "delta_f1": round(100 * (float(r["_f1_mean"]) - float(b["_f1_mean"])), 2),  # type: ignore[arg-type]
                # paired by seed: the same seeds' runs of both configs (seed-to-seed spread cancels)
                "delta_f1_same_seeds": round(100 * sum(mine[k] - theirs[k] for k in common) / len(common), 2) if common else "",
                **{f"delta_{t}": round(100 * (rt[t] - bt[t]), 2) for t in TYPES},
                "std_pooled": round(100 * (sum(x * x for x in stds) / len(stds)) ** 0.5, 2) if stds else "",
            }
        )
    return out


def relevance_rows(results: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for final in sorted((results / "runs").rglob("final.json")):
        d = json.loads(final.read_text())
        for kind, stats in sorted(d.get("relevance", {}).items()):
            out.append(
                {"dataset": d["dataset"], "config": d["config"], "seed": d["seed"], "visual": kind, "posts": stats["posts"],
                 **{k: round(stats[k], 4) for k in ("mean", "std", "q10", "q50", "q90")}}
            )  # fmt: skip
    return out


def comparison_markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| dataset | config | against | seeds | Δ F1 | Δ F1, same seeds | Δ PER | Δ LOC | Δ ORG | Δ MISC | pooled std |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['config']} | {r['baseline']} | {r['seeds']} (vs {r['baseline_seeds']}) | **{float(r['delta_f1']):+.2f}** | "  # type: ignore[arg-type]
            + (f"{float(r['delta_f1_same_seeds']):+.2f} | " if r["delta_f1_same_seeds"] != "" else "– | ")  # type: ignore[arg-type]
            + " | ".join(f"{float(r[f'delta_{t}']):+.2f}" for t in TYPES)  # type: ignore[arg-type]
            + f" | {r['std_pooled'] if r['std_pooled'] != '' else '–'} |"
        )
    return "\n".join(lines)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")  # _private keys are not written
        w.writeheader()
        w.writerows(rows)


def _replace_block(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        return text
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| dataset | config | encoder | seeds | P | R | F1 (mean ± std) | PER | LOC | ORG | MISC | published BERT-CRF F1 | min/epoch | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        std = f" ± {100 * float(r['f1_std']):.2f}" if r["f1_std"] != "" else ""
        pub = PUBLISHED_TEXT_ONLY.get(str(r["dataset"])) if r["config"] == "text-only" else None
        lines.append(
            f"| {r['dataset']} | {r['config']} | {r['encoder']} | {r['seeds']} | {100 * float(r['p_mean']):.2f} | "  # type: ignore[arg-type]
            f"{100 * float(r['r_mean']):.2f} | **{100 * float(r['f1_mean']):.2f}**{std} | "  # type: ignore[arg-type]
            f"{100 * float(r['f1_PER']):.2f} | {100 * float(r['f1_LOC']):.2f} | {100 * float(r['f1_ORG']):.2f} | "  # type: ignore[arg-type]
            f"{100 * float(r['f1_MISC']):.2f} | {f'{100 * pub:.2f}' if pub else '–'} | {r['epoch_minutes']} | {r['peak_mem_mb']} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines)


def headline_markdown(rows: list[dict[str, object]], published: Path) -> str:
    """Our text-only and hamlearning means (± std over seeds) beside the published systems."""
    ours = {(str(r["dataset"]), str(r["config"])): r for r in rows}
    lines = ["| system | text encoder | images | Twitter-2015 F1 | Twitter-2017 F1 |", "|---|---|---|---|---|"]
    for config, images in (("text-only", "none"), ("hamlearning", "BLIP-2 captions")):
        cells = []
        for ds in ("twitter2015", "twitter2017"):
            r = ours.get((ds, config))
            std = f" ± {100 * float(r['f1_std']):.2f}" if r is not None and r["f1_std"] != "" else ""  # type: ignore[arg-type]
            cells.append(f"**{100 * float(r['f1_mean']):.2f}**{std} ({r['seeds']} seeds)" if r is not None else "–")  # type: ignore[arg-type]
        lines.append(f"| hamner `{config}` (ours) | MiniLM-L6, uncased, 22M | {images} | {cells[0]} | {cells[1]} |")
    with published.open() as fh:
        for p in csv.DictReader(fh):
            lines.append(f"| {p['system']} ({p['venue']}) | {p['encoder']} | {p['images']} | {p['twitter2015_f1']} | {p['twitter2017_f1']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    ap.add_argument("--docs-results", type=Path, default=Path("docs/results.md"))
    ap.add_argument("--docs-index", type=Path, default=Path("docs/index.md"))
    args = ap.parse_args()
    n = collect(args.runs, args.results) if args.runs.exists() else 0
    rows = summarize(args.results)
    _write_csv(args.results / "summary.csv", COLUMNS, rows)
    comparison = compare(rows)
    _write_csv(args.results / "comparison.csv", COMPARISON_COLUMNS, comparison)
    _write_csv(args.results / "relevance.csv", RELEVANCE_COLUMNS, relevance_rows(args.results))
    table = markdown(rows)
    for page in (args.docs_results, args.readme):  # the README kept the tables before the docs site
        if page.exists():
            text = _replace_block(page.read_text(), "results", table)
            page.write_text(_replace_block(text, "comparison", comparison_markdown(comparison)))
    published = args.results / "published.csv"
    if published.exists():
        headline = headline_markdown(rows, published)
        for page in (args.readme, args.docs_index):
            if page.exists():
                page.write_text(_replace_block(page.read_text(), "headline", headline))
    print(f"collected {n} runs; {len(rows)} rows in {args.results / 'summary.csv'}")
    print(table)


if __name__ == "__main__":
    main()
