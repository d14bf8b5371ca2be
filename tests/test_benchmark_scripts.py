"""The benchmark scripts run end to end on a tiny trained run (their numbers are measured elsewhere)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_model_cost_measures_several_models_in_spawned_processes(trained_tiny_model: Path, tmp_path: Path) -> None:
    run = trained_tiny_model.parent  # holds best/ and final.json
    data_root = run.parents[3] / "data"
    out = tmp_path / "cost.csv"
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "model_cost.py"), "--models", str(run), str(run),
        "--data-root", str(data_root), "--batch-sizes", "1", "4", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["run"], r["batch_size"]) for r in rows] == [(str(run), "1"), (str(run), "4")] * 2
    for r in rows:
        assert r["config"] == "text-only" and r["dataset"] == "twitter2017" and int(r["posts"]) > 0
        assert float(r["posts_per_second"]) > 0 and int(r["tag_peak_mem_mb"]) > 0 and int(r["parameters"]) > 0
        assert r["command"].startswith("python benchmarks/model_cost.py --models") and r["commit"] and r["machine"]


def test_precision_runs_tabulates_runs_from_their_own_files(trained_tiny_model: Path, tmp_path: Path) -> None:
    run = trained_tiny_model.parent
    out = tmp_path / "runs.csv"
    cmd = [sys.executable, str(REPO / "benchmarks" / "precision_runs.py"), str(run), str(tmp_path), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["row"], r["precision"], r["runs"]) for r in rows] == [("run", "fp32", "1"), ("summary", "fp32", "1")]
    assert float(rows[0]["s_per_epoch"]) > 0 and rows[1]["speedup_vs_fp32"] == "1.0" and rows[0]["test_f1"]
