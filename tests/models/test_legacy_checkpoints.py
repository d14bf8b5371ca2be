"""Checkpoints saved before label sets came from the data still load and give the same answers.

The fixtures in tests/fixtures/legacy were written by tests/fixtures/legacy/make_legacy_checkpoints.py
at the commit named in expected.json (the fixed types PER LOC ORG MISC): a tiny trained text-only
checkpoint and a tiny HamLearning one (fake backbone and detector), with their answers on five posts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from hamner.inference.tagger import Tagger
from hamner.models.tagger import TextTagger

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
EXPECTED: dict[str, Any] = json.loads((LEGACY / "expected.json").read_text())
POSTS: list[tuple[str, str | None, str | None]] = [tuple(p) for p in EXPECTED["posts"]]  # text, image, caption
OLD_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


@pytest.mark.parametrize("name", ["text-only", "hamlearning"])
def test_a_checkpoint_saved_before_data_label_sets_gives_the_same_answers(name: str, tmp_path: Path) -> None:
    ckpt = tmp_path / name
    shutil.copytree(LEGACY / name, ckpt)  # a copy: loading must not need to write anything
    with_images = name == "hamlearning"
    tagger = Tagger.from_pretrained(ckpt)
    assert tagger.model.config.labels == OLD_LABELS
    texts = [t for t, _, _ in POSTS]
    images = [str(LEGACY / i) if (i and with_images) else None for _, i, _ in POSTS]
    captions = [c if with_images else None for _, _, c in POSTS]
    got = tagger.tag_many(texts, images, captions)
    for post, want in zip(got, EXPECTED[name], strict=True):
        assert post.text == want["text"]
        assert list(post.tags) == want["tags"]
        assert [[e.text, e.type, e.start, e.end] for e in post.entities] == want["entities"]
        assert (
            post.relevance == pytest.approx(want["relevance"], abs=1e-5)
            if want["relevance"] is not None
            else post.relevance is None
        )
        assert post.emissions is not None
        torch.testing.assert_close(post.emissions.float(), torch.tensor(want["emissions"]), atol=1e-4, rtol=0)


def test_the_legacy_text_checkpoint_still_has_entities_in_its_answers() -> None:
    """A guard on the fixture itself: a comparison of all-O answers would prove little."""
    assert sum(len(p["entities"]) for p in EXPECTED["text-only"]) >= 4
    assert TextTagger.from_pretrained(LEGACY / "text-only").config.labels == OLD_LABELS
