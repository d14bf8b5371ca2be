"""Word-level predictions on disk: one JSON object per post, so that two systems can be compared
post by post (``hamner.evaluation.significance``) or their errors read.

A line holds ``source`` (the gold file and line of the post), ``words``, ``gold`` and ``pred``
(BIO tags, one per word, untruncated), plus ``r`` for a multimodal model. A path ending in ``.gz``
is gzip-compressed.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hamner.data.conll import Post
from hamner.errors import DataFormatError
from hamner.evaluation.metrics import entity_scores


@dataclass(frozen=True)
class PostPrediction:
    """One post's gold and predicted tags."""

    source: str
    words: list[str]
    gold: list[str]
    pred: list[str]
    relevance: float | None = None


def write_predictions(
    path: str | os.PathLike[str],
    posts: Sequence[Post],
    pred_tags: Sequence[Sequence[str]],
    relevance: Sequence[float | None] | None = None,
) -> Path:
    """Write one line per post; the predicted tags must cover every word of the post. Everything is
    checked before the file is written; a ``.gz`` file has no name or time in its header, so the
    same predictions always give the same bytes."""
    out = Path(path)
    if len(pred_tags) != len(posts):
        raise ValueError(f"{len(posts)} posts but {len(pred_tags)} predictions")
    lines = []
    for i, (post, tags) in enumerate(zip(posts, pred_tags, strict=True)):
        if len(tags) != len(post.words):
            raise ValueError(f"{post.source}: {len(post.words)} words but {len(tags)} predicted tags")
        rec: dict[str, Any] = {"source": post.source, "words": post.words, "gold": post.tags, "pred": list(tags)}
        r = relevance[i] if relevance is not None else None
        if r is not None:
            rec["r"] = round(float(r), 6)
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    payload = "".join(lines).encode("utf-8")
    if out.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(payload)
    tmp.replace(out)
    return out


def read_predictions(path: str | os.PathLike[str]) -> list[PostPrediction]:
    """Read a predictions file; a malformed line is an error that names it."""
    src = Path(path)
    out = []
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(str(src), lineno, f"not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise DataFormatError(str(src), lineno, "expected a JSON object")
            missing = [k for k in ("source", "words", "gold", "pred") if k not in rec]
            if missing:
                raise DataFormatError(str(src), lineno, f"missing fields {missing}")
            words, gold, pred = rec["words"], rec["gold"], rec["pred"]
            if not (len(words) == len(gold) == len(pred)):
                raise DataFormatError(
                    str(src), lineno, f"{len(words)} words, {len(gold)} gold tags and {len(pred)} predicted tags"
                )
            out.append(PostPrediction(str(rec["source"]), list(words), list(gold), list(pred), rec.get("r")))
    return out


#: the file a training run writes its dev-chosen checkpoint's test predictions to
RUN_PREDICTIONS = "test_predictions.jsonl.gz"


def read_run_predictions(run: str | os.PathLike[str]) -> list[PostPrediction]:
    """A training run's per-post test predictions, checked against the run: their micro F1 must equal
    the ``test_f1`` of the run's ``final.json``, so they are the predictions behind the reported number.
    A missing file or a mismatch is a :class:`ValueError` that names the run."""
    run_dir = Path(run)
    path, final = run_dir / RUN_PREDICTIONS, run_dir / "final.json"
    if not path.exists():
        raise ValueError(f"{run_dir}: no {RUN_PREDICTIONS}; remake it with 'hamner evaluate --predictions'")
    if not final.exists():
        raise ValueError(f"{run_dir}: no final.json to check {RUN_PREDICTIONS} against")
    posts = read_predictions(path)
    recorded = json.loads(final.read_text())["test_f1"]
    f1 = entity_scores([p.gold for p in posts], [p.pred for p in posts]).micro.f1
    if abs(f1 - recorded) > 1e-9:
        raise ValueError(f"{path}: micro F1 {f1:.6f}, but the run's final.json says {recorded:.6f}")
    return posts
