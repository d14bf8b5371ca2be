from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import make_tiny_encoder
from hamner.cli import main
from hamner.errors import ConfigError
from hamner.evaluation.metrics import entity_scores
from hamner.training.config import ExperimentConfig, load_config
from hamner.training.trainer import linear_warmup_decay, run_training

REPO = Path(__file__).resolve().parents[2]


def tiny_overrides(encoder: Path, data_root: Path, out: Path, epochs: int = 2) -> list[str]:
    return [
        f"model.encoder={encoder}",
        f"data.root={data_root}",
        f"train.output_dir={out}",
        f"train.epochs={epochs}",
        "train.batch_size=4",
        "train.lr_encoder=1e-3",
        "train.num_threads=1",
        "train.progress=false",
    ]


def test_config_overrides_are_typed(tmp_path: Path) -> None:
    cfg = load_config(
        REPO / "configs" / "text-only.yaml", ["train.seed=3", "train.lr_head=2e-3", "model.use_shape=false"]
    )
    assert cfg.name == "text-only" and cfg.train.seed == 3 and cfg.train.lr_head == 0.002 and not cfg.model.use_shape
    with pytest.raises(ConfigError, match="unknown keys \\['lr'\\]"):
        load_config(None, ["train.lr=1"])
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        load_config(None, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.epochs"])


def test_schedule_warms_up_then_decays() -> None:
    f = linear_warmup_decay(total_steps=10, warmup_steps=2)
    assert [round(f(s), 3) for s in range(10)] == [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]


def test_train_end_to_end_writes_a_complete_run(tiny_encoder: Path, tiny_data_root: Path, tmp_path: Path) -> None:
    args = ["train", "--config", str(REPO / "configs" / "text-only.yaml")]
    for o in tiny_overrides(tiny_encoder, tiny_data_root, tmp_path / "runs", epochs=3):
        args += ["--set", o]
    assert main(args) == 0
    run = tmp_path / "runs" / "twitter2017" / "text-only" / "seed1"
    assert {"config.yaml", "run.json", "metrics.jsonl", "final.json", "best", "train.log"} <= {
        p.name for p in run.iterdir()
    }
    assert "test (checkpoint of epoch" in (run / "train.log").read_text()
    meta = json.loads((run / "run.json").read_text())
    assert meta["seed"] == 1 and "commit" in meta["git"] and meta["packages"]["torch"] != "not installed"
    assert meta["precision"] == {"requested": "auto", "used": "fp32"} and meta["torch_threads"] == 1
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 3
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    final = json.loads((run / "final.json").read_text())
    best = max(records, key=lambda r: r["dev_f1"])
    assert final["best_epoch"] == best["epoch"] and final["dev_f1"] == best["dev_f1"]
    assert final["test"]["micro"]["n_gold"] == 10  # every gold entity of the test split, orphan I- included
    # the test predictions behind final.json: every post, untruncated, scoring exactly as reported
    from hamner.evaluation.predictions import read_predictions

    preds = read_predictions(run / "test_predictions.jsonl.gz")
    assert entity_scores([p.gold for p in preds], [p.pred for p in preds]).to_dict() == final["test"]
    # a run from before training wrote them gets the same file back from its best checkpoint
    written = (run / "test_predictions.jsonl.gz").read_bytes()
    (run / "test_predictions.jsonl.gz").unlink()
    cmd = [sys.executable, str(REPO / "scripts" / "remake_predictions.py"), str(run), "--data-root", str(tiny_data_root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and "= final.json" in proc.stdout, proc.stderr
    assert (run / "test_predictions.jsonl.gz").read_bytes() == written
    assert not (run / "last" / "state.pt").exists()
    # a second run into the same folder without --resume is refused
    assert main(args) == 2


def test_resume_continues_and_matches_an_uninterrupted_run(
    tiny_encoder: Path, tiny_data_root: Path, tmp_path: Path
) -> None:
    base = tiny_overrides(tiny_encoder, tiny_data_root, tmp_path / "a", epochs=3)
    full = run_training(load_config(None, base))
    cfg = load_config(None, [*base[:2], f"train.output_dir={tmp_path / 'b'}", *base[3:]])
    assert run_training(cfg, stop_after_epoch=1) == {}
    run_b = cfg.run_dir()
    assert (run_b / "last" / "state.pt").exists() and len((run_b / "metrics.jsonl").read_text().splitlines()) == 1
    # a kill after an epoch's metrics line but before its state was saved: the line is dropped on resume
    with (run_b / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps({"epoch": 2, "dev_f1": 0.99}) + "\n")
    resumed = run_training(load_config(None, [*base[:2], f"train.output_dir={tmp_path / 'b'}", *base[3:]]), resume=True)
    lines = (run_b / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]
    assert json.loads((run_b / "run.json").read_text())["resumed"][0]["after_epoch"] == 1
    assert resumed["test_f1"] == full["test_f1"] and resumed["best_epoch"] == full["best_epoch"]
    wa = load_file(str(tmp_path / "a" / "twitter2017" / "text-only" / "seed1" / "best" / "model.safetensors"))
    wb = load_file(str(run_b / "best" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tiny_encoder: Path, tiny_data_root: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    record = tmp_path / "batches"
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "hamner.cli",
        "train",
        "--config",
        str(REPO / "configs" / "text-only.yaml"),
    ]
    for o in tiny_overrides(tiny_encoder, tiny_data_root, tmp_path / "runs", epochs=2):
        cmd += ["--set", o]
    env = {**os.environ, "HAMNER_RECORD_BATCHES": str(record), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = json.loads((record / "rank0.json").read_text())
    rank1 = json.loads((record / "rank1.json").read_text())
    assert sorted(rank0) == sorted(rank1) == ["1", "2"]
    for epoch in ("1", "2"):
        seen0 = [i for b in rank0[epoch] for i in b]
        seen1 = [i for b in rank1[epoch] for i in b]
        assert len(seen0) == len(seen1) == 12
        assert not set(seen0) & set(seen1)  # each rank trained on its own half of the 24 posts
        assert set(seen0) | set(seen1) == set(range(24))
    assert rank0["1"] != rank0["2"]  # reshuffled every epoch
    run = tmp_path / "runs" / "twitter2017" / "text-only" / "seed1"
    assert len(list(run.glob("best/model.safetensors"))) == 1 and (run / "final.json").exists()
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((run / "run.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_torchrun_hamlearning_with_posts_without_images(tmp_path: Path) -> None:
    """DDP with a multimodal model: batches without images leave the pixel branches without gradient."""
    from synthetic import WORDS, build_task

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    task = build_task(tmp_path / "task", n_train=32, n_dev=8, n_test=8, without_image=2)
    encoder = make_tiny_encoder(tmp_path / "encoder", words=WORDS)
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "hamner.cli", "train", "--config", str(REPO / "configs" / "hamlearning.yaml")]
    for o in (
        f"model.encoder={encoder}", f"data.root={task['root']}", f"data.features={task['features']}",
        f"train.output_dir={tmp_path / 'runs'}", "train.epochs=1", "train.batch_size=2", "train.progress=false",
        "model.num_heads=4", "model.shape_dim=8", "model.max_length=32", "model.max_semantic_subtokens=16",
    ):  # fmt: skip
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HAMNER_DATA_ROOT": ""}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((tmp_path / "runs" / "twitter2017" / "hamlearning" / "seed1" / "final.json").read_text())
    assert final["run"]["world_size"] == 2 and set(final["relevance"]) == {"pixels", "none"}


def test_train_without_data_root_says_how_to_give_one(
    tiny_encoder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HAMNER_DATA_ROOT", raising=False)
    args = ["train", "--config", str(REPO / "configs" / "text-only.yaml"), "--set", f"train.output_dir={tmp_path}"]
    assert main([*args, "--set", f"model.encoder={tiny_encoder}"]) == 2
    assert "no data root: pass --data-root DIR" in capsys.readouterr().err


def synthetic_task_overrides(tmp_path: Path, epochs: int) -> list[str]:
    """A tiny HamLearning run on the synthetic task (posts with images, three without), in ``tmp_path``."""
    from synthetic import WORDS, build_task

    task = build_task(tmp_path / "task", n_train=24, n_dev=8, n_test=8, without_image=3)
    encoder = make_tiny_encoder(tmp_path / "encoder", words=WORDS)
    return [
        f"model.encoder={encoder}", f"data.root={task['root']}", f"data.features={task['features']}",
        f"train.output_dir={tmp_path / 'runs'}", f"train.epochs={epochs}", "train.batch_size=8", "train.num_threads=1",
        "train.progress=false", "model.num_heads=4", "model.shape_dim=8", "model.max_length=32",
        "model.max_semantic_subtokens=16",
    ]  # fmt: skip


def test_cross_view_alignment_trains_both_views_and_logs_their_losses(tmp_path: Path) -> None:
    overrides = [*synthetic_task_overrides(tmp_path, epochs=2), "model.cross_view_weight=1.0"]
    cfg = load_config(REPO / "configs" / "hamlearning.yaml", overrides)
    final = run_training(cfg)
    records = [json.loads(x) for x in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert r["train_text_tag_loss"] > 0 and r["train_cross_view_loss"] > 0
        parts = r["train_tag_loss"] + 0.5 * r["train_relevance_loss"] + r["train_text_tag_loss"] + r["train_cross_view_loss"]
        assert r["train_loss"] == pytest.approx(parts, rel=1e-4)  # every part is in the loss, KL with weight 1
    # the checkpoint records how it was trained, reloads on its own, and tags every test post
    from hamner.models.tagger import TextTagger

    model = TextTagger.from_pretrained(cfg.run_dir() / "best")
    assert model.config.cross_view_weight == 1.0
    assert final["test"]["micro"]["n_gold"] == 8  # one entity per synthetic post, none dropped


def test_image_word_masking_changes_training_only_and_is_recorded(tmp_path: Path) -> None:
    from synthetic import WORDS, build_task

    task = build_task(tmp_path / "task", n_train=24, n_dev=8, n_test=8, without_image=3)
    encoder = make_tiny_encoder(tmp_path / "encoder", words=WORDS)

    def train(p: float, out: str) -> tuple[dict[str, Any], list[dict[str, Any]], ExperimentConfig]:
        overrides = [
            f"model.encoder={encoder}", f"data.root={task['root']}", f"data.features={task['features']}",
            f"train.output_dir={tmp_path / out}", "train.epochs=1", "train.batch_size=8", "train.num_threads=1",
            "train.progress=false", "model.num_heads=4", "model.shape_dim=8", "model.max_length=32",
            "model.max_semantic_subtokens=16", "train.visual_dropout=0.0", f"train.image_word_dropout={p}",
        ]  # fmt: skip
        cfg = load_config(REPO / "configs" / "hamlearning.yaml", overrides)
        final = run_training(cfg)
        return final, [json.loads(x) for x in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()], cfg

    plain, plain_metrics, _ = train(0.0, "plain")
    masked, masked_metrics, cfg = train(0.5, "masked")
    assert masked_metrics[0]["train_loss"] != plain_metrics[0]["train_loss"]  # the masking reached the batches
    written = yaml.safe_load((cfg.run_dir() / "config.yaml").read_text())
    assert written["train"]["image_word_dropout"] == 0.5  # the run says how it was trained
    assert masked["test"]["micro"]["n_gold"] == plain["test"]["micro"]["n_gold"] == 8
    with pytest.raises(ConfigError, match="image_word_dropout must be in"):
        load_config(REPO / "configs" / "hamlearning.yaml", ["train.image_word_dropout=1.0"])


def test_char_channel_trains_and_its_checkpoint_tags(tiny_encoder: Path, tiny_data_root: Path, tmp_path: Path) -> None:
    from hamner.models.tagger import TextTagger

    args = ["train", "--config", str(REPO / "configs" / "text-only.yaml"), "--set", "model.use_chars=true"]
    for o in tiny_overrides(tiny_encoder, tiny_data_root, tmp_path / "runs", epochs=1):
        args += ["--set", o]
    assert main(args) == 0
    run = tmp_path / "runs" / "twitter2017" / "text-only" / "seed1"
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["use_chars"] is True
    model = TextTagger.from_pretrained(run / "best")
    assert model.char_cnn is not None and model.word_encoder.max_word_chars == 24
    assert len(model.predict([["Obama", "in", "Paris"]])[0]) == 3


def test_entity_type_channel_trains_and_its_checkpoint_tags(
    tiny_encoder: Path, tiny_data_root: Path, tmp_path: Path, fake_spacy: Any
) -> None:
    from hamner.models.tagger import TextTagger

    args = ["train", "--config", str(REPO / "configs" / "text-only.yaml"), "--set", "model.use_entity_types=true"]
    for o in tiny_overrides(tiny_encoder, tiny_data_root, tmp_path / "runs", epochs=1):
        args += ["--set", o]
    assert main(args) == 0
    # the 24 training posts went to spaCy in one call, before any dev or test post
    assert len(fake_spacy.calls[0]) == 24
    run = tmp_path / "runs" / "twitter2017" / "text-only" / "seed1"
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["use_entity_types"] is True
    model = TextTagger.from_pretrained(run / "best")
    assert model.entity_emb is not None and model.word_encoder.entity_types
    assert len(model.predict([["Obama", "in", "Paris"]])[0]) == 3


def test_distillation_from_one_teacher_and_an_ensemble(tiny_encoder: Path, tiny_data_root: Path, tmp_path: Path) -> None:
    """Soft targets from a teacher's CRF marginals: weight 0 leaves training bit for bit as without
    a teacher (loading it draws no random number); weight 1 adds the KL to the loss and pulls the
    student towards the teacher; an ensemble of two checkpoints teaches too; a wrong teacher is refused."""
    base = tiny_overrides(tiny_encoder, tiny_data_root, tmp_path / "teacher", epochs=2)
    run_training(load_config(None, base))
    teacher = tmp_path / "teacher" / "twitter2017" / "text-only" / "seed1" / "best"
    run_training(load_config(None, [*base, "train.seed=2"]))
    teacher2 = tmp_path / "teacher" / "twitter2017" / "text-only" / "seed2" / "best"

    def student(name: str, *extra: str) -> Path:
        cfg = load_config(None, [*tiny_overrides(tiny_encoder, tiny_data_root, tmp_path / name, epochs=2), "train.seed=3", *extra])
        run_training(cfg)
        return cfg.run_dir()

    plain = student("plain")
    zero = student("zero", f"train.distill_from=[{teacher}]", "train.distill_weight=0")
    wp, wz = load_file(str(plain / "best" / "model.safetensors")), load_file(str(zero / "best" / "model.safetensors"))
    assert all(torch.equal(wp[k], wz[k]) for k in wp)
    one = student("one", f"train.distill_from=[{teacher}]", "train.distill_weight=1.0")
    records = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        assert r["train_distill_loss"] > 0
        assert r["train_loss"] == pytest.approx(r["train_tag_loss"] + r["train_distill_loss"], rel=1e-4)
    assert records[1]["train_distill_loss"] < records[0]["train_distill_loss"]
    ens = student("ens", f"train.distill_from=[{teacher}, {teacher2}]", "train.distill_weight=1.0")
    assert (ens / "best" / "model.safetensors").exists()
    assert yaml.safe_load((ens / "config.yaml").read_text())["train"]["distill_from"] == [str(teacher), str(teacher2)]
    with pytest.raises(ConfigError, match="distill_weight must be >= 0"):
        load_config(None, ["train.distill_weight=-1"])


@pytest.mark.slow
def test_distillation_from_a_hamlearning_teacher_reads_its_feature_cache(tmp_path: Path) -> None:
    overrides = synthetic_task_overrides(tmp_path, epochs=1)
    teacher = load_config(REPO / "configs" / "hamlearning.yaml", overrides)
    run_training(teacher)
    cfg = load_config(REPO / "configs" / "hamlearning.yaml", [*overrides, "train.seed=2", f"train.distill_from=[{teacher.run_dir() / 'best'}]"])
    run_training(cfg)
    record = json.loads((cfg.run_dir() / "metrics.jsonl").read_text().splitlines()[0])
    assert record["train_distill_loss"] > 0 and record["train_tag_loss"] > 0
    # a text-only student of a multimodal teacher has no feature cache for it
    text = load_config(REPO / "configs" / "text-only.yaml", [*overrides, f"train.distill_from=[{teacher.run_dir() / 'best'}]"])
    with pytest.raises(ConfigError, match="a multimodal teacher needs this run's feature cache"):
        run_training(text)


def test_layer_wise_learning_rate_decay_splits_the_encoder_by_depth() -> None:
    from hamner.models.config import TaggerConfig
    from hamner.models.tagger import TextTagger
    from hamner.training.trainer import build_optimizer, encoder_depths

    names = ["e.embeddings.word_embeddings.weight", "e.encoder.layer.0.attention.q.weight", "e.encoder.layer.1.output.dense.bias", "e.pooler.dense.weight"]
    assert encoder_depths(names) == {names[0]: 2, names[1]: 1, names[2]: 0, names[3]: 0}
    encoder = make_tiny_encoder(Path(__import__("tempfile").mkdtemp()) / "enc", layers=2)
    model = TextTagger.from_config(TaggerConfig(encoder=str(encoder)))
    plain = build_optimizer(model, load_config(None, []))
    assert [g["name"] for g in plain.param_groups][:2] == ["encoder", "encoder_no_decay"]
    decayed = build_optimizer(model, load_config(None, ["train.lr_layer_decay=0.5", "train.lr_encoder=1e-4"]))
    by_name = {g["name"]: g for g in decayed.param_groups}
    # the top block at lr_encoder (first, as metrics.jsonl logs it), each block below halved, then the embeddings
    assert decayed.param_groups[0]["name"] == "encoder_depth0" and decayed.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert by_name["encoder_depth1"]["lr"] == pytest.approx(5e-5) and by_name["encoder_no_decay_depth2"]["lr"] == pytest.approx(2.5e-5)
    assert by_name["encoder_no_decay_depth2"]["weight_decay"] == 0.0 and by_name["head"]["lr"] == plain.param_groups[2]["lr"]
    # every parameter in exactly one group, as without decay
    count = lambda opt: sorted(id(p) for g in opt.param_groups for p in g["params"])  # noqa: E731
    assert count(decayed) == count(plain)
    with pytest.raises(ConfigError, match="lr_layer_decay must be in"):
        load_config(None, ["train.lr_layer_decay=0"])
