"""Training on a corpus of one's own: six entity types from JSONL posts (some with images), by path."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_tiny_encoder
from hamner.cli import main
from hamner.models.tagger import TextTagger
from six_types import train_six_type_model


def test_a_six_type_jsonl_corpus_trains_tags_and_evaluates(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    encoder = make_tiny_encoder(tmp_path / "enc", words=("nike", "drug"))
    best = train_six_type_model(tmp_path, encoder)
    corpus, run = tmp_path / "brands", best.parent
    model = TextTagger.from_pretrained(best)
    types = ["BRAND", "DRUG", "EVENT", "LOC", "ORG", "PER"]
    assert model.config.labels == ["O", *[f"{p}-{t}" for t in types for p in "BI"]]
    meta = json.loads((best / "hamner_config.json").read_text())
    assert meta["trained_on"] == "brands" and meta["type_map"] == {}
    final = json.loads((run / "final.json").read_text())
    assert set(final["test"]["per_type"]) <= set(types) and final["test"]["micro"]["n_gold"] == 12
    assert "BRAND" in (best / "README.md").read_text()
    capsys.readouterr()
    assert main(["tag", "--model", str(best), "--text", "the nike today"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert all(e["type"] in types for e in got["entities"])
    assert main(["evaluate", "--model", str(best), "--dataset", str(corpus), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"] == final["test"]["micro"]
