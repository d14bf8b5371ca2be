"""Per-run training curves: per-epoch training loss and dev F1 of one run, as a PNG.

A run directory written by :func:`hamner.training.trainer.run_training` holds ``metrics.jsonl``
(one JSON object per epoch) and, once the run is finished, ``final.json``. This module draws the
training loss (left axis) and the dev F1 (right axis) against the epoch, marks the best dev epoch
(the one whose checkpoint the test score comes from) and, when the run is finished, puts the test
F1 in the title.

Drawing uses a :class:`matplotlib.figure.Figure` with its own Agg canvas: pyplot is never imported
and no global matplotlib state (backend, open figures) is touched, so this is safe in servers,
threads and test processes.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hamner.errors import DataFormatError

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
FINAL_FILE = "final.json"
DEFAULT_OUTPUT = "training_curves.png"
FIGSIZE = (6.4, 4.0)
DPI = 120

# key -> (accepted JSON types, name used in messages); bool is a subclass of int and is refused for numbers.
_REQUIRED: dict[str, tuple[tuple[type, ...], str]] = {
    "epoch": ((int,), "an integer"),
    "train_loss": ((int, float), "a number"),
    "dev_f1": ((int, float), "a number"),
    "best": ((bool,), "a boolean"),
}


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` file: one JSON object per non-blank line, in file order.

    Each record must have ``epoch`` (an integer >= 1), ``train_loss`` and ``dev_f1`` (numbers) and
    ``best`` (a boolean); other keys are kept as they are.

    Raises:
        DataFormatError: the file is missing or unreadable, holds no records, or a line is not a
            JSON object with those keys and types (the error names ``file:line``).
    """
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(str(p), None, "no such metrics file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(str(p), None, f"cannot read metrics file: {e}") from e
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(str(p), lineno, f"not valid JSON: {e.msg} (column {e.colno})") from e
        if not isinstance(record, dict):
            raise DataFormatError(str(p), lineno, f"expected a JSON object, got {type(record).__name__}")
        for key, (types, expected) in _REQUIRED.items():
            if key not in record:
                raise DataFormatError(str(p), lineno, f"missing key {key!r}")
            value = record[key]
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                raise DataFormatError(
                    str(p), lineno, f"{key!r} must be {expected}, got {type(value).__name__} {value!r}"
                )
        if record["epoch"] < 1:
            raise DataFormatError(str(p), lineno, f"'epoch' must be >= 1 (epochs are 1-based), got {record['epoch']}")
        if not math.isfinite(record["dev_f1"]):
            raise DataFormatError(str(p), lineno, f"'dev_f1' must be a finite number, got {record['dev_f1']!r}")
        records.append(record)
    if not records:
        raise DataFormatError(str(p), None, "no metrics records (the file is empty)")
    return records


def best_epoch(records: list[dict[str, Any]]) -> int:
    """The 1-based epoch with the highest ``dev_f1``; on ties, the first such record.

    Raises:
        ValueError: ``records`` is empty.
    """
    if not records:
        raise ValueError("best_epoch needs at least one record")
    best = records[0]
    for record in records[1:]:
        if record["dev_f1"] > best["dev_f1"]:
            best = record
    return int(best["epoch"])


def _title(run_dir: Path) -> str:
    """``dataset/config/seedN`` from the run directory, plus the test F1 when the run is finished."""
    parts = [part for part in run_dir.resolve().parts if part != run_dir.resolve().anchor]
    title = "/".join(parts[-3:]) or str(run_dir)
    final_path = run_dir / FINAL_FILE
    if not final_path.is_file():
        return title
    try:
        final = json.loads(final_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(str(final_path), None, f"cannot read final results: {e}") from e
    if not isinstance(final, dict):
        raise DataFormatError(str(final_path), None, f"expected a JSON object, got {type(final).__name__}")
    test_f1 = final.get("test_f1")
    if isinstance(test_f1, int | float) and not isinstance(test_f1, bool):
        title += f" - test F1 {test_f1:.4f}"
        epoch = final.get("best_epoch")
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            title += f" (epoch {epoch})"
    return title


def plot_training_curves(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Draw the training loss and dev F1 of one run against the epoch; return the PNG's path.

    Reads ``<run_dir>/metrics.jsonl`` (see :func:`read_metrics`) and, if present,
    ``<run_dir>/final.json`` (its ``test_f1`` and ``best_epoch`` go into the title). Writes
    ``<run_dir>/training_curves.png`` unless ``out`` names another file. The image is
    ``FIGSIZE * DPI`` pixels (768 x 480).

    Raises:
        DataFormatError: the metrics file is missing, empty or malformed, or ``final.json`` is
            not a JSON object.
    """
    run = Path(run_dir)
    records = read_metrics(run / METRICS_FILE)
    target = Path(out) if out is not None else run / DEFAULT_OUTPUT
    title = _title(run)

    ordered = sorted(records, key=lambda r: int(r["epoch"]))
    epochs = [int(r["epoch"]) for r in ordered]
    losses = [float(r["train_loss"]) for r in ordered]
    f1s = [float(r["dev_f1"]) for r in ordered]
    best = best_epoch(records)
    best_f1 = max(float(r["dev_f1"]) for r in records)

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax_loss = fig.add_subplot(1, 1, 1)
    ax_f1 = ax_loss.twinx()
    (loss_line,) = ax_loss.plot(epochs, losses, color="tab:blue", marker="o", markersize=3, label="train loss")
    (f1_line,) = ax_f1.plot(epochs, f1s, color="tab:orange", marker="o", markersize=3, label="dev F1")
    (best_point,) = ax_f1.plot(
        [best],
        [best_f1],
        linestyle="none",
        marker="*",
        markersize=14,
        color="tab:red",
        label=f"best dev (epoch {best})",
    )
    ax_f1.annotate(
        f"{best_f1:.4f}",
        xy=(best, best_f1),
        xytext=(0, 10),
        textcoords="offset points",
        ha="center",
        va="bottom",
        color="tab:red",
        fontsize=9,
    )
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train loss", color="tab:blue")
    ax_f1.set_ylabel("dev F1", color="tab:orange")
    ax_loss.tick_params(axis="y", colors="tab:blue")
    ax_f1.tick_params(axis="y", colors="tab:orange")
    ax_f1.margins(y=0.15)  # room above the best point for its label
    if len(epochs) <= 20:
        ax_loss.set_xticks(epochs)
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend(handles=[loss_line, f1_line, best_point], loc="center right", fontsize=8)
    ax_loss.set_title(title, fontsize=9)
    fig.tight_layout()

    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=DPI, format="png")
    log.info("wrote training curves to %s", target)
    return target
