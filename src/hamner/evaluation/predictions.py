"""Word-level predictions on disk: one JSON object per post, so that two systems can be compared
post by post (``hamner.evaluation.significance``) or their errors read.

A line holds ``source`` (the gold file and line of the post), ``words``, ``gold`` and ``pred``
(BIO tags, one per word, untruncated), plus ``r`` for a multimodal model. A path ending in ``.gz``
is gzip-compressed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hamner.data.conll import Post
from hamner.errors import DataFormatError


@dataclass(frozen=True)
class PostPrediction:
    """One post's gold and predicted tags."""

    source: str
    words: list[str]
    gold: list[str]
    pred: list[str]
    relevance: float | None = None


def _open(path: Path, mode: str, gz: bool) -> IO[str]:
    if gz and mode == "w":  # no file name or time in the header: the same predictions give the same bytes
        handle = open(path, "wb")
        return _ClosingText(gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0), handle)
    if gz:
        return gzip.open(path, "rt", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


class _ClosingText(io.TextIOWrapper):
    """A text wrapper over a GzipFile that also closes the file object under it."""

    def __init__(self, raw: gzip.GzipFile, handle: IO[bytes]) -> None:
        super().__init__(raw, encoding="utf-8")
        self._handle = handle

    def close(self) -> None:
        super().close()
        self._handle.close()


def write_predictions(
    path: str | os.PathLike[str],
    posts: Sequence[Post],
    pred_tags: Sequence[Sequence[str]],
    relevance: Sequence[float | None] | None = None,
) -> Path:
    """Write one line per post; the predicted tags must cover every word of the post."""
    out = Path(path)
    if len(pred_tags) != len(posts):
        raise ValueError(f"{len(posts)} posts but {len(pred_tags)} predictions")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with _open(tmp, "w", gz=out.suffix == ".gz") as f:
        for i, (post, tags) in enumerate(zip(posts, pred_tags, strict=True)):
            if len(tags) != len(post.words):
                raise ValueError(f"{post.source}: {len(post.words)} words but {len(tags)} predicted tags")
            rec: dict[str, Any] = {"source": post.source, "words": post.words, "gold": post.tags, "pred": list(tags)}
            if relevance is not None and relevance[i] is not None:
                rec["r"] = round(float(relevance[i]), 6)  # type: ignore[arg-type]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return out


def read_predictions(path: str | os.PathLike[str]) -> list[PostPrediction]:
    """Read a predictions file; a malformed line is an error that names it."""
    src = Path(path)
    return list(_iter_predictions(src))


def _iter_predictions(src: Path) -> Iterator[PostPrediction]:
    with _open(src, "r", gz=src.suffix == ".gz") as f:
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
            yield PostPrediction(str(rec["source"]), list(words), list(gold), list(pred), rec.get("r"))
