"""scripts/significance.py: predictions checked against their runs, then the paired bootstrap."""

from __future__ import annotations

import csv
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from hamner.data.conll import Post
from hamner.evaluation.metrics import entity_scores
from hamner.evaluation.predictions import write_predictions

REPO = Path(__file__).resolve().parents[1]
TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "B-ORG", "B-MISC"]


def make(tmp: Path, rng: random.Random, gold_posts: list[Post], config: str, seed: int, error: float) -> float:
    pred = [[rng.choice(TAGS) if rng.random() < error else t for t in p.tags] for p in gold_posts]
    run = tmp / "results" / "runs" / "twitter2017" / config / f"seed{seed}"
    write_predictions(run / "test_predictions.jsonl.gz", gold_posts, pred)
    f1 = entity_scores([p.tags for p in gold_posts], pred).micro.f1
    (run / "final.json").write_text(json.dumps({"test_f1": f1}))
    return f1


def run_script(tmp: Path) -> subprocess.CompletedProcess[str]:
    # --allow-dirty: these tests check the statistics, and run in working trees with changes too
    cmd = [sys.executable, str(REPO / "scripts" / "significance.py"), "--results", str(tmp / "results"), "--samples", "500", "--allow-dirty"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_significance_script_writes_one_row_per_dataset(tmp_path: Path) -> None:
    rng = random.Random(0)
    posts = [Post([f"w{j}" for j in range(8)], [rng.choice(TAGS) for _ in range(8)], str(i), f"test.txt:{i}") for i in range(120)]
    a = [make(tmp_path, rng, posts, "hamlearning", s, 0.05) for s in (1, 2, 3)]
    b = [make(tmp_path, rng, posts, "text-only", s, 0.3) for s in (1, 2, 3)]
    proc = run_script(tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "results" / "significance.csv").open()))
    assert len(rows) == 1
    row = rows[0]
    assert (row["dataset"], row["config_a"], row["config_b"], row["seeds_a"], row["posts"]) == (
        "twitter2017", "hamlearning", "text-only", "1 2 3", "120",
    )  # fmt: skip
    assert abs(float(row["f1_a"]) - sum(a) / 3) < 1e-4 and abs(float(row["f1_b"]) - sum(b) / 3) < 1e-4
    assert float(row["ci_low"]) > 0 and float(row["p_value"]) < 0.01
    assert float(row["seed_post_ci_low"]) > 0 and float(row["seed_post_p_value"]) < 0.01 and float(row["seed_t_p_value"]) < 0.01
    assert row["command"].startswith("python ") and row["commit"] and row["machine"]


def test_predictions_that_are_not_the_runs_are_refused(tmp_path: Path) -> None:
    rng = random.Random(1)
    posts = [Post(["a", "b"], ["B-PER", "O"], str(i), f"test.txt:{i}") for i in range(30)]
    make(tmp_path, rng, posts, "hamlearning", 1, 0.2)
    make(tmp_path, rng, posts, "text-only", 1, 0.2)
    final = tmp_path / "results" / "runs" / "twitter2017" / "text-only" / "seed1" / "final.json"
    final.write_text(json.dumps({"test_f1": 0.123}))
    proc = run_script(tmp_path)
    assert proc.returncode != 0 and "but the run's final.json says 0.123000" in proc.stderr

    final.unlink()
    proc = run_script(tmp_path)
    assert proc.returncode != 0 and "no final.json to check test_predictions.jsonl.gz against" in proc.stderr
    (final.parent / "test_predictions.jsonl.gz").unlink()
    proc = run_script(tmp_path)
    assert proc.returncode != 0 and "no test_predictions.jsonl.gz; remake it with" in proc.stderr


def test_different_gold_posts_are_refused(tmp_path: Path) -> None:
    rng = random.Random(2)
    posts = [Post(["a", "b"], ["B-PER", "O"], str(i), f"test.txt:{i}") for i in range(20)]
    other = [Post(["a", "c"], ["B-PER", "O"], str(i), f"test.txt:{i}") for i in range(20)]
    make(tmp_path, rng, posts, "hamlearning", 1, 0.1)
    make(tmp_path, rng, other, "text-only", 1, 0.1)
    proc = run_script(tmp_path)
    assert proc.returncode != 0 and "the post at test.txt:0 differs" in proc.stderr


def test_a_dirty_source_tree_is_refused_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("significance_script", REPO / "scripts" / "significance.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "git_revision", lambda: {"commit": "abc", "dirty": True})
    monkeypatch.setattr(sys, "argv", ["significance.py", "--results", str(tmp_path / "results")])
    with pytest.raises(SystemExit, match="uncommitted changes: commit them first"):
        script.main()


def test_ensemble_report_scores_the_ensemble_against_its_members(trained_tiny_model: Path, tmp_path: Path) -> None:
    """Two copies of one run: the ensemble is that model, so it gains nothing, and every file is written."""
    import os

    run = trained_tiny_model.parent
    data_root = run.parents[3] / "data"
    out = tmp_path / "report"
    cmd = [sys.executable, str(REPO / "scripts" / "ensemble_report.py"), "--runs", str(run), str(run),
           "--data-root", str(data_root), "--out", str(out), "--samples", "200", "--allow-dirty"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    final = json.loads((run / "final.json").read_text())
    assert summary["ensemble_test_f1"] == final["test_f1"] and summary["test_gain"] == 0
    assert summary["test_bootstrap_vs_members_mean"]["delta"] == 0
    assert json.loads((out / "test.json").read_text())["micro"]["f1"] == final["test_f1"]
    assert (out / "members" / "seed1" / "final.json").exists() and (out / "dev_predictions.jsonl.gz").exists()
    assert summary["commit"] and summary["command"].startswith("python scripts/ensemble_report.py")


def lever_run(run: Path, rng: random.Random, gold_posts: list[Post], dev: float, error: float, predictions: bool = True) -> float:
    pred = [[rng.choice(TAGS) if rng.random() < error else t for t in p.tags] for p in gold_posts]
    f1 = entity_scores([p.tags for p in gold_posts], pred).micro.f1
    if predictions:
        write_predictions(run / "test_predictions.jsonl.gz", gold_posts, pred)
    run.mkdir(parents=True, exist_ok=True)
    (run / "final.json").write_text(json.dumps({"dev_f1": dev, "test_f1": f1}))
    return f1


def run_lever_script(
    tmp: Path, *levers: list[str], seeds: tuple[int, ...] = (1, 2, 3), docs: Path | None = None,
    readme: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(REPO / "scripts" / "lever_seeds.py"), "--out", str(tmp / "levers.csv"), "--samples", "300",
           "--allow-dirty", "--seeds", *map(str, seeds), *(["--docs", str(docs)] if docs else []),
           *(["--readme", str(readme)] if readme else [])]  # fmt: skip
    for lever in levers:
        cmd += ["--lever", *lever]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_lever_seeds_compares_each_lever_with_its_baseline_on_the_same_seeds(tmp_path: Path) -> None:
    rng = random.Random(3)
    posts = [Post([f"w{j}" for j in range(6)], [rng.choice(TAGS) for _ in range(6)], str(i), f"test.txt:{i}") for i in range(100)]
    base = [lever_run(tmp_path / "base" / f"seed{s}", rng, posts, 0.850, 0.3) for s in (1, 2, 3)]
    good = [lever_run(tmp_path / "good" / f"seed{s}", rng, posts, 0.853, 0.05) for s in (1, 2, 3)]
    # a joint run's second dataset: the seed inside the path; seed 2 kept no predictions
    flat = [lever_run(tmp_path / "joint" / f"seed{s}" / "other", rng, posts, 0.849, 0.3, predictions=s != 2) for s in (1, 2, 3)]
    page = tmp_path / "results.md"
    page.write_text("intro\n<!-- lever-seeds:start -->\nstale\n<!-- lever-seeds:end -->\nafter\n")
    readme = tmp_path / "README.md"
    readme.write_text("top\n<!-- lever-seeds-short:start -->\nold\n<!-- lever-seeds-short:end -->\nbottom\n")
    proc = run_lever_script(
        tmp_path, ["good", "twitter2017", str(tmp_path / "good"), str(tmp_path / "base")],
        ["joint", "twitter2015", str(tmp_path / "joint" / "seed{seed}" / "other"), str(tmp_path / "base")], docs=page,
        readme=readme,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    good_row, joint_row = list(csv.DictReader((tmp_path / "levers.csv").open()))
    assert abs(float(good_row["dev_gap"]) - 0.003) < 1e-9 and good_row["rule_met"] == "True"
    assert abs(float(good_row["test_gap"]) - (sum(good) - sum(base)) / 3) < 1e-4
    assert abs(float(good_row["test_lever_std"]) - statistics.stdev(good)) < 1e-4
    assert good_row["bootstrap"] == "run" and float(good_row["seed_post_p_value"]) < 0.01 and float(good_row["post_ci_low"]) > 0
    assert float(good_row["seed_t_p_value"]) < 0.01 and good_row["seeds"] == "1 2 3"
    assert joint_row["rule_met"] == "False" and abs(float(joint_row["test_lever"]) - sum(flat) / 3) < 1e-4
    assert joint_row["seed_post_p_value"] == "" and "joint/seed2/other" in joint_row["bootstrap"]
    assert joint_row["command"].startswith("python ") and joint_row["commit"] and joint_row["machine"]
    table = page.read_text().splitlines()
    assert table[0] == "intro" and table[-2:] == ["<!-- lever-seeds:end -->", "after"] and "stale" not in table
    assert table[4].startswith("| good | twitter2017 | `base` | 1 2 3 | 85.30 / 85.00 | +0.30 | ")
    assert table[5].startswith("| joint | twitter2015 | `base` | 1 2 3 | 84.90 / 85.00 | -0.10 (under +0.2) | ")
    assert table[5].endswith("| – (no per-post predictions) | " + f"{float(joint_row['seed_t_p_value']):.3f} |")
    short = readme.read_text().splitlines()
    assert short[0] == "top" and short[-2:] == ["<!-- lever-seeds-short:end -->", "bottom"] and "old" not in short
    assert "rule +0.2" in short[2]
    good_test = f"{100 * sum(good) / 3:.2f} / {100 * sum(base) / 3:.2f}"
    assert short[4].startswith(f"| good | twitter2017 | `base` | 1 2 3 | +0.30 | {good_test} (+")
    assert short[5].startswith("| joint | twitter2015 | `base` | 1 2 3 | -0.10 | ")

    page.write_text("no markers\n")
    proc = run_lever_script(tmp_path, ["good", "twitter2017", str(tmp_path / "good"), str(tmp_path / "base")], docs=page)
    assert proc.returncode != 0 and "no <!-- lever-seeds:start --> ... <!-- lever-seeds:end --> markers" in proc.stderr


def test_lever_seeds_refuses_a_seed_that_one_side_lacks(tmp_path: Path) -> None:
    rng = random.Random(4)
    posts = [Post(["a", "b"], ["B-PER", "O"], str(i), f"test.txt:{i}") for i in range(20)]
    for s in (1, 2):
        lever_run(tmp_path / "base" / f"seed{s}", rng, posts, 0.8, 0.1)
    lever_run(tmp_path / "lever" / "seed1", rng, posts, 0.8, 0.1)
    proc = run_lever_script(tmp_path, ["x", "twitter2017", str(tmp_path / "lever"), str(tmp_path / "base")], seeds=(1, 2))
    assert proc.returncode != 0 and "lever/seed2/final.json: no such run" in proc.stderr
