"""Scoring a tagger on gold posts."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import torch

from hamner.data.conll import Post
from hamner.data.labels import keep_types
from hamner.evaluation.metrics import EntityReport, entity_scores
from hamner.models.tagger import TextTagger


def evaluate(
    model: TextTagger,
    posts: list[Post],
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "eval",
    mode: str = "conlleval",
    visuals: Sequence[Any] | None = None,
    types: Collection[str] | None = None,
) -> EntityReport:
    """Entity-level scores of ``model``'s predictions against the untruncated gold tags of ``posts``;
    ``visuals`` are the posts' visual inputs (ImageFeatures or None) for a multimodal model;
    ``types``: score only predictions of these types (the posts' corpus annotates no other;
    :func:`hamner.data.labels.keep_types`), None: every prediction."""
    model.to(device)
    pred = model.predict([p.words for p in posts], batch_size, progress, desc, visuals=visuals)
    if types is not None:
        pred = [keep_types(tags, types)[0] for tags in pred]
    return entity_scores([p.tags for p in posts], pred, mode=mode)
