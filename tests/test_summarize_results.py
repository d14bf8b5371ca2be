from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REQUIRED = "dataset config seeds p_mean r_mean f1_mean f1_std f1_PER f1_LOC f1_ORG f1_MISC epoch_minutes peak_mem_mb commit machine".split()


def fake_run(
    root: Path, seed: int, f1: float, config: str = "text-only", relevance: dict | None = None, chars: bool | None = None
) -> None:
    run = root / "twitter2017" / config / f"seed{seed}"
    run.mkdir(parents=True)
    prf = {"precision": f1 + 0.01, "recall": f1 - 0.01, "f1": f1, "tp": 1, "n_pred": 1, "n_gold": 1}
    final = {
        "dataset": "twitter2017",
        "config": config,
        "seed": seed,
        "best_epoch": 3,
        "dev_f1": 0.8,
        "test": {"micro": prf, "per_type": {t: prf for t in ("PER", "LOC", "ORG", "MISC")}},
        "test_f1": f1,
        "epoch_minutes": 2.0 + seed,
        "peak_mem_mb": 1000.0 * seed,
        "run": {"git": {"commit": "abcdef1234567890", "dirty": False}, "machine": "cpu: test"},
    }
    if relevance is not None:
        final["relevance"] = relevance
    (run / "final.json").write_text(json.dumps(final))
    model = {"encoder": "enc"} if chars is None else {"encoder": "enc", "use_chars": chars}
    (run / "config.yaml").write_text(yaml.safe_dump({"model": model, "train": {"epochs": 8}}))
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "run.json").write_text("{}")
    (run / "best").mkdir()
    (run / "best" / "model.safetensors").write_bytes(b"weights")


def test_summary_csv_and_readme_table(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, f1 in ((1, 0.80), (2, 0.82), (3, 0.84)):
        fake_run(runs, seed, f1)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\nend\n")
    results = tmp_path / "results"
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "summarize_results.py"),
        "--runs",
        str(runs),
        "--results",
        str(results),
        "--readme",
        str(readme),
    ]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    with (results / "summary.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames is not None and reader.fieldnames[: len(REQUIRED)] == REQUIRED
        (row,) = list(reader)
    assert row["dataset"] == "twitter2017" and row["seeds"] == "3"
    assert float(row["f1_mean"]) == pytest.approx(0.82) and float(row["f1_std"]) == pytest.approx(0.02)
    assert float(row["epoch_minutes"]) == pytest.approx(4.0) and row["peak_mem_mb"] == "3000"
    assert row["commit"] == "abcdef123456" and row["machine"] == "cpu: test"
    copied = results / "runs" / "twitter2017" / "text-only" / "seed2"
    assert (copied / "final.json").exists() and not (copied / "best").exists()  # never the weights
    text = readme.read_text()
    assert "old" not in text and "**82.00** ± 2.00" in text and "83.44" in text and text.endswith("end\n")


def test_a_different_run_with_the_same_key_is_refused(tmp_path: Path) -> None:
    fake_run(tmp_path / "runs", 1, 0.80)
    fake_run(tmp_path / "other", 1, 0.90)
    script = str(REPO / "scripts" / "summarize_results.py")
    common = ["--results", str(tmp_path / "results"), "--readme", str(tmp_path / "none.md")]
    subprocess.run([sys.executable, script, "--runs", str(tmp_path / "runs"), *common], check=True, capture_output=True, cwd=tmp_path)
    proc = subprocess.run(
        [sys.executable, script, "--runs", str(tmp_path / "other"), *common], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode != 0 and "different runs of the same dataset/config/seed" in proc.stderr


def test_comparison_against_text_only_and_the_relevance_distribution(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, f1 in ((1, 0.80), (2, 0.82)):
        fake_run(runs, seed, f1)
    stats = {"posts": 10, "mean": 0.6, "std": 0.1, "q00": 0.1, "q10": 0.4, "q25": 0.5, "q50": 0.6, "q75": 0.7, "q90": 0.8, "q100": 0.9}
    fake_run(runs, 1, 0.85, "hamlearning", {"words": stats, "pixels": {**stats, "posts": 2, "mean": 0.9}})
    (runs / "twitter2017" / "hamlearning" / "seed1" / "training_curves.png").write_bytes(b"png")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:start -->\n<!-- results:end -->\n<!-- comparison:start -->\nold\n<!-- comparison:end -->\n")
    results = tmp_path / "results"
    script = str(REPO / "scripts" / "summarize_results.py")
    subprocess.run([sys.executable, script, "--runs", str(runs), "--results", str(results), "--readme", str(readme)], check=True, capture_output=True, cwd=tmp_path)
    with (results / "comparison.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["config"] == "hamlearning" and row["seeds"] == "1" and row["baseline_seeds"] == "2"
    assert float(row["delta_f1"]) == pytest.approx(4.0) and float(row["delta_PER"]) == pytest.approx(4.0)
    assert float(row["delta_f1_same_seeds"]) == pytest.approx(5.0)  # against seed 1 of text-only (0.80)
    with (results / "relevance.csv").open() as fh:
        rel = list(csv.DictReader(fh))
    assert [(r["visual"], r["posts"], r["mean"]) for r in rel] == [("pixels", "2", "0.9"), ("words", "10", "0.6")]
    assert (results / "runs" / "twitter2017" / "hamlearning" / "seed1" / "training_curves.png").exists()
    text = readme.read_text()
    assert "old" not in text and "| twitter2017 | hamlearning | text-only | 1 (vs 2) | **+4.00** | +5.00 |" in text


def test_each_config_is_compared_with_the_text_only_baseline_of_its_char_channel(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fake_run(runs, 1, 0.80, "text-only", chars=True)
    fake_run(runs, 1, 0.78, "text-only-no-chars", chars=False)
    fake_run(runs, 1, 0.85, "hamlearning", chars=True)
    fake_run(runs, 1, 0.81, "hamlearning-no-chars", chars=False)
    fake_run(runs, 1, 0.77, "text-only-no-shape", chars=False)
    results = tmp_path / "results"
    script = str(REPO / "scripts" / "summarize_results.py")
    cmd = [sys.executable, script, "--runs", str(runs), "--results", str(results), "--readme", str(tmp_path / "none.md")]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    with (results / "comparison.csv").open() as fh:
        rows = {r["config"]: (r["baseline"], float(r["delta_f1"])) for r in csv.DictReader(fh)}
    assert rows == {
        "hamlearning": ("text-only", pytest.approx(5.0)),
        "hamlearning-no-chars": ("text-only-no-chars", pytest.approx(3.0)),
        "text-only-no-shape": ("text-only-no-chars", pytest.approx(-1.0)),
    }


def test_deltas_come_from_unrounded_means(tmp_path: Path) -> None:
    """0.807164 - 0.800048 = +0.71 points; the means rounded to 4 decimals first would give +0.72."""
    runs = tmp_path / "runs"
    fake_run(runs, 1, 0.800048)
    fake_run(runs, 1, 0.807164, "hamlearning")
    results = tmp_path / "results"
    script = str(REPO / "scripts" / "summarize_results.py")
    subprocess.run([sys.executable, script, "--runs", str(runs), "--results", str(results), "--readme", str(tmp_path / "none.md")], check=True, capture_output=True, cwd=tmp_path)
    with (results / "comparison.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["delta_f1"] == "0.71" and row["delta_f1_same_seeds"] == "0.71" and row["delta_PER"] == "0.71"
    with (results / "summary.csv").open() as fh:
        assert not [k for k in next(csv.DictReader(fh)) if k.startswith("_")]


def test_readme_headline_puts_our_models_beside_the_published_ones(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, f1 in ((1, 0.80), (2, 0.82)):
        fake_run(runs, seed, f1)
        fake_run(runs, seed, f1 + 0.01, "hamlearning")
    results = tmp_path / "results"
    results.mkdir()
    (results / "published.csv").write_text(
        "system,venue,encoder,images,twitter2015_f1,twitter2017_f1,source\nUMT,ACL 2020,BERT-base-cased + ResNet-152,pixels,73.41,85.31,paper\n"
    )
    readme, page = tmp_path / "README.md", tmp_path / "results.md"
    readme.write_text("top\n<!-- headline:start -->\nold\n<!-- headline:end -->\nend\n")
    (tmp_path / "index.md").write_text("# docs\n<!-- headline:start -->\n<!-- headline:end -->\n")
    page.write_text("<!-- results:start -->\n<!-- results:end -->\n<!-- comparison:start -->\n<!-- comparison:end -->\n")
    script = str(REPO / "scripts" / "summarize_results.py")
    cmd = [sys.executable, script, "--runs", str(runs), "--results", str(results), "--readme", str(readme), "--docs-results", str(page), "--docs-index", str(tmp_path / "index.md")]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    text = readme.read_text()
    assert "| hamner `text-only` (ours) | MiniLM-L6, uncased, 22M | none | – | **81.00** ± 1.41 (2 seeds) |" in text
    assert "| hamner `hamlearning` (ours) | MiniLM-L6, uncased, 22M | BLIP-2 captions | – | **82.00** ± 1.41 (2 seeds) |" in text
    assert "| UMT (ACL 2020) | BERT-base-cased + ResNet-152 | pixels | 73.41 | 85.31 |" in text and "old" not in text
    def block(page: str) -> str:
        return page.split("<!-- headline:start -->")[1].split("<!-- headline:end -->")[0]

    assert block(text) == block((tmp_path / "index.md").read_text()) and "UMT" in block(text)
    assert "| twitter2017 | hamlearning | text-only | 2 (vs 2) | **+1.00** |" in page.read_text()
