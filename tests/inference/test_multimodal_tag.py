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


def test_cli_evaluate_a_multimodal_model_reads_its_feature_cache(
    setup: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scoring a HamLearning checkpoint without its visual input would silently score another model
    (the text path): it is refused unless asked for; with --features it scores the cached path."""
    from hamner.evaluation.metrics import entity_scores
    from hamner.evaluation.predictions import read_predictions

    base = ["evaluate", "--model", str(setup["ckpt"]), "--dataset", "twitter2017", "--data-root", str(setup["data_root"])]
    assert main(base) == 2
    assert "is a multimodal model (HamLearningTagger): pass --features DIR" in capsys.readouterr().err

    preds_file = tmp_path / "preds.jsonl.gz"
    assert main([*base, "--features", str(setup["features"]), "--json", "--predictions", str(preds_file)]) == 0
    report = json.loads(capsys.readouterr().out)
    posts = read_conll(setup["base"] / "data" / "twitter2017" / "test.txt")
    model = TextTagger.from_pretrained(setup["ckpt"])
    cached = model.run([p.words for p in posts], [setup["store"][p.imgid] for p in posts])
    expected = entity_scores([p.tags for p in posts], [c.tags for c in cached])
    assert report["visual_input"] == str(setup["features"]) and report["micro"]["tp"] == expected.micro.tp
    written = read_predictions(preds_file)
    assert [w.pred for w in written] == [c.tags for c in cached] and [w.gold for w in written] == [p.tags for p in posts]
    assert written[0].relevance == pytest.approx(cached[0].relevance, abs=1e-6)

    assert main([*base, "--text-path", "--json"]) == 0
    text = model.run([p.words for p in posts], None)
    text_report = json.loads(capsys.readouterr().out)
    assert text_report["visual_input"] == "none (the text path only, --text-path)"
    assert text_report["micro"]["n_pred"] == entity_scores(
        [p.tags for p in posts], [t.tags for t in text]
    ).micro.n_pred
    assert main([*base, "--text-path", "--features", str(setup["features"])]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_cli_evaluate_refuses_a_cache_of_another_extractor(
    setup: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(setup["ckpt"], ckpt)
    meta = json.loads((ckpt / "hamner_config.json").read_text())
    meta["tagger"]["vision_fingerprint"] = "0" * 64
    (ckpt / "hamner_config.json").write_text(json.dumps(meta))
    args = ["evaluate", "--model", str(ckpt), "--dataset", "twitter2017", "--data-root", str(setup["data_root"])]
    assert main([*args, "--features", str(setup["features"])]) == 2
    assert "feature cache made by another image extractor" in capsys.readouterr().err
