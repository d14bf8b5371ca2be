"""scripts/cross_corpus.py (each single-corpus model on the other corpus's test split, PER LOC ORG) and
scripts/btc_joint_collect.py (the BTC + Twitter-2017 runs' small files into results/, and the rule
comparisons through scripts/lever_seeds.py), on tiny models and made-up run folders."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import shlex
import statistics
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import TINY_POSTS, make_tiny_encoder, write_conll

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def data_root(root: Path) -> Path:
    """A Twitter-2017-shaped test split (IMGID lines, MISC annotated) and a BTC-shaped one (plain CoNLL,
    PER LOC ORG only: the tiny posts with their MISC left unannotated and two more words each, the
    corpus tests/training/test_joint.py shows the tiny model tags a MISC in)."""
    write_conll(root / "twitter2017" / "test.txt", [(f"IMGID:{i}", rows) for i, (_, rows) in enumerate(TINY_POSTS)])
    more = [("right", "O"), ("now", "O")]
    posts = [[(w, "O" if t.endswith("MISC") else t) for w, t in rows + more] for _, rows in TINY_POSTS]
    (root / "btc").mkdir(parents=True)
    (root / "btc" / "test.txt").write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in rows if w.strip()) for rows in posts) + "\n\n")
    return root


def three_type_checkpoint(base: Path) -> Path:
    """An (untrained) BTC-like model: labels PER LOC ORG, no MISC."""
    import torch

    from hamner.data.labels import bio_labels
    from hamner.models.config import TaggerConfig
    from hamner.models.tagger import TextTagger

    torch.manual_seed(0)
    config = TaggerConfig(encoder=str(make_tiny_encoder(base / "encoder")), labels=bio_labels(("PER", "LOC", "ORG")), max_length=64)
    return TextTagger.from_config(config).save_pretrained(base / "ckpt", extra={"trained_on": "btc", "type_map": {}})


def fake_runs(folder: Path, checkpoint: Path, seeds: list[int], commit: str = "abc123") -> Path:
    """``folder/seed<k>/best`` (a link to ``checkpoint``) with a run.json, as a training run leaves them."""
    for seed in seeds:
        run = folder / f"seed{seed}"
        run.mkdir(parents=True)
        os.symlink(checkpoint, run / "best", target_is_directory=True)
        (run / "run.json").write_text(json.dumps({"seed": seed, "git": {"commit": commit, "dirty": False}}))
        per_type = {t: {"f1": 0.5} for t in ("PER", "LOC", "ORG", "MISC")}
        (run / "final.json").write_text(json.dumps({"test_f1": 0.5, "test": {"per_type": per_type}}))
    return folder


def test_each_model_is_scored_on_both_test_splits_as_its_command_prints(
    trained_tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from hamner.cli import main as hamner

    script = load_script("cross_corpus")
    root = data_root(tmp_path / "data")
    btc = fake_runs(tmp_path / "runs" / "btc", three_type_checkpoint(tmp_path / "btc-model"), [1, 2])
    t17 = fake_runs(tmp_path / "runs" / "t17", trained_tiny_model, [1, 2], commit="def456")
    # seed 1's final.json says another F1 on the same split and types than evaluate finds: a warning
    per_type = {t: {"f1": 0.1} for t in ("PER", "LOC", "ORG")}
    (btc / "seed1" / "final.json").write_text(json.dumps({"test_f1": 0.123, "test": {"per_type": per_type}}))
    out = tmp_path / "out" / "cross_corpus.csv"
    argv = ["--btc-runs", str(btc), "--twitter2017-runs", str(t17), "--seeds", "1", "2", "--data-root", str(root),
            "--out", str(out), "--allow-dirty"]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert script.main(argv) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    got = {(r["trained_on"], r["tested_on"], r["seed"]): r for r in rows}
    assert len(rows) == 8 and set(got) == {(a, b, s) for a in ("btc", "twitter2017") for b in ("btc", "twitter2017") for s in ("1", "2")}
    assert caplog.text.count("final.json says") == 1 and "final.json says 0.123000 on the same types" in caplog.text
    assert got["btc", "btc", "1"]["run_test_f1"] == "0.123000"
    # the type map: MISC dropped everywhere but for the BTC model on BTC's own test split, as the protocol says
    assert "--type-map" not in got["btc", "btc", "1"]["command"]
    assert all("--type-map MISC=O" in r["command"] for k, r in got.items() if k[:2] != ("btc", "btc"))
    # a row is what its command prints
    for key in [("btc", "btc", "1"), ("btc", "twitter2017", "1"), ("twitter2017", "twitter2017", "1"), ("twitter2017", "btc", "1")]:
        row = got[key]
        assert row["command"].startswith("hamner evaluate --model ") and row["command"].endswith(" --json")
        assert hamner(shlex.split(row["command"])[1:]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert set(answer["per_type"]) == {"PER", "LOC", "ORG"} and row["types"] == "PER LOC ORG"
        assert float(row["micro_f1"]) == pytest.approx(answer["micro"]["f1"], abs=1e-6)
        assert int(row["n_gold"]) == answer["micro"]["n_gold"] and int(row["n_pred"]) == answer["micro"]["n_pred"]
        assert all(float(row[f"f1_{t}"]) == pytest.approx(answer["per_type"][t]["f1"], abs=1e-6) for t in ("PER", "LOC", "ORG"))
        assert int(row["predictions_not_scored"]) == sum(answer.get("not_scored", {}).values())
        assert row["kind"] == ("in-corpus" if key[0] == key[1] else "cross-corpus")
        assert row["run_commit"] == ("abc123" if key[0] == "btc" else "def456") and row["machine"].startswith("cpu")
    # the Twitter-2017 model tags a MISC in the BTC posts: left out of the scores, and counted
    misc = got["twitter2017", "btc", "1"]
    assert int(misc["predictions_not_scored"]) > 0 and misc["not_scored"] == f"MISC={misc['predictions_not_scored']}"
    # the same command without --json prints the same scores as a table (evaluate's two outputs share one computation)
    assert hamner(shlex.split(misc["command"])[1:-1]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{misc['gold']} test: 6 posts, entity-level (conlleval) scores in %"
    assert lines[1] == "not scored: MISC (dropped from the gold and from the predictions)"
    assert lines[-1].split()[:4] == ["micro", *(f"{100 * float(misc[c]):.2f}" for c in ("micro_precision", "micro_recall", "micro_f1"))]
    assert got["btc", "twitter2017", "1"]["predictions_not_scored"] == "0"  # a three-type model has no MISC to leave out
    # the summary: per direction, paired over the seeds (two copies of one model: no spread)
    summary = {r["trained_on"]: r for r in csv.DictReader(out.with_name("cross_corpus_summary.csv").open())}
    assert set(summary) == {"btc", "twitter2017"} and summary["btc"]["tested_on"] == "twitter2017"
    for trained_on, other in (("btc", "twitter2017"), ("twitter2017", "btc")):
        own, cross = float(got[trained_on, trained_on, "1"]["micro_f1"]), float(got[trained_on, other, "1"]["micro_f1"])
        s = summary[trained_on]
        assert float(s["drop_mean"]) == pytest.approx(own - cross, abs=1e-4) and s["drop_std"] == "0.0000"
        assert s["seeds"] == "1 2" and float(s["in_corpus_f1_mean"]) == pytest.approx(own, abs=1e-4)
    table = out.with_name("cross_corpus_summary.md").read_text()
    assert "| BTC | Twitter-2017 | 1 2 |" in table and "| Twitter-2017 | BTC | 1 2 |" in table and table.splitlines()[0] in printed
    assert "scripts/cross_corpus.py --btc-runs" in table


def row(trained_on: str, tested_on: str, seed: int, f1: float, not_scored: int = 0) -> dict[str, Any]:
    return {"trained_on": trained_on, "tested_on": tested_on, "seed": seed, "micro_f1": f1, "f1_PER": f1 + 0.1,
            "f1_LOC": f1, "f1_ORG": f1 - 0.1, "predictions_not_scored": not_scored}  # fmt: skip


def test_the_table_is_the_summary_of_an_existing_csv_with_mean_and_sample_std(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("cross_corpus")
    own, cross = [0.78, 0.80, 0.79], [0.50, 0.55, 0.53]
    rows = [row("btc", "btc", s, f) for s, f in zip((1, 2, 3), own, strict=True)]
    rows += [row("btc", "twitter2017", s, f) for s, f in zip((1, 2, 3), cross, strict=True)]
    rows += [row("twitter2017", "btc", 1, 0.6, not_scored=40)]  # no in-corpus reference of its seed: no summary row
    out = tmp_path / "cross.csv"
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert script.main(["--table", "--out", str(out)]) == 0  # no run folders, no data: nothing is scored
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # the header, its rule and the one direction with both scores
    drops = [a - b for a, b in zip(own, cross, strict=True)]
    want = (
        f"| BTC | Twitter-2017 | 1 2 3 | 79.00 ± {100 * statistics.stdev(own):.2f} | "
        f"{100 * statistics.mean(cross):.2f} ± {100 * statistics.stdev(cross):.2f} | "
        f"{100 * statistics.mean(drops):.2f} ± {100 * statistics.stdev(drops):.2f} | "
        f"{100 * statistics.mean(drops):.2f} / {100 * statistics.mean(drops):.2f} / {100 * statistics.mean(drops):.2f} | 0.0 |"
    )
    assert lines[2] == want


def test_a_missing_seed_a_foreign_label_set_and_a_dirty_tree_are_refused(
    trained_tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load_script("cross_corpus")
    root = data_root(tmp_path / "data")
    t17 = fake_runs(tmp_path / "runs" / "t17", trained_tiny_model, [1, 2])
    base = ["--twitter2017-runs", str(t17), "--data-root", str(root), "--out", str(tmp_path / "x.csv"), "--allow-dirty"]
    with pytest.raises(SystemExit, match=r"t17/seed3/best: no checkpoint \(BTC seed 3"):
        script.main(["--btc-runs", str(t17), "--seeds", "1", "2", "3", *base])
    (t17 / "seed2" / "final.json").unlink()  # still training: its best/ may still change
    with pytest.raises(SystemExit, match=r"t17/seed2: no final.json \(BTC seed 2 has not finished"):
        script.main(["--btc-runs", str(t17), "--seeds", "1", "2", *base])
    # a four-type model given as the BTC one: BTC scored as it is would count its MISC predictions
    with pytest.raises(SystemExit, match=r"scored types \['LOC', 'MISC', 'ORG', 'PER'\], expected \['PER', 'LOC', 'ORG'\]"):
        script.main(["--btc-runs", str(t17), "--seeds", "1", *base])
    assert not (tmp_path / "x.csv").exists()
    monkeypatch.setattr(script, "git_revision", lambda: {"commit": "abc", "dirty": True})
    with pytest.raises(SystemExit, match="uncommitted changes: commit them first"):
        script.main(["--btc-runs", str(t17), "--seeds", "1", *base[:-1]])


# --- scripts/btc_joint_collect.py ---------------------------------------------------------------


def final(dev: float, test: float, misc: float | None = 0.5, **extra: Any) -> str:
    per_type = {"PER": {"f1": test}, **({"MISC": {"f1": misc}} if misc is not None else {})}
    return json.dumps({"best_epoch": 2, "dev_f1": dev, "test_f1": test, "test": {"per_type": per_type}, **extra})


def fake_run(run: Path, dev: float, test: float, misc: float | None = 0.5, commit: str = "9277e4b9f430", done: bool = True) -> Path:
    """A run folder with its small files and its weights (which must never be collected)."""
    (run / "best").mkdir(parents=True)
    (run / "best" / "model.safetensors").write_bytes(b"weights")
    (run / "last").mkdir()
    (run / "last" / "state.pt").write_bytes(b"state")
    (run / "run.json").write_text(json.dumps({"git": {"commit": commit, "dirty": False}}))
    (run / "config.yaml").write_text("data: {}\n")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (run / "train.log").write_text("log\n")
    if done:
        (run / "final.json").write_text(final(dev, test, misc))
    return run


def fake_protocol(runs: Path, seeds: list[int], unfinished: tuple[str, int] | None = None, commit: str = "9277e4b9f430") -> None:
    """The three configs' runs: the joint one gains 0.5 dev on Twitter-2017 and 0.1 on BTC."""
    for seed in seeds:
        d = seed / 100
        joint = fake_run(runs / "twitter2017/btc-twitter2017-joint-text-only" / f"seed{seed}", 0.855 + d, 0.70, misc=0.40,
                         commit=commit, done=unfinished != ("joint", seed))  # fmt: skip
        side = joint / "joint" / "btc"
        (side / "best").mkdir(parents=True)
        (side / "best" / "model.safetensors").write_bytes(b"weights")
        if unfinished != ("joint", seed):
            (side / "final.json").write_text(final(0.786 + d, 0.77, misc=None, predictions_not_scored={"MISC": 3}))
        fake_run(runs / "btc/btc-text-only" / f"seed{seed}", 0.785 + d, 0.78, misc=None, commit=commit,
                 done=unfinished != ("btc", seed))  # fmt: skip
        fake_run(runs / "twitter2017/text-only" / f"seed{seed}", 0.850 + d, 0.69, misc=0.45, commit=commit,
                 done=unfinished != ("twitter2017", seed))  # fmt: skip


def test_collect_copies_the_finished_runs_small_files_never_their_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("btc_joint_collect")
    runs, out = tmp_path / "runs", tmp_path / "out"
    fake_protocol(runs, [1, 2], unfinished=("twitter2017", 2))
    assert script.main(["--runs", str(runs), "--out", str(out), "--seeds", "1", "2", "--commit", "9277e4b"]) == 0
    printed = capsys.readouterr().out
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    small = ["config.yaml", "final.json", "metrics.jsonl", "run.json"]
    want = [f"{name}/seed{s}/{f}" for name in ("btc", "joint") for s in (1, 2) for f in small]
    want += ["twitter2017/seed1/" + f for f in small] + [f"joint/seed{s}/joint/btc/final.json" for s in (1, 2)]
    assert files == sorted(want)  # no best/, last/ or train.log; Twitter-2017 seed 2 is not finished
    assert f"{runs}/twitter2017/text-only/seed2 (not finished: no final.json)" in printed
    assert "seed 1 btc          best epoch 2: dev 79.60, test 77.00 (predictions not scored: MISC 3)" in printed
    # the MISC comparison on the seeds both have
    assert "Twitter-2017 MISC test F1 seed 1: joint 40.00, single-corpus 45.00 (-5.00)" in printed
    assert "mean over seeds 1: joint 40.00, single-corpus 45.00 (-5.00)" in printed
    assert f"--lever '+ Twitter-2017 (joint, rule 2)' btc '{out}/joint/seed{{seed}}/joint/btc' {out}/btc" in printed
    assert "# not yet: some runs are not collected" in printed
    with pytest.raises(SystemExit, match="not every run of every config is collected yet"):
        script.main(["--runs", str(runs), "--out", str(out), "--seeds", "1", "2", "--compare"])
    # collected again: the same bytes are left; other bytes (a rerun) are refused unless --replace
    (runs / "btc/btc-text-only/seed1/final.json").write_text(final(0.7, 0.7, misc=None))
    with pytest.raises(SystemExit, match=r"(?s)already collected with other contents .*btc/seed1/final.json"):
        script.main(["--runs", str(runs), "--out", str(out), "--seeds", "1", "2"])
    assert json.loads((out / "btc/seed1/final.json").read_text())["dev_f1"] == pytest.approx(0.795)
    assert script.main(["--runs", str(runs), "--out", str(out), "--seeds", "1", "2", "--replace"]) == 0
    assert json.loads((out / "btc/seed1/final.json").read_text())["dev_f1"] == 0.7


def test_collect_refuses_a_run_of_another_commit(tmp_path: Path) -> None:
    script = load_script("btc_joint_collect")
    runs = tmp_path / "runs"
    fake_protocol(runs, [1])
    (runs / "btc/btc-text-only/seed1/run.json").write_text(json.dumps({"git": {"commit": "0123abc", "dirty": False}}))
    with pytest.raises(SystemExit, match=r"btc-text-only/seed1/run.json: trained at 0123abc"):
        script.main(["--runs", str(runs), "--out", str(tmp_path / "out"), "--seeds", "1", "--commit", "9277e4b"])
    assert not (tmp_path / "out").exists()


def test_collect_compare_decides_the_rules_through_lever_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("btc_joint_collect")
    runs, out = tmp_path / "runs", tmp_path / "out"
    fake_protocol(runs, [1, 2])
    argv = ["--runs", str(runs), "--out", str(out), "--seeds", "1", "2", "--compare", "--allow-dirty"]
    assert script.main(argv) == 0
    assert "# not yet" not in capsys.readouterr().out
    rules = {r["dataset"]: r for r in csv.DictReader((out / "rules.csv").open())}
    # rule 1: Twitter-2017 dev +0.5 (met); rule 2: BTC dev +0.1 (not met), each against its own single-corpus runs
    assert float(rules["twitter2017"]["dev_gap"]) == pytest.approx(0.005) and rules["twitter2017"]["rule_met"] == "True"
    assert float(rules["btc"]["dev_gap"]) == pytest.approx(0.001) and rules["btc"]["rule_met"] == "False"
    assert rules["btc"]["lever_runs"] == f"{out}/joint/seed{{seed}}/joint/btc" and rules["btc"]["baseline_runs"] == f"{out}/btc"
