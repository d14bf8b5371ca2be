"""Model cards: save_pretrained writes one; a finished run's card holds exactly the scores of final.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import yaml

from hamner.models.card import CARD_FILE, model_card
from hamner.models.config import TaggerConfig
from hamner.models.tagger import TextTagger
from hamner.training.config import load_config
from hamner.training.trainer import run_training


def front_matter(card: str) -> dict:
    m = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert m, "the card starts with YAML front matter"
    return yaml.safe_load(m.group(1))


def test_save_pretrained_writes_a_card_and_takes_one(tiny_encoder: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TextTagger.from_config(TaggerConfig(encoder=str(tiny_encoder)))
    out = model.save_pretrained(tmp_path / "a", extra={"trained_on": "twitter2017", "epoch": 2, "dev_f1": 0.5})
    card = (out / CARD_FILE).read_text()
    meta = front_matter(card)
    assert (
        meta["trained_on"] == "twitter2017"
        and meta["dev_f1"] == 0.5
        and meta["entity_types"] == ["PER", "LOC", "ORG", "MISC"]
    )
    assert "test" not in meta and "Not scored on a test split yet" in card
    assert "text-only" in card and "Tagger.from_pretrained" in card and "English tweets" in card
    assert TextTagger.from_pretrained(out).config == model.config  # the card does not disturb loading
    out = model.save_pretrained(tmp_path / "b", card="# my card\n")
    assert (out / CARD_FILE).read_text() == "# my card\n"


def test_a_multimodal_card_says_captions_stood_in_for_images() -> None:
    cfg = TaggerConfig(use_global=True, use_objects=True, use_spatial=True, use_semantic=True, semantic_mode="both")
    card = model_card(cfg, {"trained_on": "twitter2015"})
    assert "HamLearning" in card and "spatial relations" in card and "Twitter-2015" in card
    assert "Captions stand in for images" in card and "Visual input" in card


def test_a_finished_runs_card_has_the_scores_of_final_json(
    tiny_encoder: Path, tiny_data_root: Path, tmp_path: Path
) -> None:
    overrides = [
        f"model.encoder={tiny_encoder}",
        f"data.root={tiny_data_root}",
        f"train.output_dir={tmp_path / 'runs'}",
        "train.epochs=2",
        "train.batch_size=4",
        "train.lr_encoder=1e-3",
        "train.num_threads=1",
        "train.progress=false",
    ]
    cfg = load_config(None, overrides)
    final = run_training(cfg)
    run = cfg.run_dir()
    assert json.loads((run / "final.json").read_text()) == json.loads(json.dumps(final))
    card = (run / "best" / CARD_FILE).read_text()
    meta = front_matter(card)
    test = final["test"]
    assert meta["test_f1"] == final["test_f1"] == test["micro"]["f1"]
    assert meta["best_epoch"] == final["best_epoch"] and meta["dev_f1"] == final["dev_f1"]
    assert meta["test"]["micro"] == {k: test["micro"][k] for k in ("precision", "recall", "f1", "n_gold", "n_pred")}
    for name, s in test["per_type"].items():
        assert meta["test"][name] == {k: s[k] for k in ("precision", "recall", "f1", "n_gold", "n_pred")}
    # the table people read: one row per type and micro, in % with two decimals
    rows = {
        r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
        for r in card.splitlines()
        if r.startswith("| ") and "precision" not in r
    }
    assert set(rows) == {*test["per_type"], "micro"}
    for name, s in [*test["per_type"].items(), ("micro", test["micro"])]:
        assert rows[name] == [
            f"{100 * s['precision']:.2f}",
            f"{100 * s['recall']:.2f}",
            f"{100 * s['f1']:.2f}",
            str(s["n_gold"]),
            str(s["n_pred"]),
        ]
    assert "Not scored" not in card
