"""The dataset marker (model.dataset_marker / model.marker): the marker's sub-tokens sit right after
[CLS], every word keeps its place and tag, the budget shrinks by the marker, a post can name another
marker, and the marker travels with the checkpoint into tagging."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hamner import Tagger
from hamner.data.encoding import collate
from hamner.errors import ConfigError
from hamner.models.card import describe
from hamner.models.config import TaggerConfig
from hamner.models.tagger import TextTagger
from hamner.training.config import load_config

REPO = Path(__file__).resolve().parents[2]
WORDS = ["Apple", "and", "Google", "in", "Paris"]


def model_with(encoder: Path, marker: str = "", max_length: int = 64) -> TextTagger:
    torch.manual_seed(0)
    return TextTagger.from_config(TaggerConfig(encoder=str(encoder), max_length=max_length, marker=marker)).eval()


def test_the_marker_sits_after_cls_and_shifts_every_word(tiny_encoder: Path) -> None:
    plain, marked = model_with(tiny_encoder), model_with(tiny_encoder, "twitter2015")
    mark = marked.word_encoder.marker_ids()
    assert mark == plain.tokenizer("twitter2015", add_special_tokens=False)["input_ids"] and len(mark) > 1
    a, b = plain.word_encoder.encode(WORDS), marked.word_encoder.encode(WORDS)
    cls = plain.tokenizer.cls_token_id
    assert a.input_ids[0] == b.input_ids[0] == cls
    assert b.input_ids == [cls, *mark, *a.input_ids[1:]]
    assert b.first_sub == [i + len(mark) for i in a.first_sub]
    assert [b.input_ids[i] for i in b.first_sub] == [a.input_ids[i] for i in a.first_sub]
    assert marked.word_encoder.budget == plain.word_encoder.budget - len(mark)
    # a post may name another marker (joint training: each post its own dataset's), or none
    other = marked.word_encoder.encode(WORDS, marker="twitter2017")
    assert other.input_ids[1 : 1 + len(mark)] == plain.tokenizer("twitter2017", add_special_tokens=False)["input_ids"]
    assert marked.word_encoder.encode(WORDS, marker="").input_ids == a.input_ids


def test_a_long_post_keeps_every_word_and_the_input_fits(tiny_encoder: Path) -> None:
    marked = model_with(tiny_encoder, "twitter2015", max_length=24)
    words = ["newyork"] * 40
    post = marked.word_encoder.encode(words)
    assert len(post.input_ids) <= 24 and len(post.first_sub) == 40
    kept = [i for i in post.first_sub if i >= 0]
    assert kept and min(kept) == 1 + len(marked.word_encoder.marker_ids())
    # tagging reads it in windows of the smaller budget: every word gets a tag
    pred = marked.run([words])[0]
    assert len(pred.tags) == 40 and pred.windows > 1 and pred.words_not_read == 0
    assert pred.emissions.shape[0] == 40


def test_the_marker_reaches_the_encoder_and_the_checkpoint(tiny_encoder: Path, tmp_path: Path) -> None:
    model = model_with(tiny_encoder, "twitter2015")
    with torch.no_grad():
        em = {m: model.emissions(collate([model.word_encoder.encode(WORDS, marker=m)], 0)) for m in ("twitter2015", "twitter2017", "")}
    assert not torch.allclose(em["twitter2015"], em["twitter2017"]) and not torch.allclose(em["twitter2015"], em[""])
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    assert "marker `twitter2015`" in (ckpt / "README.md").read_text()
    tagger = Tagger.from_pretrained(ckpt)
    assert tagger.model.config.marker == "twitter2015"
    got = tagger.tag(" ".join(WORDS))
    assert got.emissions is not None and torch.allclose(got.emissions, em["twitter2015"][0], atol=1e-5)
    # marked() switches the marker for a block (each joint dataset's dev split) and restores it
    with model.marked("twitter2017"):
        assert model.encode_post(WORDS).input_ids == model.word_encoder.encode(WORDS, marker="twitter2017").input_ids
        assert model.config.marker == "twitter2017"
    assert model.config.marker == "twitter2015" and model.word_encoder.marker == "twitter2015"


def test_dataset_marker_names_the_dataset_and_bad_markers_are_refused(tiny_encoder: Path) -> None:
    cfg = load_config(REPO / "configs" / "hamlearning-joint-marker.yaml")
    assert cfg.model.dataset_marker and cfg.model.marker == "twitter2017" and cfg.data.joint == ["twitter2015"]
    assert load_config(REPO / "configs" / "text-only.yaml", ["model.dataset_marker=true", "data.dataset=twitter2015"]).model.marker == "twitter2015"
    with pytest.raises(ConfigError, match="model.dataset_marker"):
        load_config(REPO / "configs" / "text-only.yaml", ["model.dataset_marker=true", "model.marker=news"])
    with pytest.raises(ConfigError, match="model.marker"):
        TaggerConfig(marker=" twitter2015")
    assert "marker" not in describe(TaggerConfig())
    with pytest.raises(ConfigError, match="no room for words"):
        model_with(tiny_encoder, " ".join(["twitter2015"] * 10), max_length=24)


def test_with_image_words_the_second_segment_follows_the_marked_words(tiny_encoder: Path) -> None:
    enc = model_with(tiny_encoder, "twitter2015").word_encoder
    post = enc.encode(WORDS, second=["paris", "city"], second_limit=8)
    mark = enc.marker_ids()
    assert post.input_ids[1 : 1 + len(mark)] == mark
    assert post.sem_positions is not None and post.token_type_ids is not None
    image = [post.input_ids[i] for i in post.sem_positions]
    assert image == enc.subtokens(["paris", "city"], 8)
    assert all(post.token_type_ids[i] == 0 for i in range(post.sem_positions[0] - 1))
