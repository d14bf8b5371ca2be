"""An ensemble of checkpoints: the mean of their CRF scores, decoded by one Viterbi pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import KNOWN_ENTITIES, KNOWN_POST
from hamner.cli import main
from hamner.errors import ConfigError
from hamner.inference.tagger import Tagger, load_model
from hamner.models.config import TaggerConfig
from hamner.models.ensemble import EnsembleTagger
from hamner.models.tagger import PostTaggingModel, TextTagger

WORDS = [["police", "in", "London", "city"], ["Apple", "and", "Google", "in", "Paris"], ["!"]]


@pytest.fixture(scope="module")
def other_model(trained_tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained model with the trained one's encoder architecture, labels and tokenisation."""
    trained = TextTagger.from_pretrained(trained_tiny_model)
    torch.manual_seed(7)
    other = TextTagger(trained.config, trained.encoder, trained.tokenizer)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return other.save_pretrained(tmp_path_factory.mktemp("other") / "ckpt")


def test_an_ensemble_of_one_model_twice_is_that_model(trained_tiny_model: Path) -> None:
    single = TextTagger.from_pretrained(trained_tiny_model)
    both = EnsembleTagger.from_pretrained([trained_tiny_model, trained_tiny_model])
    for a, b in zip(single.run(WORDS), both.run(WORDS), strict=True):
        assert a.tags == b.tags and torch.allclose(a.emissions, b.emissions)


def test_the_ensemble_decodes_the_mean_of_emissions_and_transitions(trained_tiny_model: Path, other_model: Path) -> None:
    a, b = TextTagger.from_pretrained(trained_tiny_model), TextTagger.from_pretrained(other_model)
    ens = EnsembleTagger([a, b])
    for attr in ("start_transitions", "end_transitions", "transitions"):
        assert torch.allclose(getattr(ens.crf.crf, attr), (getattr(a.crf.crf, attr) + getattr(b.crf.crf, attr)) / 2)
    for pa, pb, pe in zip(a.run(WORDS), b.run(WORDS), ens.run(WORDS), strict=True):
        mean = (pa.emissions + pb.emissions) / 2
        assert torch.allclose(pe.emissions, mean)
        n = mean.size(0)
        path = ens.crf.decode(mean[None], torch.ones(1, n, dtype=torch.bool))[0]
        assert pe.tags == [a.config.labels[t] for t in path]


def test_members_must_agree(trained_tiny_model: Path, tmp_path: Path) -> None:
    a = TextTagger.from_pretrained(trained_tiny_model)
    with pytest.raises(ConfigError, match="at least 2 checkpoints"):
        EnsembleTagger([a])
    other = TextTagger(TaggerConfig(**{**a.config.to_dict(), "labels": ["O", "B-PER", "I-PER"]}), a.encoder, a.tokenizer)
    with pytest.raises(ConfigError, match="labels"):
        EnsembleTagger([a, other], ["a", "b"])
    style = TextTagger(TaggerConfig(**{**a.config.to_dict(), "tokenizer_style": "twitter2015"}), a.encoder, a.tokenizer)
    with pytest.raises(ConfigError, match="tokenizer style"):
        EnsembleTagger([a, style], ["a", "b"])


def test_tag_and_evaluate_take_several_models(
    trained_tiny_model: Path, tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tagger = Tagger.from_pretrained([trained_tiny_model, trained_tiny_model])
    assert isinstance(tagger.model, EnsembleTagger)
    assert [(e.text, e.type, e.start, e.end) for e in tagger.tag(KNOWN_POST).entities] == KNOWN_ENTITIES
    m = str(trained_tiny_model)
    assert main(["tag", "--model", m, "--model", m, "--text", KNOWN_POST]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in out["entities"]] == KNOWN_ENTITIES
    assert main(["evaluate", "--model", m, "--model", m, "--data-root", str(tiny_data_root), "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--model", m, "--data-root", str(tiny_data_root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"] == both["micro"]


def test_serve_takes_several_models(trained_tiny_model: Path) -> None:
    from hamner.serve.service import ServeConfig, TaggingService

    svc = TaggingService.from_pretrained([trained_tiny_model, trained_tiny_model], ServeConfig(detect_objects=False))
    assert isinstance(svc.tagger.model, EnsembleTagger)
    info = svc.describe()
    assert info["kind"] == "text-only" and info["model_dir"] == f"{trained_tiny_model} + {trained_tiny_model}"


def test_an_ensemble_of_exported_models_equals_the_ensemble_of_their_checkpoints(
    trained_tiny_model: Path, other_model: Path, tmp_path: Path, tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    from hamner.inference.onnx import export

    exported = [export(trained_tiny_model, tmp_path / "a"), export(other_model, tmp_path / "b")]
    torch_ens = EnsembleTagger.from_pretrained([trained_tiny_model, other_model])
    onnx_ens = load_model(exported, threads=1)  # the inference layer loads exported members (models/ knows no ONNX)
    assert onnx_ens.exported and not torch_ens.exported and onnx_ens.precision == "fp32"
    # one interface, whatever runs the model: checkpoints, exports and the ensembles of either
    for model in [*torch_ens.member_models, *onnx_ens.member_models, torch_ens, onnx_ens]:
        assert isinstance(model, PostTaggingModel)
    # members take turns: their sessions' threads sleep between runs instead of spinning (spinning,
    # three int8 members tagged posts one at a time about 3 times slower on 2 cores)
    for m in onnx_ens.member_models:
        assert m.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    for attr in ("start_transitions", "end_transitions", "transitions"):
        assert torch.allclose(getattr(onnx_ens.crf.crf, attr), getattr(torch_ens.crf.crf, attr))
    for pt, po in zip(torch_ens.run(WORDS), onnx_ens.run(WORDS), strict=True):
        assert pt.tags == po.tags and torch.allclose(pt.emissions, po.emissions, atol=1e-4)
    # the Tagger, tag and evaluate take exported members like checkpoints; the CPU only
    tagger = Tagger.from_pretrained([str(e) for e in exported], threads=1)
    assert isinstance(tagger.model, EnsembleTagger) and tagger.model.exported
    assert [t.to_dict() for t in tagger.tag_many(["obama in new york"])] == [tagger.tag("obama in new york").to_dict()]
    # without threads=, each member follows the process's thread count, on sessions that do not spin either
    from hamner.threads import governor

    governed = Tagger.from_pretrained([str(e) for e in exported])
    governed.tag("obama in new york")
    for m in governed.model.member_models:
        assert m.threads == governor().threads()
        assert m.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(ConfigError, match="runs on the CPU"):
        load_model(exported).to("cuda")
    a, b = (str(e) for e in exported)
    assert main(["evaluate", "--model", a, "--model", b, "--dataset", "twitter2017", "--data-root", str(tiny_data_root), "--json"]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    m, o = str(trained_tiny_model), str(other_model)
    assert main(["evaluate", "--model", m, "--model", o, "--dataset", "twitter2017", "--data-root", str(tiny_data_root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"] == from_onnx["micro"]
    assert main(["evaluate", "--model", a, "--model", b, "--dataset", "twitter2017", "--precision", "bf16", "--data-root", str(tiny_data_root)]) == 2
    assert "precision is fixed at export" in capsys.readouterr().err
    # the two kinds are not mixed
    with pytest.raises(ConfigError, match="all PyTorch checkpoints or all exported"):
        load_model([trained_tiny_model, exported[1]])
    # the models layer reads PyTorch checkpoints only, and says where exported members are read
    with pytest.raises(ConfigError, match="not a PyTorch checkpoint.*hamner.inference.tagger.load_model"):
        EnsembleTagger.from_pretrained(exported)
