"""Tagging raw posts with a HamLearning checkpoint: the same extraction as the feature cache, and
r, level weights and objects reported next to the entities (fake extractor, tiny encoder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from hamner import Tagger
from hamner.cli import main
from hamner.data.conll import read_conll
from hamner.errors import ConfigError
from hamner.models.tagger import TextTagger
from synthetic import TINY_POSTS, tiny_hamlearning_checkpoint

ROOT = Path(__file__).resolve().parents[2]
FAKE = {"backbone": "fakes:tiny_backbone", "detector": "fakes:ColourDetector"}
POSTS = TINY_POSTS


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny, untrained HamLearning checkpoint (tests/synthetic.py)."""
    return tiny_hamlearning_checkpoint(tmp_path_factory.mktemp("mm-tag"))


def test_a_raw_post_gives_the_same_emissions_as_the_cached_dataset_path(setup: dict[str, Any]) -> None:
    posts = read_conll(setup["base"] / "data" / "twitter2017" / "test.txt")
    model = TextTagger.from_pretrained(setup["ckpt"])
    cached = model.run([p.words for p in posts], [setup["store"][p.imgid] for p in posts])
    tagger = Tagger.from_pretrained(setup["ckpt"])
    raw = tagger.tag_many([" ".join(p.words) for p in posts], [setup["image"], None], [POSTS[0][2], None])
    for c, r in zip(cached, raw, strict=True):
        assert r.emissions is not None and torch.equal(c.emissions, r.emissions)
        assert c.relevance == r.relevance and c.level_weights == r.level_weights
        assert c.tags == r.tags
    assert raw[0].relevance is not None and 0 < raw[0].relevance < 1
    assert raw[1].relevance == 0.0  # no image, no caption: the text path


def test_tagged_post_reports_objects_image_words_and_levels(setup: dict[str, Any]) -> None:
    post = Tagger.from_pretrained(setup["ckpt"]).tag("obama in paris", image=setup["image"], caption="a red square")
    data = post.to_dict()
    assert set(data) >= {"entities", "relevance", "level_weights", "visual"}
    assert [o["label"] for o in data["visual"]["objects"]] == ["stop sign", "clock"]
    assert data["visual"]["status"] == "ok"
    assert data["visual"]["image_words"]["words"][:3] == ["stop", "sign", "clock"]
    assert set(data["level_weights"]) == {"global", "objects", "semantic"}
    assert abs(sum(data["level_weights"].values()) - 1) < 1e-5
    json.dumps(data)  # plain data all the way down


def test_cli_tag_one_post_with_an_image_prints_entities_r_and_objects(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["tag", "--model", str(setup["ckpt"]), "--text", "obama in paris", "--image", str(setup["image"])]
    assert main([*args, "--pretty"]) == 0
    out = capsys.readouterr().out
    assert "relevance r = " in out and "object stop sign 0.90" in out and "object clock 0.90" in out
    assert "level weights: global" in out
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["visual"]["objects"][0]["label"] == "stop sign" and 0 < record["relevance"] < 1


def test_cli_tag_bad_image_is_an_error_or_skipped_by_choice(
    setup: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    args = ["tag", "--model", str(setup["ckpt"]), "--text", "obama in paris", "--image", str(bad)]
    assert main(args) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert main([*args, "--on-bad-image", "skip"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["visual"]["status"] == "unreadable" and record["visual"]["objects"] == []


def test_cli_tag_image_without_text_flag_is_refused(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tag", "--model", str(setup["ckpt"]), "--image", str(setup["image"])]) == 2
    assert "--image and --caption go with --text" in capsys.readouterr().err


def test_a_different_extractor_is_refused(setup: dict[str, Any]) -> None:
    tagger = Tagger(TextTagger.from_pretrained(setup["ckpt"]))
    tagger.model.config.vision = {**tagger.model.config.vision, "score_threshold": 0.95}
    with pytest.raises(ConfigError, match="differs from the one the model was trained with"):
        tagger.tag("obama in paris", image=setup["image"])
