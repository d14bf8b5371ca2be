#!/usr/bin/env python3
"""Draw the documentation's figures from the committed results, as PNG and SVG.

    python scripts/make_figures.py [--results results] [--out docs/figures] [--data-root DIR]

Reads only committed files: ``results/runs/<dataset>/<config>/seed<k>/`` (``final.json``,
``metrics.jsonl``, ``test_predictions.jsonl.gz``, ``test_relevance.csv``), ``results/relevance.csv``
and ``results/relevance_swap.csv``; the case studies also read the test split, the BLIP-2 captions
and the sample images from the data root (``--data-root``, else ``$HAMNER_DATA_ROOT``, else
``../shared/data``); without a data root that figure is skipped, and the script says so. Writes:

- ``f1_vs_published``: test F1 of every config (each seed a dot, the mean a bar, the sample standard
  deviation a line) beside the published systems (their papers' single numbers);
- ``ablations``: the Twitter-2017 ablations against the full model without the char channel;
- ``training_curves``: dev F1 and training loss per epoch of the main configs, every seed;
- ``relevance``: HamLearning's r with each post's own caption against the next post's
  (``scripts/relevance_analysis.py``'s caption swap), and the distribution of r over test posts;
- ``case_studies``: test posts that have a sample image, with the image, the caption, the gold and
  the predicted entities, r and the level weights (``hamlearning`` seed 1).

Matplotlib only, through ``Figure`` objects (pyplot is never imported). SVGs are written without a
date and with fixed element ids, so an unchanged input gives an unchanged file.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

REPO = Path(__file__).resolve().parents[1]
TYPES = ("PER", "LOC", "ORG", "MISC")
COLOURS = {"PER": "#4e79a7", "LOC": "#59a14f", "ORG": "#f28e2b", "MISC": "#b07aa1"}
DATASETS = {"twitter2015": "Twitter-2015", "twitter2017": "Twitter-2017"}
# Test F1 of the published systems as their papers report it (BERT-base and ResNet-152 unless
# stated), from ../shared/guides/hamlearning.md; one number per system and dataset, no seeds.
PUBLISHED: list[tuple[str, float, float]] = [
    ("BERT-CRF, text only (UMT paper)", 71.81, 83.44),
    ("UMT (ACL 2020)", 73.41, 85.31),
    ("MGCMT (IPM 2023)", 74.57, 86.09),
    ("HVPNeT (NAACL Findings 2022)", 75.32, 86.87),
    ("I2SRM (MMAsia 2023)", 77.12, 88.40),
    ("ITA (NAACL 2022; XLM-R-large, OCR, captions)", 78.03, 89.75),
    ("PGIM (EMNLP Findings 2023; XLM-R-large, ChatGPT)", 79.33, 91.43),
]
MAIN_CONFIGS = ("text-only", "hamlearning")
# The Twitter-2017 ablations, all on the base without the char channel (hamlearning-no-chars).
ABLATIONS: list[tuple[str, str]] = [
    ("hamlearning-no-chars", "full model (no char channel)"),
    ("hamlearning-L0", "no cross-modal blocks (L = 0)"),
    ("hamlearning-L1", "one iteration (L = 1)"),
    ("hamlearning-L3", "three iterations (L = 3)"),
    ("hamlearning-semantic-segment", "image words as 2nd segment only"),
    ("hamlearning-semantic-sequence", "image words as fused sequence only"),
    ("hamlearning-no-semantic", "no image words (no caption)"),
    ("hamlearning-no-relevance", "r fixed at 1"),
    ("hamlearning-no-visual-dropout", "no modality dropout"),
    ("hamlearning-no-global", "no global grid"),
    ("hamlearning-no-objects", "no objects"),
    ("hamlearning-no-spatial", "no spatial relations"),
    ("text-only-no-chars", "text only (no char channel)"),
]


def save(fig: Figure, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})
    return paths


def read_runs(results: Path) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    """(dataset, config) -> seed -> final.json of every committed run."""
    runs: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for path in sorted((results / "runs").glob("*/*/seed*/final.json")):
        final = json.loads(path.read_text())
        runs[(final["dataset"], final["config"])][int(final["seed"])] = final
    if not runs:
        raise SystemExit(
            f"make_figures: no runs under {results / 'runs'} (expected <dataset>/<config>/seed<k>/final.json)"
        )
    return runs


def seed_f1(runs: dict[tuple[str, str], dict[int, dict[str, Any]]], key: tuple[str, str]) -> list[float]:
    return [100 * runs[key][s]["test_f1"] for s in sorted(runs.get(key, {}))]


def f1_vs_published(runs: dict[tuple[str, str], dict[int, dict[str, Any]]], out: Path) -> list[Path]:
    datasets = sorted({d for d, _ in runs})
    configs = sorted({c for _, c in runs})
    fig = Figure(figsize=(13, 0.32 * (len(configs) + len(PUBLISHED)) + 1.6))
    axes = fig.subplots(1, len(datasets), sharey=True)
    labels = [f"{c} (ours)" for c in configs] + [name for name, _, _ in PUBLISHED]
    for ax, dataset in zip(axes if len(datasets) > 1 else [axes], datasets, strict=True):
        column = 1 if dataset == "twitter2015" else 2
        for i, config in enumerate(configs):
            f1 = seed_f1(runs, (dataset, config))
            if not f1:
                continue
            mean = statistics.fmean(f1)
            std = statistics.stdev(f1) if len(f1) > 1 else 0.0
            colour = "#e15759" if config.startswith("hamlearning") else "#4e79a7"
            ax.barh(i, mean, color=colour, alpha=0.35, height=0.7)
            ax.errorbar(mean, i, xerr=std, color=colour, capsize=3, lw=1.2)
            ax.scatter(f1, [i] * len(f1), color=colour, s=12, zorder=3)
            ax.text(mean + std + 0.15, i, f"{mean:.2f}", va="center", fontsize=7)
        for j, row in enumerate(PUBLISHED):
            y = len(configs) + j
            published = float(row[column])
            ax.barh(y, published, color="#9c9c9c", height=0.7)
            ax.text(published + 0.15, y, f"{published:.2f}", va="center", fontsize=7)
        ax.set_title(f"{DATASETS.get(dataset, dataset)}: test F1 (%)")
        values = [float(row[column]) for row in PUBLISHED] + [x for c in configs for x in seed_f1(runs, (dataset, c))]
        ax.set_xlim(min(values) - 2, max(values) + 1.5)
        ax.grid(axis="x", alpha=0.3)
    first = axes[0] if len(datasets) > 1 else axes
    first.set_yticks(range(len(labels)), labels, fontsize=8)
    first.invert_yaxis()
    fig.suptitle(
        "Ours: MiniLM encoder, BLIP-2 captions in place of most images; dots = seeds, bar = mean, line = std. "
        "Grey: published (BERT-base/XLM-R, real images), one number each.",
        fontsize=8,
    )
    return save(fig, out, "f1_vs_published")


def ablations(runs: dict[tuple[str, str], dict[int, dict[str, Any]]], out: Path) -> list[Path] | None:
    rows = [(c, label) for c, label in ABLATIONS if ("twitter2017", c) in runs]
    if len(rows) < 2:
        print("make_figures: fewer than 2 Twitter-2017 ablation configs in results/runs; ablations skipped")
        return None
    full = statistics.fmean(seed_f1(runs, ("twitter2017", "hamlearning-no-chars")))
    fig = Figure(figsize=(8, 0.38 * len(rows) + 1.2))
    ax = fig.subplots()
    for i, (config, _) in enumerate(rows):
        f1 = seed_f1(runs, ("twitter2017", config))
        mean, std = statistics.fmean(f1), (statistics.stdev(f1) if len(f1) > 1 else 0.0)
        dev = statistics.fmean(100 * runs[("twitter2017", config)][s]["dev_f1"] for s in runs[("twitter2017", config)])
        colour = "#4e79a7" if config.startswith("text-only") else "#e15759"
        ax.errorbar(mean, i, xerr=std, fmt="o", color=colour, capsize=3, ms=5)
        ax.scatter(f1, [i] * len(f1), color=colour, s=9, alpha=0.5)
        ax.scatter([dev], [i], marker="D", facecolor="none", edgecolor="#555555", s=22, zorder=3)
    ax.axvline(full, color="#e15759", ls="--", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{label}\n{c}" for c, label in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("F1 (%): filled = test mean ± std over seeds (small dots: seeds); open diamond = mean best dev F1")
    ax.set_title(
        "Twitter-2017 ablations (every one on the base without the char channel; dashed: full model's test mean)",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)
    return save(fig, out, "ablations")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_curves(results: Path, runs: dict[tuple[str, str], dict[int, dict[str, Any]]], out: Path) -> list[Path]:
    datasets = sorted({d for d, _ in runs})
    fig = Figure(figsize=(11, 3.3 * len(datasets)))
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    styles = {"text-only": "#4e79a7", "hamlearning": "#e15759"}
    for row, dataset in enumerate(datasets):
        for config in MAIN_CONFIGS:
            for seed in sorted(runs.get((dataset, config), {})):
                records = read_metrics(results / "runs" / dataset / config / f"seed{seed}" / "metrics.jsonl")
                epochs = [r["epoch"] for r in records]
                label = config if seed == min(runs[(dataset, config)]) else None
                axes[row][0].plot(
                    epochs,
                    [100 * r["dev_f1"] for r in records],
                    color=styles[config],
                    marker="o",
                    ms=3,
                    lw=1,
                    label=label,
                )
                best = runs[(dataset, config)][seed]["best_epoch"]
                axes[row][0].scatter(
                    [best], [100 * records[best - 1]["dev_f1"]], color=styles[config], s=50, marker="*", zorder=3
                )
                axes[row][1].plot(epochs, [r["train_loss"] for r in records], color=styles[config], lw=1, label=label)
        axes[row][0].set_title(
            f"{DATASETS.get(dataset, dataset)}: dev F1 (%) per epoch (star: the epoch kept)", fontsize=9
        )
        axes[row][1].set_title(f"{DATASETS.get(dataset, dataset)}: training loss per epoch", fontsize=9)
        for ax in axes[row]:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, out, "training_curves")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def relevance(results: Path, out: Path) -> list[Path]:
    swap = [r for r in read_csv(results / "relevance_swap.csv") if r["visual"] == "words"]
    configs = sorted({r["config"] for r in swap})
    markers = {"twitter2015": "s", "twitter2017": "o"}
    palette = ["#e15759", "#4e79a7", "#59a14f", "#f28e2b", "#b07aa1"]
    fig = Figure(figsize=(12, 3.8))
    a, b, c = fig.subplots(1, 3)
    for r in swap:
        colour = palette[configs.index(r["config"]) % len(palette)]
        a.scatter(
            float(r["r_own_mean"]),
            float(r["r_swapped_mean"]),
            marker=markers.get(r["dataset"], "o"),
            color=colour,
            s=28,
        )
    a.plot([0.4, 1], [0.4, 1], color="#999999", lw=0.8, ls="--")
    a.set_xlabel("mean r, each post with its own caption")
    a.set_ylabel("mean r, with the next post's caption")
    a.set_title("r drops when the caption is swapped\n(one point per run; squares Twitter-2015)", fontsize=9)
    for i, config in enumerate(configs):
        a.scatter([], [], color=palette[i % len(palette)], label=config)
    a.legend(fontsize=7)
    labels = []
    for i, r in enumerate(sorted(swap, key=lambda r: (r["dataset"], r["config"], int(r["seed"])))):
        b.barh(i, 100 * float(r["share_lower_when_swapped"]), color=palette[configs.index(r["config"]) % len(palette)])
        labels.append(f"{DATASETS.get(r['dataset'], r['dataset'])} {r['config']} s{r['seed']}")
    b.axvline(50, color="#999999", lw=0.8, ls="--")
    b.set_yticks(range(len(labels)), labels, fontsize=6)
    b.invert_yaxis()
    b.set_xlabel("% of test posts whose r is lower when swapped")
    b.set_title("how often the swap lowers r (50 %: chance)", fontsize=9)
    for dataset in sorted({r["dataset"] for r in swap}):
        path = results / "runs" / dataset / "hamlearning" / "seed1" / "test_relevance.csv"
        if path.exists():
            values = [float(x["relevance"]) for x in read_csv(path) if x["visual"] == "words"]
            c.hist(
                values,
                bins=25,
                range=(0, 1),
                alpha=0.55,
                label=f"{DATASETS.get(dataset, dataset)} ({len(values)} posts)",
            )
    c.set_xlabel("r over test posts with a caption (hamlearning, seed 1)")
    c.set_ylabel("posts")
    c.set_title("distribution of r", fontsize=9)
    c.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, out, "relevance")


def spans(tags: list[str]) -> dict[int, tuple[str, bool]]:
    """word index -> (type, starts an entity) under the conlleval reading (an orphan I- starts one)."""
    out: dict[int, tuple[str, bool]] = {}
    prev = "O"
    for i, tag in enumerate(tags):
        if tag != "O":
            kind = tag[2:]
            out[i] = (kind, tag.startswith("B-") or prev == "O" or prev[2:] != kind)
        prev = tag
    return out


def draw_tagged(
    ax: Any, fig: Figure, y: float, title: str, words: list[str], tags: list[str], width: float = 0.98
) -> float:
    """Write the words from (0, y) in axes coordinates, wrapping, each entity word on its type's colour."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # an Agg canvas (case_studies)
    box = ax.get_window_extent(renderer)
    ents = spans(tags)
    ax.text(0, y, title, fontsize=8, fontweight="bold", va="top", transform=ax.transAxes)
    x, y = 0.16, y
    line = 0.13
    for i, word in enumerate(words):
        kind = ents.get(i, (None, False))[0]
        style = {"boxstyle": "round,pad=0.15", "fc": COLOURS[kind], "ec": "none", "alpha": 0.8} if kind else None
        t = ax.text(
            x, y, word, fontsize=8, va="top", transform=ax.transAxes, bbox=style, color="white" if kind else "black"
        )
        w = t.get_window_extent(renderer).width / box.width
        if x + w > width and x > 0.16:
            x, y = 0.16, y - line
            t.set_position((x, y))
        x += w + 0.012
    return y - line - 0.02


def case_posts(results: Path, data_root: Path) -> list[dict[str, Any]]:
    """Test posts of hamlearning seed 1 (both datasets) whose image is among the sample images."""
    sys.path.insert(0, str(REPO / "src"))
    from hamner.data.conll import read_captions

    posts = []
    for dataset in ("twitter2017", "twitter2015"):
        run = results / "runs" / dataset / "hamlearning" / "seed1"
        images = data_root / dataset / "images"
        if not (run / "test_predictions.jsonl.gz").exists() or not images.is_dir():
            continue
        with gzip.open(run / "test_predictions.jsonl.gz", "rt", encoding="utf-8") as fh:
            preds = [json.loads(line) for line in fh if line.strip()]
        rel = read_csv(run / "test_relevance.csv")
        if len(rel) != len(preds):
            raise SystemExit(f"make_figures: {run}: {len(preds)} predictions but {len(rel)} relevance rows")
        captions = read_captions(data_root / dataset / "blip2_captions.txt")
        for pred, r in zip(preds, rel, strict=True):
            if r["visual"] != "pixels":
                continue
            image = images / f"{r['imgid']}.jpg"
            if not image.exists():
                continue
            posts.append(
                {
                    "dataset": dataset,
                    "imgid": r["imgid"],
                    "image": image,
                    "caption": captions.get(r["imgid"], ""),
                    **pred,
                    "r": float(r["relevance"]),
                    "weights": (float(r["weight_global"]), float(r["weight_objects"]), float(r["weight_semantic"])),
                }
            )
    return posts


def case_studies(results: Path, data_root: Path | None, out: Path, most: int = 4) -> list[Path] | None:
    if data_root is None or not data_root.is_dir():
        print("make_figures: no data root (--data-root or HAMNER_DATA_ROOT); case studies skipped")
        return None
    from PIL import Image

    posts = case_posts(results, data_root)[:most]
    if not posts:
        print(
            f"make_figures: no test post of results/runs/*/hamlearning/seed1 has a sample image under {data_root}; case studies skipped"
        )
        return None
    fig = Figure(figsize=(12, 2.9 * len(posts)))
    FigureCanvasAgg(fig)  # a renderer to measure the words with
    grid = fig.add_gridspec(
        len(posts), 3, width_ratios=[1.1, 3.6, 0.9], hspace=0.35, wspace=0.05, top=0.93, bottom=0.03
    )
    for row, post in enumerate(posts):
        pic, text, bars = fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1]), fig.add_subplot(grid[row, 2])
        with Image.open(post["image"]) as im:
            im.thumbnail((400, 400))
            pic.imshow(im.convert("RGB"))
        pic.set_axis_off()
        pic.set_title(f"{DATASETS[post['dataset']]} test, {post['imgid']}", fontsize=8)
        text.set_axis_off()
        fig.canvas.draw()  # the text extents need a laid-out figure
        y = draw_tagged(text, fig, 1.0, "gold", post["words"], post["gold"])
        y = draw_tagged(text, fig, y, "predicted", post["words"], post["pred"])
        text.text(0, y, "caption", fontsize=8, fontweight="bold", va="top", transform=text.transAxes)
        text.text(
            0.16,
            y,
            f"“{post['caption']}” (BLIP-2)",
            fontsize=8,
            va="top",
            style="italic",
            transform=text.transAxes,
            wrap=True,
        )
        bars.bar(
            ["r", "global", "obj.", "sem."],
            [post["r"], *post["weights"]],
            color=["#e15759", "#9c9c9c", "#9c9c9c", "#9c9c9c"],
        )
        bars.set_ylim(0, 1)
        bars.tick_params(labelsize=7)
        bars.set_title(f"r = {post['r']:.3f}; level weights", fontsize=8)
    handles = [Patch(color=COLOURS[t], label=t) for t in TYPES]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.975), ncol=4, fontsize=8, frameon=False)
    fig.suptitle(
        "hamlearning seed 1 on test posts that have a sample image (pixel levels saw only 13 training images)",
        fontsize=9,
        y=0.995,
    )

    return save(fig, out, "case_studies")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPO / "results")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures")
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args(argv)
    matplotlib.rcParams["svg.hashsalt"] = "hamner"  # fixed SVG ids: same input, same file

    data_root = args.data_root or Path(os.environ.get("HAMNER_DATA_ROOT") or REPO.parent / "shared" / "data")
    runs = read_runs(args.results)
    written = f1_vs_published(runs, args.out)
    written += ablations(runs, args.out) or []
    written += training_curves(args.results, runs, args.out)
    written += relevance(args.results, args.out)
    written += case_studies(args.results, data_root, args.out) or []
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
