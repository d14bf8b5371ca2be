"""What a run leaves in its directory: the dev-chosen checkpoint (``best/``), the resumable state,
and at the end the one test evaluation of that checkpoint (``final.json``, test predictions, the
relevance summary and the model card with its test scores)."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hamner.data.conll import Post
from hamner.data.corpus import warn_unseen
from hamner.data.labels import keep_types
from hamner.evaluation.metrics import entity_scores
from hamner.evaluation.predictions import write_predictions
from hamner.models.card import CARD_FILE, model_card
from hamner.models.tagger import CONFIG_FILE, Prediction, TextTagger
from hamner.precision import autocast
from hamner.training.config import ExperimentConfig
from hamner.training.curves import plot_training_curves
from hamner.training.inputs import load_split_of, open_features, split_visuals

log = logging.getLogger(__name__)

STATE_FILE = "last/state.pt"


PREDICTIONS_FILE = "test_predictions.jsonl.gz"  # every test post's gold and predicted tags (dev-chosen checkpoint)


JOINT_DIR = "joint"  # <run>/joint/<dataset>/: the checkpoint, final.json and predictions of a joint dataset


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(model: TextTagger, out_dir: Path, extra: dict[str, Any]) -> None:
    """``model`` as ``out_dir/best`` (written beside it first, then moved in place)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, extra=extra)
    shutil.rmtree(out_dir / "best", ignore_errors=True)
    os.replace(tmp, out_dir / "best")


def finish(
    cfg: ExperimentConfig,
    run_dir: Path,
    device: torch.device,
    best_epoch: int,
    best_f1: float,
    precision: str = "fp32",
    dataset: str | None = None,
) -> dict[str, Any]:
    """Evaluate the test split once, with the checkpoint chosen on dev (in the training precision); write final.json.

    ``dataset``: one of data.joint, whose checkpoint, final.json and predictions are in
    ``run_dir/joint/<dataset>`` (default: data.dataset, in ``run_dir``)."""
    joint = dataset is not None and dataset != cfg.data.dataset
    dataset = dataset or cfg.data.dataset
    out_dir = run_dir / JOINT_DIR / dataset if joint else run_dir
    best = TextTagger.from_pretrained(out_dir / "best").to(device)
    test_posts = load_split_of(cfg, dataset, "test")[: cfg.data.max_eval_posts]
    warn_unseen([label[2:] for label in best.config.labels if label.startswith("B-")], test_posts, f"{dataset} test")
    visuals = split_visuals(cfg, dataset, "test", test_posts, open_features(cfg, dataset))
    with autocast(device, precision):
        preds = best.run(
            [p.words for p in test_posts], visuals, cfg.train.eval_batch(device), cfg.train.progress, "test"
        )
    run_meta = json.loads((run_dir / "run.json").read_text())
    pred_tags = [p.tags for p in preds]
    own = run_meta.get("joint", {}).get("scored_types", {}).get(dataset)
    not_scored: Counter[str] = Counter()
    if own is not None:  # a joint run's corpus that annotates fewer types than the model predicts
        for i, tags in enumerate(pred_tags):
            pred_tags[i], dropped = keep_types(tags, own)
            not_scored.update(dropped)
    report = entity_scores([p.tags for p in test_posts], pred_tags)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epoch_seconds = [r["epoch_seconds"] for r in records]
    final = {
        "dataset": dataset,
        **({"protocol": "joint", "trained_on": run_meta["joint"]["datasets"]} if cfg.data.joint else {}),
        **({"scored_types": own, "predictions_not_scored": dict(sorted(not_scored.items()))} if own is not None else {}),
        "config": cfg.name,
        "seed": cfg.train.seed,
        "best_epoch": best_epoch + 1,
        "dev_f1": best_f1,
        "test": report.to_dict(),
        "test_f1": report.micro.f1,
        "epoch_minutes": (sum(epoch_seconds) / len(epoch_seconds) / 60) if epoch_seconds else math.nan,
        "peak_mem_mb": max(r["peak_mem_mb"] for r in records) if records else math.nan,
        "run": run_meta,
    }
    write_predictions(out_dir / PREDICTIONS_FILE, test_posts, pred_tags, [p.relevance for p in preds])
    if visuals is not None:
        final["relevance"] = relevance_summary(preds, visuals)
        write_relevance(out_dir / "test_relevance.csv", test_posts, preds, visuals)
    (out_dir / "final.json").write_text(json.dumps(final, indent=2) + "\n")
    # the card written with the checkpoint had no test scores (the test split is scored only now)
    best_meta = json.loads((out_dir / "best" / CONFIG_FILE).read_text())
    (out_dir / "best" / CARD_FILE).write_text(model_card(best.config, best_meta, final))
    log.info("%s test (checkpoint of epoch %d): F1 %.4f\n%s", dataset, best_epoch + 1, report.micro.f1, report.table())
    if joint:
        return final
    (run_dir / STATE_FILE).unlink(missing_ok=True)  # optimizer state is large; the run is complete
    try:
        plot_training_curves(run_dir)
    except Exception as exc:  # a plot must never lose a finished run
        log.warning("could not plot the training curves of %s: %s", run_dir, exc)
    return final


def _visual_kind(feats: Any) -> str:
    """pixels (the image was read), words (caption/OCR only) or none."""
    if feats is not None and feats.has_image:
        return "pixels"
    return "words" if feats is not None and len(feats.semantic) else "none"


def relevance_summary(preds: list[Prediction], visuals: list[Any]) -> dict[str, Any]:
    """The distribution of r over the test posts, by what visual input they had."""
    out: dict[str, Any] = {}
    groups: dict[str, list[float]] = {}
    for pred, feats in zip(preds, visuals, strict=True):
        if pred.relevance is not None:
            groups.setdefault(_visual_kind(feats), []).append(pred.relevance)
    for kind, values in sorted(groups.items()):
        arr = np.asarray(values)
        out[kind] = {
            "posts": len(values),
            "mean": float(arr.mean()),
            "std": float(arr.std()),
            **{f"q{int(q * 100):02d}": float(np.quantile(arr, q)) for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)},
        }
    return out


def write_relevance(path: Path, posts: list[Post], preds: list[Prediction], visuals: list[Any]) -> None:
    """One row per test post: IMGID, visual input kind, r and the level weights."""
    import csv

    levels = sorted({k for p in preds for k in (p.level_weights or {})})
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["imgid", "visual", "relevance", *[f"weight_{lvl}" for lvl in levels]])
        for post, pred, feats in zip(posts, preds, visuals, strict=True):
            lw = pred.level_weights or {}
            r = "" if pred.relevance is None else f"{pred.relevance:.4f}"
            w.writerow([post.imgid if post.imgid is not None else post.id, _visual_kind(feats), r, *[f"{lw[k]:.4f}" if k in lw else "" for k in levels]])
