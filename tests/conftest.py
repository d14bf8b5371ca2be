"""Shared fixtures: the data root, a tiny random encoder directory and a tiny dataset."""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]

TINY_WORDS = (
    "the a of in at to and is rt new york city paris london obama trump nba apple google festival "
    "game team fans love today great world president police music show"
).split()


@pytest.fixture(autouse=True)
def _fixed_tagging_threads() -> Any:
    """Each test tags with torch's thread count as the test starts: the thread governor
    (hamner.threads) would otherwise follow the load of the machine running the tests, or keep a
    count an earlier test pinned (``--threads 1``), and two paths compared in a test could differ in
    their last bits. The governor's own tests use governors of their own."""
    import torch

    from hamner.threads import governor

    governor().pin(torch.get_num_threads())
    yield


def shared_data_root() -> Path | None:
    root = Path(os.environ.get("HAMNER_DATA_ROOT", REPO.parent / "shared" / "data"))
    return root if (root / "twitter2017" / "train.txt").exists() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("the Twitter data is not at ../shared/data and HAMNER_DATA_ROOT is not set")
    return root


def make_tiny_encoder(
    directory: Path, hidden: int = 32, layers: int = 2, max_positions: int = 64, words: tuple[str, ...] = ()
) -> Path:
    """A random BERT with a small WordPiece vocabulary (plus ``words``), saved as a Hugging Face directory."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    pieces = list(string.ascii_lowercase) + list(string.digits) + list(string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS, *words, *pieces, *[f"##{p}" for p in pieces]]
    # a vocab.txt and a tokenizer config, read back through AutoTokenizer: the way every transformers
    # version since 4 loads a hub BERT (constructor arguments changed between 4 and 5)
    (directory / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    (directory / "tokenizer_config.json").write_text('{"do_lower_case": true, "tokenizer_class": "BertTokenizer"}')
    AutoTokenizer.from_pretrained(directory).save_pretrained(directory)
    cfg = BertConfig(
        vocab_size=len(dict.fromkeys(vocab)),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_positions,
    )
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(directory)
    return directory


def tiny_text_checkpoint(base: Path, max_length: int = 64) -> Path:
    """An untrained text-only checkpoint over a tiny random encoder (64 positions: 62 sub-tokens of words)."""
    import torch

    from hamner.models.config import TaggerConfig
    from hamner.models.tagger import TextTagger

    torch.manual_seed(0)
    model = TextTagger.from_config(TaggerConfig(encoder=str(make_tiny_encoder(base / "encoder")), max_length=max_length))
    return model.save_pretrained(base / "ckpt")


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


TINY_POSTS = [
    ("IMGID:1", [("RT", "O"), ("@obama", "B-PER"), (":", "O"), ("new", "B-LOC"), ("york", "I-LOC"), ("love", "O")]),
    ("IMGID:2", [("Apple", "B-ORG"), ("and", "O"), ("Google", "B-ORG"), ("in", "O"), ("Paris", "B-LOC")]),
    ("IMGID:3", [("the", "O"), ("NBA", "B-ORG"), ("game", "O"), ("today", "O"), ("!", "O")]),
    ("IMGID:4", [("Trump", "B-PER"), ("is", "O"), ("president", "O"), ("\u200b", "O"), ("London", "I-LOC")]),
    ("IMGID:5", [("music", "O"), ("festival", "O"), ("Paris", "B-MISC"), ("Festival", "I-MISC")]),
    ("IMGID:6", [("police", "O"), ("in", "O"), ("London", "B-LOC"), ("city", "O")]),
]


def write_conll(path: Path, posts: list[tuple[str, list[tuple[str, str]]]], final_blank: bool = True) -> Path:
    blocks = ["\n".join([imgid] + [f"{w}\t{t}" for w, t in rows]) for imgid, rows in posts]
    text = "\n\n".join(blocks) + ("\n\n" if final_blank else "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def tiny_data_root(tmp_path: Path) -> Path:
    """A data root with a small twitter2017-shaped dataset (train/valid/test + captions)."""
    root = tmp_path / "data"
    for split in ("train", "valid", "test"):
        copies = 4 if split == "train" else 1
        posts = [(f"IMGID:{split}{k}_{i}", rows) for k in range(copies) for i, (_, rows) in enumerate(TINY_POSTS)]
        write_conll(root / "twitter2017" / f"{split}.txt", posts)
    caps = "\n".join(f"{i}.jpg :a picture number {i}" for i in range(1, 7)) + "\n"
    (root / "twitter2017" / "blip2_captions.txt").write_text(caps)
    return root


# A sentence of the tiny training set that the overfitted model below tags as the gold says.
KNOWN_POST = "police in London city"
KNOWN_ENTITIES = [("London", "LOC", 10, 16)]


@pytest.fixture(scope="session")
def trained_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny tagger overfitted on TINY_POSTS through the real trainer, so that its answers hold entities."""
    from hamner.inference.tagger import Tagger
    from hamner.training.config import load_config
    from hamner.training.trainer import run_training

    base = tmp_path_factory.mktemp("trained-tiny")
    encoder = make_tiny_encoder(base / "encoder")
    root = base / "data"
    for split in ("train", "valid", "test"):
        copies = 4 if split == "train" else 1
        posts = [(f"IMGID:{split}{k}_{i}", rows) for k in range(copies) for i, (_, rows) in enumerate(TINY_POSTS)]
        write_conll(root / "twitter2017" / f"{split}.txt", posts)
    overrides = [
        f"model.encoder={encoder}", f"data.root={root}", f"train.output_dir={base / 'runs'}", "train.epochs=15",
        "train.batch_size=4", "train.lr_encoder=3e-3", "train.lr_head=3e-2", "train.num_threads=1",
        "train.progress=false", "train.warmup_ratio=0.0",
    ]
    cfg = load_config(None, overrides)
    run_training(cfg)
    best = cfg.run_dir() / "best"
    got = [(e.text, e.type, e.start, e.end) for e in Tagger.from_pretrained(best).tag(KNOWN_POST).entities]
    assert got == KNOWN_ENTITIES, f"the tiny model did not learn its training sentence: {got}"
    return best


@pytest.fixture(scope="session")
def six_type_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny text-only model of six types (BRAND, DRUG, EVENT, LOC, ORG, PER) trained on a JSONL corpus
    (``six_types.six_type_corpus``, in the checkpoint's folder's ``../../../../brands``)."""
    from six_types import train_six_type_model

    base = tmp_path_factory.mktemp("six-types")
    return train_six_type_model(base, make_tiny_encoder(base / "enc", words=("nike", "drug")))


@pytest.fixture()
def fake_spacy(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The entity-type channel's spaCy replaced by :class:`fakes.FakeEntityAnnotator` for one test."""
    from fakes import FakeEntityAnnotator
    from hamner.data import entity_types

    fake = FakeEntityAnnotator()
    monkeypatch.setattr(entity_types, "_annotator", fake)
    return fake
