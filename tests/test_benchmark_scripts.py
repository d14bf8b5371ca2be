"""The benchmark scripts run end to end on a tiny trained run (their numbers are measured elsewhere)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_inference_speed(model: Path, tmp_path: Path, systems: list[str], *extra: str) -> list[dict[str, str]]:
    """benchmarks/inference_speed.py on the tiny model (one quick repeat of ``systems``): its rows."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bench.csv"
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "inference_speed.py"), "--text-model", str(model), *extra,
        "--data-root", str(model.parent.parents[3] / "data"), "--repeats", "1", "--single", "3", "--images", "0",
        "--threads", "1", "--work", str(tmp_path / "work"), "--only", *systems, "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [f"{r['model']}/{r['runtime']}" for r in rows] == systems
    return rows


def speed_table(*csv_files: Path) -> list[str]:
    table = [sys.executable, str(REPO / "benchmarks" / "inference_speed.py"), "--table", *map(str, csv_files)]
    return subprocess.run(table, capture_output=True, text=True, check=True).stdout.strip().splitlines()


def test_inference_speed_runs_each_system_in_its_own_process(trained_tiny_model: Path, tmp_path: Path) -> None:
    systems = ["text-only/pytorch-fp32", "text-only/onnx-int8", "encoder/onnx-fp32"]
    rows = run_inference_speed(trained_tiny_model, tmp_path, systems)
    assert all(float(r["per_s_one_at_a_time"]) > 0 and float(r["peak_mb"]) > 0 and r["load_avg_1min"] for r in rows)
    assert rows[0]["test_f1"] and rows[0]["cold_start_s"] and not rows[2]["test_f1"]
    assert len(speed_table(tmp_path / "bench.csv")) == 5  # header, rule, 3 systems


def test_inference_speed_measures_an_ensemble_on_pytorch_and_int8(trained_tiny_model: Path, tmp_path: Path) -> None:
    m = str(trained_tiny_model)
    rows = run_inference_speed(trained_tiny_model, tmp_path, ["text-only x2/pytorch-fp32", "text-only x2/onnx-int8"], "--ensemble-models", m, m)
    assert all(float(r["per_s_batch32"]) > 0 and r["test_f1"] and r["cold_start_s"] for r in rows)
    # both members exported to int8 once, in the work folder
    assert sorted(p.name for p in (tmp_path / "work").iterdir() if p.name.startswith("ensemble-")) == ["ensemble-1-int8", "ensemble-2-int8"]
    assert len(speed_table(tmp_path / "bench.csv", tmp_path / "bench.csv")) == 6  # header, rule, 2 systems from each file


def test_spacy_entities_map_onto_the_dataset_words() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from inference_speed import spacy_tags

    class Ent:
        def __init__(self, start: int, end: int, label: str) -> None:
            self.start_char, self.end_char, self.label_ = start, end, label

    class Doc:
        ents = [Ent(0, 12, "PERSON"), Ent(21, 29, "GPE"), Ent(33, 37, "CARDINAL"), Ent(38, 41, "NORP")]

    words = ["Barack", "Obama", "visited", "New", "York", "on", "2016", "US", "!"]
    # text: "Barack Obama visited New York on 2016 US !"
    assert spacy_tags(Doc(), words) == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "B-MISC", "O"]


def test_onnx_op_profile_splits_session_and_python_and_names_the_layers(trained_tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from hamner.inference.onnx import export

    exported = export(trained_tiny_model, tmp_path / "int8", int8=True)
    out = tmp_path / "profile.csv"
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "onnx_op_profile.py"), "--model", str(exported), "--posts", "twitter2017:test",
        "--data-root", str(trained_tiny_model.parents[4] / "data"), "--limit", "20", "--work", str(tmp_path / "work"), "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    parts = {r["part"]: float(r["share"]) for r in rows}
    assert abs(parts["session"] + parts["outside_session"] - 1) < 1e-3 and parts["session"] > 0
    for prefix in ("op:", "layer:"):
        assert abs(sum(v for k, v in parts.items() if k.startswith(prefix)) - 1) < 0.01
    assert parts["op:MatMulInteger"] > 0 and parts["layer:ffn_out"] > 0 and parts["layer:attention_out"] > 0
    assert all(0 < int(r["posts"]) <= 20 and "per_token" in r["int8_rule"] and r["commit"] for r in rows)
    assert not list((tmp_path / "work").glob("*.json"))  # the profiler's file is removed


def test_onnx_fusions_times_sessions_with_fusions_off_against_all_on(trained_tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from hamner.inference.onnx import export

    exported = export(trained_tiny_model, tmp_path / "int8", int8=True)
    out = tmp_path / "fusions.csv"
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "onnx_fusions.py"), "--model", str(exported), "--disable", "SkipLayerNormFusion",
        "--threads", "1", "--posts", "twitter2017:test", "--data-root", str(trained_tiny_model.parents[4] / "data"), "--limit", "20",
        "--repeats", "2", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["disabled"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"none", "SkipLayerNormFusion"}
    assert float(rows["none"]["vs_all_fusions"]) == 1.0 and float(rows["none"]["max_abs_diff"]) == 0.0
    assert all(float(r["session_posts_per_s"]) > 0 and 0 < int(r["posts"]) <= 20 and r["commit"] for r in rows.values())
    assert 0 <= float(rows["SkipLayerNormFusion"]["best_tag_changed"]) <= 1
