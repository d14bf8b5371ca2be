from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from hamner.data.encoding import WordEncoder, collate
from hamner.data.shape import word_shape
from hamner.errors import ConfigError
from hamner.models.config import TaggerConfig
from hamner.models.tagger import TextTagger


def tiny_tagger(encoder_dir: Path, **kw: object) -> TextTagger:
    torch.manual_seed(0)
    return TextTagger.from_config(TaggerConfig(encoder=str(encoder_dir), **kw))  # type: ignore[arg-type]


def test_shapes() -> None:
    cases = {
        "paris": "lower",
        "Paris": "Title",
        "NBA": "UPPER",
        "I": "X",
        "iPhone": "miXed",
        "@obama": "@mention",
        "#NBA": "#hashtag",
        "http://t.co/x": "url",
        "2017": "digits",
        "5-7": "alnum",
        "U2": "alnum",
        "!": "punct",
        "#": "punct",
        "\u200b": "other",
        "\xa0": "other",
        "😀": "other",
    }
    assert {w: word_shape(w) for w in cases} == cases


def test_word_encoder_first_subtokens_and_empty_words(tiny_encoder: Path) -> None:
    model = tiny_tagger(tiny_encoder)
    enc = model.word_encoder
    post = enc.encode(["New", "yorkzz", "\u200b", "!"])
    tok = model.tokenizer
    assert post.input_ids[0] == tok.cls_token_id and post.input_ids[-1] == tok.sep_token_id
    assert post.first_sub[0] == 1
    # "yorkzz" is several pieces; the zero-width word becomes [UNK] and keeps its own position
    assert post.input_ids[post.first_sub[2]] == tok.unk_token_id
    assert post.first_sub == sorted(post.first_sub) and len(set(post.first_sub)) == 4


def test_words_past_the_limit_are_masked_and_predicted_o(tiny_encoder: Path) -> None:
    model = tiny_tagger(tiny_encoder, max_length=8)
    words = ["the", "new", "york", "city", "paris", "london", "obama", "trump", "nba", "apple"]
    post = model.word_encoder.encode(words)
    assert len(post.input_ids) == 8
    assert post.first_sub[:6] == [1, 2, 3, 4, 5, 6] and post.first_sub[6:] == [-1] * 4
    batch = collate([post], model.tokenizer.pad_token_id)
    assert batch["word_mask"].tolist() == [[True] * 6 + [False] * 4]
    truncated = model.run([words], long_posts="truncate")[0]
    assert len(truncated.tags) == 10 and truncated.tags[6:] == ["O"] * 4 and truncated.words_not_read == 4
    windowed = model.run([words])[0]  # the default: overlapping windows, every word read
    assert windowed.windows > 1 and windowed.words_not_read == 0 and windowed.emissions.shape[0] == 10


def test_batch_shapes_and_loss(tiny_encoder: Path) -> None:
    model = tiny_tagger(tiny_encoder)
    posts = [model.word_encoder.encode(["rt", "@obama", ":"], [0, 1, 0]), model.word_encoder.encode(["paris"], [3])]
    batch = collate(posts, model.tokenizer.pad_token_id)
    out = model(batch)
    assert out["emissions"].shape == (2, 3, len(model.config.labels))
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.emission.weight.grad is not None and model.shape_emb is not None
    assert model.shape_emb.weight.grad is not None


def test_no_shape_channel(tiny_encoder: Path) -> None:
    model = tiny_tagger(tiny_encoder, use_shape=False)
    assert model.shape_emb is None and model.emission.in_features == 32


def test_save_and_load_round_trip_gives_identical_outputs(tiny_encoder: Path, tmp_path: Path) -> None:
    model = tiny_tagger(tiny_encoder).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # make the head and CRF non-trivial
    model.save_pretrained(tmp_path / "ckpt", extra={"trained_on": "twitter2017"})
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} >= {
        "hamner_config.json",
        "model.safetensors",
        "tokenizer",
        "encoder",
    }
    loaded = TextTagger.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    words = [["RT", "@obama", ":", "New", "York", "\u200b", "love"], ["Apple", "in", "Paris"]]
    batch = collate([model.word_encoder.encode(w) for w in words], model.tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.equal(model(batch)["emissions"], loaded(batch)["emissions"])
    assert model.predict(words) == loaded.predict(words)


def test_from_pretrained_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a hamner checkpoint"):
        TextTagger.from_pretrained(tmp_path)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="tokenizer_style"):
        TaggerConfig(tokenizer_style="bert")
    with pytest.raises(ConfigError, match="unknown model config keys"):
        TaggerConfig.from_dict({"nope": 1})


def test_word_encoder_needs_unknown_token() -> None:
    class NoUnk:
        unk_token_id = None

    with pytest.raises(ValueError, match="unknown token"):
        WordEncoder(NoUnk(), 16)


def test_evaluation_counts_gold_entities_past_the_limit(tiny_encoder: Path) -> None:
    from hamner.data.conll import Post
    from hamner.evaluation.evaluate import evaluate

    model = tiny_tagger(tiny_encoder, max_length=8)
    words = ["the", "new", "york", "city", "paris", "london", "obama", "trump", "nba", "apple"]
    tags = ["O"] * 8 + ["B-ORG", "I-ORG"]  # the entity lies wholly past the 6 words that fit
    report = evaluate(model, [Post(words=words, tags=tags)], torch.device("cpu"))
    assert report.micro.n_gold == 1 and report.per_type["ORG"].recall == 0.0


def test_weights_that_do_not_fit_the_config_are_named(tiny_encoder: Path, tmp_path: Path) -> None:
    import json

    ckpt = tiny_tagger(tiny_encoder).save_pretrained(tmp_path / "ckpt")
    meta = json.loads((ckpt / "hamner_config.json").read_text())
    meta["tagger"]["use_shape"] = False  # the weights still hold the shape embedding
    (ckpt / "hamner_config.json").write_text(json.dumps(meta))
    with pytest.raises(
        ConfigError, match=r"model.safetensors: weights do not fit the config .*unexpected \['shape_emb"
    ):
        TextTagger.from_pretrained(ckpt)


def test_word_bytes_keep_case_prefix_and_suffix() -> None:
    from hamner.data.encoding import word_bytes

    assert word_bytes("Ab", 24) == [ord("A") + 1, ord("b") + 1]
    assert word_bytes("ab", 24) != word_bytes("Ab", 24)  # the case an uncased encoder drops
    assert word_bytes("é", 24) == [0xC3 + 1, 0xA9 + 1]  # UTF-8 bytes, never 0 (padding)
    assert word_bytes("", 24) == []
    long = word_bytes("abcdefghij", 6)  # first 3 and last 3 bytes
    assert bytes(b - 1 for b in long) == b"abchij"
    assert len(word_bytes("😀" * 10, 7)) == 7


def test_char_channel_widens_words_learns_and_sees_case(tiny_encoder: Path) -> None:
    model = tiny_tagger(tiny_encoder, use_chars=True, char_filters=8, max_word_chars=6)
    assert model.char_cnn is not None and model.emission.in_features == 32 + 32 + 8
    posts = [model.word_encoder.encode(["rt", "@obama", "Parisville"], [0, 1, 0]), model.word_encoder.encode(["paris"], [3])]
    assert posts[0].char_ids is not None and [len(c) for c in posts[0].char_ids] == [2, 6, 6]
    batch = collate(posts, model.tokenizer.pad_token_id)
    assert batch["char_ids"].shape == (2, 3, 6)
    assert batch["char_ids"][1, 1:].eq(0).all()  # padding words have no bytes
    out = model(batch)
    out["loss"].backward()
    assert model.char_cnn.emb.weight.grad is not None and model.char_cnn.emb.weight.grad.abs().sum() > 0
    assert model.char_cnn.emb.weight.grad[0].abs().sum() == 0  # padding never learns
    # "obama" and "Obama" are one input to an uncased encoder, with the same shape class here
    # ("@mention"), but not to the char channel
    model.eval()
    a, b = (model.word_encoder.encode(["rt", w]) for w in ("@obama", "@Obama"))
    assert a.input_ids == b.input_ids and a.shape_ids == b.shape_ids
    with torch.no_grad():
        ea = model.emissions(collate([a], model.tokenizer.pad_token_id))
        eb = model.emissions(collate([b], model.tokenizer.pad_token_id))
    assert not torch.allclose(ea[0, 1], eb[0, 1])


def test_char_channel_ignores_padding_and_round_trips(tiny_encoder: Path, tmp_path: Path) -> None:
    model = tiny_tagger(tiny_encoder, use_chars=True, char_filters=8).eval()
    short, long = ["Paris"], ["Paris", "is", "lovely", "Mississippiriverboat"]
    with torch.no_grad():
        alone = model.emissions(collate([model.word_encoder.encode(short)], model.tokenizer.pad_token_id))
        padded = model.emissions(
            collate([model.word_encoder.encode(short), model.word_encoder.encode(long)], model.tokenizer.pad_token_id)
        )
    assert torch.allclose(alone[0, 0], padded[0, 0], atol=1e-5)  # more bytes and words in the batch change nothing
    model.save_pretrained(tmp_path / "ckpt")
    loaded = TextTagger.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config.use_chars and loaded.word_encoder.max_word_chars == model.config.max_word_chars
    assert model.predict([long]) == loaded.predict([long])
    with pytest.raises(ConfigError, match="char_kernel"):
        TaggerConfig(use_chars=True, char_kernel=2)
    batch = collate([model.word_encoder.encode(short)], 0)
    del batch["char_ids"]
    with pytest.raises(ConfigError, match="no char_ids"):
        model.emissions(batch)


def test_entity_type_channel_widens_words_learns_and_round_trips(tiny_encoder: Path, tmp_path: Path, fake_spacy: Any) -> None:
    from hamner.data.entity_types import ENTITY_CLASSES

    model = tiny_tagger(tiny_encoder, use_entity_types=True, entity_type_dim=8)
    assert model.entity_emb is not None and model.emission.in_features == 32 + 32 + 8
    assert model.entity_emb.num_embeddings == len(ENTITY_CLASSES)
    posts = [model.encode_post(["Barack", "Obama", "in", "Paris"], [1, 2, 0, 3]), model.encode_post(["NBA"], [5])]
    assert [[ENTITY_CLASSES[i] for i in p.entity_ids or []] for p in posts] == [["B-PERSON", "I-PERSON", "O", "B-GPE"], ["B-ORG"]]
    batch = collate(posts, model.tokenizer.pad_token_id)
    assert batch["entity_ids"].tolist() == [[2, 3, 1, 10], [8, 0, 0, 0]]  # padding words get the padding id
    model(batch)["loss"].backward()  # one training step's gradients
    grad = model.entity_emb.weight.grad
    assert grad is not None and grad[[1, 2, 3, 8, 10]].abs().sum(1).gt(0).all()
    assert grad[0].abs().sum() == 0  # padding never learns
    # "apple" and "Apple" are one input to the uncased encoder; spaCy tells them apart
    model.eval()
    a, b = (model.encode_post(["rt", w]) for w in ("apple", "Apple"))
    assert a.input_ids == b.input_ids and a.entity_ids != b.entity_ids
    with torch.no_grad():
        ea = model.emissions(collate([a], model.tokenizer.pad_token_id))
        eb = model.emissions(collate([b], model.tokenizer.pad_token_id))
    assert not torch.allclose(ea[0, 1], eb[0, 1])
    # given classes are used as they are (no spaCy call); without the channel they are ignored
    calls = len(fake_spacy.calls)
    assert model.encode_post(["Obama"], entity_ids=[1]).entity_ids == [1] and len(fake_spacy.calls) == calls
    assert tiny_tagger(tiny_encoder).encode_post(["Obama"], entity_ids=[2]).entity_ids is None
    with pytest.raises(ValueError, match="2 entity types for a post of 1 words"):
        model.encode_post(["Obama"], entity_ids=[1, 1])
    # saved and reloaded: the same config and the same outputs
    words = [["Barack", "Obama", "visited", "Microsoft", "in", "Seattle"], ["Apple", "and", "Google"]]
    with torch.no_grad():
        want = [p.emissions for p in model.run(words)]
    loaded = TextTagger.from_pretrained(model.save_pretrained(tmp_path / "ckpt")).eval()
    assert loaded.config.use_entity_types and loaded.config.entity_type_dim == 8 and loaded.word_encoder.entity_types
    assert "entity-type" in (tmp_path / "ckpt" / "README.md").read_text()
    got = [p.emissions for p in loaded.run(words)]
    assert all(torch.equal(w, g) for w, g in zip(want, got, strict=True))
    with pytest.raises(ConfigError, match="entity_type_dim"):
        TaggerConfig(use_entity_types=True, entity_type_dim=0)
    del batch["entity_ids"]
    with pytest.raises(ConfigError, match="no entity_ids"):
        model.emissions(batch)


def test_entity_types_come_from_the_whole_post_in_one_spacy_call(tiny_encoder: Path, fake_spacy: Any) -> None:
    """Many posts: spaCy reads them together, each whole; a long post's windows get slices of its classes."""
    model = tiny_tagger(tiny_encoder, use_entity_types=True, max_length=8).eval()
    long = ["Barack", "Obama", "in", "Paris", "and", "London", "with", "Apple", "and", "Google", "NBA"]
    posts = [long, ["Trump"]]
    plans, encoded, _ = model.encode_inputs(posts, None, "window")
    assert len(plans[0]) > 1 and fake_spacy.calls == [posts]
    whole = fake_spacy([long])[0]
    for (s, e), enc in zip(plans[0], encoded, strict=False):
        assert enc.entity_ids == whole[s:e]


def test_new_words_go_to_the_rust_tokenizer_when_it_agrees_else_to_the_wrapper(tiny_encoder: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    we = WordEncoder(tok, 32)
    assert we._backend is not None
    for word in ("Obama", "new", "zzq", "@nba", "\u200b", "x1!"):
        assert we.word_ids(word) == (tok(word, add_special_tokens=False)["input_ids"] or [tok.unk_token_id])

    class Disagrees:
        """A backend that gives other ids than the tokenizer: never used."""

        padding = truncation = None

        def encode(self, text: str, add_special_tokens: bool = False) -> Any:
            return type("E", (), {"ids": [7]})()

    class Wrapped:
        is_fast = True
        backend_tokenizer = Disagrees()

        def __getattr__(self, name: str) -> Any:
            return getattr(tok, name)

        def __call__(self, *a: Any, **k: Any) -> Any:
            return tok(*a, **k)

    assert WordEncoder._fast_backend(Wrapped()) is None
    backend = type(tok.backend_tokenizer).from_str(tok.backend_tokenizer.to_str())
    backend.enable_padding(length=8)  # the bare backend would pad every word (a hub tokenizer.json may say so) ...

    class Padded(Wrapped):
        backend_tokenizer = backend

    copy = WordEncoder._fast_backend(Padded())
    assert copy is not None and copy is not backend and copy.padding is None  # ... so a copy without padding is used
    assert backend.padding is not None  # and the caller's tokenizer is left alone
    assert list(copy.encode("obama", add_special_tokens=False).ids) == tok("obama", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("marker", ["", "twitter2015"])
def test_input_length_is_the_encoded_length_without_encoding(tiny_encoder: Path, marker: str) -> None:
    """OnnxTagger orders posts by input_length before encoding them (side-by-side batches encode in
    the workers); it must be len(encode(...).input_ids), also for posts past the budget."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    we = WordEncoder(tok, 16, url_placeholder="url", marker=marker)
    rng = random.Random(5)
    pool = ["Obama", "new", "zzq", "@nba", "\u200b", "x1!", "http://t.co/abc", "Zürich", "🙂", "unbelievably", " "]
    posts = [[], ["Obama"]] + [[rng.choice(pool) for _ in range(rng.randint(1, 30))] for _ in range(200)]
    assert {we.input_length(p) for p in posts} != {16}  # short and long posts both occur
    for words in posts:
        assert we.input_length(words) == len(we.encode(words).input_ids), words


def test_the_word_cache_stays_bounded_and_keeps_answering_right(tiny_encoder: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    we = WordEncoder(tok, 32)
    we.CACHE_SIZE = 10  # type: ignore[misc]
    words = [f"w{i}x" for i in range(50)]
    for _ in range(2):
        for w in words:
            assert we.word_ids(w) == tok(w, add_special_tokens=False)["input_ids"]
            assert len(we._cache) <= 10
    assert words[-1] in we._cache  # the newest are kept
