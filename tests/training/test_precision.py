"""train.precision and --precision: fp32 weights always, bf16 autocast on the CPU when asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import tiny_overrides

from conftest import KNOWN_ENTITIES, KNOWN_POST
from hamner.cli import main
from hamner.errors import ConfigError
from hamner.inference.tagger import Tagger
from hamner.models.crf import CRF
from hamner.precision import autocast, grad_scaler, resolve_precision
from hamner.training.config import load_config
from hamner.training.trainer import run_training


def test_auto_is_fp32_on_a_cpu_and_fp16_is_refused_there() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, fp16, got 'fp8'"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ConfigError, match="train.precision must be one of"):
        load_config(None, ["train.precision=half"])
    assert grad_scaler("cpu", "bf16") is None and grad_scaler("cpu", "fp32") is None


def test_bf16_autocast_runs_matrix_products_in_bf16_and_fp32_does_not() -> None:
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast("cpu", "bf16"):
        assert lin(x).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert lin(x).dtype == torch.float32


def test_crf_upcasts_low_precision_emissions() -> None:
    torch.manual_seed(0)
    crf = CRF(5)
    em = torch.randn(3, 6, 5).to(torch.bfloat16)
    tags = torch.randint(0, 5, (3, 6))
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [0] * 6], dtype=torch.bool)
    nll = crf.nll(em, tags, mask)
    assert nll.dtype == torch.float32
    assert torch.equal(nll, crf.nll(em.float(), tags, mask))
    assert crf.decode(em, mask) == crf.decode(em.float(), mask)
    assert crf.log_marginals(em, mask).dtype == torch.float32


def test_bf16_training_on_the_cpu_keeps_fp32_weights_and_records_the_precision(
    tiny_encoder: Path, tiny_data_root: Path, tmp_path: Path
) -> None:
    losses = {}
    for precision in ("fp32", "bf16"):
        cfg = load_config(None, [*tiny_overrides(tiny_encoder, tiny_data_root, tmp_path / precision, 3), f"train.precision={precision}"])
        final = run_training(cfg)
        run = cfg.run_dir()
        meta = json.loads((run / "run.json").read_text())
        assert meta["precision"] == {"requested": precision, "used": precision}
        assert final["run"]["precision"]["used"] == precision
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        losses[precision] = [r["train_loss"] for r in records]
        assert records[-1]["train_loss"] < records[0]["train_loss"]
        assert {t.dtype for t in load_file(str(run / "best" / "model.safetensors")).values()} == {torch.float32}
    # bf16 keeps 8 bits of mantissa: the same run, close but not equal
    assert losses["bf16"] != losses["fp32"]
    assert all(abs(a - b) / b < 0.05 for a, b in zip(losses["bf16"], losses["fp32"], strict=True)), losses


def test_tagging_in_bf16_gives_the_fp32_entities(trained_tiny_model: Path) -> None:
    fp32 = Tagger.from_pretrained(trained_tiny_model)
    bf16 = Tagger.from_pretrained(trained_tiny_model, precision="bf16")
    assert fp32.precision == "fp32" and bf16.precision == "bf16"
    a, b = fp32.tag(KNOWN_POST), bf16.tag(KNOWN_POST)
    assert [(e.text, e.type, e.start, e.end) for e in b.entities] == KNOWN_ENTITIES
    assert a.emissions is not None and b.emissions is not None and b.emissions.dtype == torch.float32
    assert torch.allclose(a.emissions, b.emissions, atol=0.1) and not torch.equal(a.emissions, b.emissions)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Tagger.from_pretrained(trained_tiny_model, precision="fp16")


def test_cli_tag_and_evaluate_take_precision(
    trained_tiny_model: Path, tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tag", "--model", str(trained_tiny_model), "--precision", "bf16", "--text", KNOWN_POST]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in out["entities"]] == KNOWN_ENTITIES
    assert main(["tag", "--model", str(trained_tiny_model), "--precision", "fp16", "--text", KNOWN_POST]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
    scores = {}
    for precision in ("fp32", "bf16"):
        args = ["evaluate", "--model", str(trained_tiny_model), "--data-root", str(tiny_data_root), "--json"]
        assert main([*args, "--precision", precision]) == 0
        scores[precision] = json.loads(capsys.readouterr().out)
        assert scores[precision]["precision"] == precision
    assert scores["bf16"]["micro"] == scores["fp32"]["micro"]  # the overfitted tiny model: the same tags


def test_crf_loss_is_exactly_the_mean_when_no_row_is_empty() -> None:
    """The sync-free loss must give the committed runs' numbers bit for bit: -llh.mean()."""
    torch.manual_seed(1)
    crf = CRF(7)
    em, tags = torch.randn(5, 9, 7), torch.randint(0, 7, (5, 9))
    mask = torch.arange(9)[None, :] < torch.tensor([9, 4, 1, 7, 2])[:, None]
    llh = crf.crf(em, tags, mask=mask, reduction="none")
    assert torch.equal(crf.nll(em, tags, mask), -llh.mean())
