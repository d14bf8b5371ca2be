"""The shipped experiment configs: the full model, one YAML per ablation, and 'base:' inheritance."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from hamner.data.conll import Post
from hamner.errors import ConfigError
from hamner.training.config import load_config
from hamner.training.trainer import open_features, visual_inputs

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
#: each ablation and the model fields it changes from configs/hamlearning-no-chars.yaml, the full
#: model without the char channel (the ablations were all trained without it)
ABLATIONS = {
    "hamlearning-no-global": {"use_global": False},
    "hamlearning-no-objects": {"use_objects": False, "use_spatial": False},
    "hamlearning-no-semantic": {"use_semantic": False},
    "hamlearning-no-spatial": {"use_spatial": False},
    "hamlearning-no-relevance": {"use_relevance": False},
    "hamlearning-L0": {"num_iterations": 0},
    "hamlearning-L1": {"num_iterations": 1},
    "hamlearning-L3": {"num_iterations": 3},
    "hamlearning-semantic-sequence": {"semantic_mode": "sequence"},
    "hamlearning-semantic-segment": {"semantic_mode": "segment"},
}


def test_every_shipped_config_loads_and_is_named_after_its_file() -> None:
    files = sorted(CONFIGS.glob("*.yaml"))
    assert {f.stem for f in files} >= {"text-only", "text-only-no-chars", "hamlearning", "hamlearning-no-chars", *ABLATIONS}
    for f in files:
        cfg = load_config(f)
        assert cfg.name == f.stem


def test_full_model_switches_everything_on_and_the_text_path_everything_off() -> None:
    full = load_config(CONFIGS / "hamlearning.yaml")
    m = full.model
    assert m.use_global and m.use_objects and m.use_spatial and m.use_semantic and m.use_relevance
    assert m.num_iterations == 2 and m.multimodal and m.fuses
    assert full.data.features == "features/twitter2017"
    assert load_config(CONFIGS / "hamlearning.yaml", ["data.dataset=twitter2015"]).data.features == "features/twitter2015"
    text = load_config(CONFIGS / "text-only.yaml")
    assert not text.model.multimodal
    # the full model trains like the text path, plus modality dropout
    assert full.train.visual_dropout == 0.3 and text.train.visual_dropout == 0.0
    assert {k for k, v in asdict(full.train).items() if asdict(text.train)[k] != v} == {"visual_dropout"}
    assert {k: v for k, v in asdict(full.model).items() if k in asdict(text.model) and v != asdict(text.model)[k]}.keys() <= {
        "use_global", "use_objects", "use_spatial", "use_semantic", "semantic_mode",
    }  # fmt: skip


@pytest.mark.parametrize("name", ["hamlearning", "text-only"])
def test_each_no_chars_reference_is_its_model_without_the_char_channel(name: str) -> None:
    full = asdict(load_config(CONFIGS / f"{name}.yaml"))
    ref = asdict(load_config(CONFIGS / f"{name}-no-chars.yaml"))
    assert full["model"]["use_chars"] and not ref["model"]["use_chars"]
    assert ref["train"] == full["train"] and ref["data"] == full["data"]
    assert {k for k, v in ref["model"].items() if full["model"][k] != v} == {"use_chars"}


def test_the_entity_type_config_is_the_full_model_with_that_channel() -> None:
    full = asdict(load_config(CONFIGS / "hamlearning.yaml"))
    ent = asdict(load_config(CONFIGS / "hamlearning-entity-types.yaml"))
    assert ent["train"] == full["train"] and ent["data"] == full["data"]
    assert {k: v for k, v in ent["model"].items() if full["model"][k] != v} == {"use_entity_types": True}
    assert load_config(CONFIGS / "hamlearning-entity-types.yaml").model.channel_width == 32 + 64 + 16


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_each_ablation_changes_only_its_switch(name: str) -> None:
    full = asdict(load_config(CONFIGS / "hamlearning-no-chars.yaml"))
    abl = asdict(load_config(CONFIGS / f"{name}.yaml"))
    assert abl["name"] == name
    assert abl["train"] == full["train"] and abl["data"] == full["data"]
    changed = {k: v for k, v in abl["model"].items() if full["model"][k] != v}
    assert changed == ABLATIONS[name]


def test_the_no_visual_dropout_ablation_changes_only_the_training_dropout() -> None:
    full = asdict(load_config(CONFIGS / "hamlearning-no-chars.yaml"))
    abl = asdict(load_config(CONFIGS / "hamlearning-no-visual-dropout.yaml"))
    assert abl["model"] == full["model"] and abl["data"] == full["data"]
    assert {k for k, v in abl["train"].items() if full["train"][k] != v} == {"visual_dropout"}
    assert abl["train"]["visual_dropout"] == 0.0


def test_base_inheritance_overrides_key_by_key_and_refuses_cycles(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("base: b.yaml\nmodel:\n  dropout: 0.3\n")
    (tmp_path / "b.yaml").write_text("name: b\nmodel:\n  dropout: 0.1\n  shape_dim: 16\ntrain:\n  epochs: 3\n")
    cfg = load_config(tmp_path / "a.yaml")
    assert cfg.name == "a" and cfg.model.dropout == 0.3 and cfg.model.shape_dim == 16 and cfg.train.epochs == 3
    (tmp_path / "c.yaml").write_text("base: d.yaml\n")
    (tmp_path / "d.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "e.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml not found"):
        load_config(tmp_path / "e.yaml")


def test_a_multimodal_run_without_a_feature_cache_says_how_to_make_one() -> None:
    cfg = load_config(CONFIGS / "hamlearning.yaml", ["data.features="])
    cfg.data.features = None
    with pytest.raises(ConfigError, match="set data.features to a feature cache .*hamner preprocess --dataset twitter2017"):
        open_features(cfg)
    assert open_features(load_config(CONFIGS / "text-only.yaml")) is None


def test_a_post_missing_from_the_cache_is_named(tmp_path: Path) -> None:
    class Store:
        directory = tmp_path
        key_scheme = "imgid"  # a benchmark's cache

        def __contains__(self, key: object) -> bool:
            return False

    post = Post(words=["a"], tags=["O"], imgid="123", source="test.txt:7")
    with pytest.raises(ConfigError, match="test.txt:7: IMGID 123 is not in the feature cache"):
        visual_inputs([post], Store())  # type: ignore[arg-type]


def test_modality_dropout_is_a_fixed_draw_per_seed_epoch_and_post() -> None:
    from hamner.training.trainer import visual_dropped

    draws = [visual_dropped(1, 0, i, 0.3) for i in range(2000)]
    assert 0.26 < sum(draws) / len(draws) < 0.34
    assert draws == [visual_dropped(1, 0, i, 0.3) for i in range(2000)]  # a resumed run drops the same posts
    assert draws != [visual_dropped(1, 1, i, 0.3) for i in range(2000)]  # drawn afresh every epoch
    assert not any(visual_dropped(1, 0, i, 0.0) for i in range(100))
    with pytest.raises(ConfigError, match="visual_dropout must be in"):
        load_config(CONFIGS / "hamlearning.yaml", ["train.visual_dropout=1.0"])
