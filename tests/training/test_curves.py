from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from hamner.errors import DataFormatError
from hamner.training.curves import DPI, FIGSIZE, _title, best_epoch, plot_training_curves, read_metrics

RECORDS: list[dict[str, Any]] = [
    {"epoch": 1, "train_loss": 2.31, "dev_f1": 0.61, "best": True, "lr_encoder": 5e-5},
    {"epoch": 2, "train_loss": 1.12, "dev_f1": 0.74, "best": True, "lr_encoder": 3e-5},
    {"epoch": 3, "train_loss": 0.68, "dev_f1": 0.72, "best": False, "lr_encoder": 1e-5},
]


def write_run(root: Path, records: list[dict[str, Any]] = RECORDS, final: dict[str, Any] | None = None) -> Path:
    run = root / "runs" / "twitter2017" / "hamlearning" / "seed1"
    run.mkdir(parents=True)
    lines = [json.dumps(r) for r in records]
    (run / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")  # a blank line
    if final is not None:
        (run / "final.json").write_text(json.dumps(final, indent=2) + "\n")
    return run


def test_plot_writes_a_png_of_the_expected_size(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = write_run(tmp_path, final={"best_epoch": 2, "dev_f1": 0.74, "test_f1": 0.8412})
    with caplog.at_level(logging.INFO, logger="hamner.training.curves"):
        out = plot_training_curves(run)
    assert out == run / "training_curves.png" and out.is_file()
    assert str(out) in caplog.text
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20  # lines, markers and text, not a blank canvas


def test_plot_to_another_file_without_final_json(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    target = tmp_path / "figs" / "curves.png"
    assert plot_training_curves(str(run), target) == target
    assert target.is_file() and not (run / "training_curves.png").exists()


def test_title_names_the_run_and_the_test_score(tmp_path: Path) -> None:
    run = write_run(tmp_path, final={"best_epoch": 2, "test_f1": 0.8412})
    assert _title(run) == "twitter2017/hamlearning/seed1 - test F1 0.8412 (epoch 2)"
    (run / "final.json").unlink()
    assert _title(run) == "twitter2017/hamlearning/seed1"


def test_best_epoch_is_the_max_dev_f1_first_on_ties(tmp_path: Path) -> None:
    records = read_metrics(write_run(tmp_path) / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]  # the blank line is skipped
    assert records[0]["lr_encoder"] == 5e-5  # other keys are kept
    assert best_epoch(records) == 2
    tied = [{"epoch": 1, "dev_f1": 0.5}, {"epoch": 2, "dev_f1": 0.7}, {"epoch": 3, "dev_f1": 0.7}]
    assert best_epoch(tied) == 2
    with pytest.raises(ValueError):
        best_epoch([])


def test_missing_metrics_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="metrics.jsonl: no such metrics file"):
        plot_training_curves(tmp_path)


def test_empty_metrics_file(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("\n  \n")
    with pytest.raises(DataFormatError, match="metrics.jsonl: no metrics records"):
        plot_training_curves(tmp_path)
    assert not (tmp_path / "training_curves.png").exists()


def test_bad_json_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n\n" + '{"epoch": 2, "train_loss": \n')
    with pytest.raises(DataFormatError, match=r"metrics.jsonl:3: not valid JSON") as info:
        read_metrics(path)
    assert info.value.line == 3 and info.value.path == str(path)


def test_missing_key_names_the_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    broken = {k: v for k, v in RECORDS[1].items() if k != "dev_f1"}
    path.write_text(json.dumps(RECORDS[0]) + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(DataFormatError, match=r"metrics.jsonl:2: missing key 'dev_f1'"):
        read_metrics(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epoch": "1"}, "'epoch' must be an integer, got str"),
        ({"epoch": 1.0}, "'epoch' must be an integer, got float"),
        ({"epoch": 0}, "'epoch' must be >= 1"),
        ({"train_loss": True}, "'train_loss' must be a number, got bool"),
        ({"dev_f1": None}, "'dev_f1' must be a number, got NoneType"),
        ({"best": 1}, "'best' must be a boolean, got int"),
    ],
)
def test_wrong_types_name_the_line(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({**RECORDS[0], **change}) + "\n")
    with pytest.raises(DataFormatError, match=f"metrics.jsonl:1: {message}"):
        read_metrics(path)


def test_a_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(DataFormatError, match="metrics.jsonl:1: expected a JSON object, got list"):
        read_metrics(path)


def test_cli_curves_plots_existing_runs_and_names_a_bad_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hamner.cli import main

    run = write_run(tmp_path)
    assert main(["curves", str(run)]) == 0
    assert (run / "training_curves.png").exists()
    assert main(["curves", str(tmp_path / "nowhere")]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
