"""Encoders saved in fp16 or bf16 (as many hub checkpoints are) train exactly like the fp32 save.

transformers 5 loads a checkpoint in the dtype it was saved in; before hamner upcast the encoder,
an fp16 MiniLM trained ``text-only`` silently to F1 0 and crashed ``hamlearning`` with a dtype
mismatch. The three saves here hold the same values (random weights rounded to bf16, and tiny ones
set to 0, so that fp16 and bf16 both store them exactly), so after the upcast to fp32 master
weights the loss curves must agree; the tolerance is 1e-6 (they are in fact identical).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from conftest import make_tiny_encoder
from hamner.data.datasets import load_split
from hamner.models.tagger import TextTagger
from hamner.training.config import load_config
from hamner.training.trainer import run_training, visual_inputs
from hamner.vision.cache import FeatureStore
from synthetic import WORDS, build_task

ROOT = Path(__file__).resolve().parents[2]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE = 1e-6


def _saves(base: Path) -> dict[str, Path]:
    """One random tiny BERT saved three times, in fp32, fp16 and bf16, with the same values."""
    from transformers import AutoModel, AutoTokenizer

    src = make_tiny_encoder(base / "src", words=WORDS)
    model = AutoModel.from_pretrained(src)
    with torch.no_grad():
        for p in model.parameters():
            q = p.to(torch.bfloat16).float()
            p.copy_(q.masked_fill(q.abs() < 2.0**-14, 0.0))  # below fp16's smallest normal: 0
    out = {}
    for name, dtype in DTYPES.items():
        model.to(dtype).save_pretrained(base / name)
        AutoTokenizer.from_pretrained(src).save_pretrained(base / name)
        with safe_open(str(base / name / "model.safetensors"), "pt") as fh:
            assert fh.get_tensor(next(iter(fh.keys()))).dtype == dtype  # really saved in that dtype
        out[name] = base / name
    return out


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("dtypes")
    return {"task": build_task(base, n_train=32, n_dev=8, n_test=8), "encoders": _saves(base / "encoders"), "base": base}


def _train(config: str, task: dict[str, Any], dtype: str) -> dict[str, Any]:
    t = task["task"]
    cfg = load_config(ROOT / "configs" / config, [
        f"model.encoder={task['encoders'][dtype]}", f"data.root={t['root']}", f"data.features={t['features']}",
        f"train.output_dir={task['base'] / 'runs' / dtype}", "train.epochs=2", "train.batch_size=8",
        "train.lr_encoder=1e-3", "train.num_threads=1", "train.progress=false", "model.num_heads=4",
        "model.shape_dim=8", "model.max_length=32", "model.max_semantic_subtokens=16",
    ])  # fmt: skip
    final = run_training(cfg)
    run = cfg.run_dir()
    final["losses"] = [json.loads(x)["train_loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    final["run_dir"] = run
    return final


@pytest.mark.parametrize("config", ["text-only.yaml", "hamlearning.yaml"])
def test_fp16_and_bf16_saves_train_like_the_fp32_save(task: dict[str, Any], config: str) -> None:
    runs = {dtype: _train(config, task, dtype) for dtype in DTYPES}
    ref = runs["fp32"]["losses"]
    assert len(ref) == 2 and all(x == x for x in ref)  # two epochs, no NaN
    for dtype in ("fp16", "bf16"):
        got = runs[dtype]["losses"]
        assert max(abs(a - b) for a, b in zip(got, ref, strict=True)) <= TOLERANCE, (dtype, got, ref)
        assert abs(runs[dtype]["test_f1"] - runs["fp32"]["test_f1"]) <= TOLERANCE
    # the checkpoint trained from the fp16 save is fp32 throughout, says so, and round-trips
    best = runs["fp16"]["run_dir"] / "best"
    assert json.loads((best / "encoder" / "config.json").read_text()).get("dtype", "float32") == "float32"
    model = TextTagger.from_pretrained(best)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    model.save_pretrained(task["base"] / "again" / config)
    again = TextTagger.from_pretrained(task["base"] / "again" / config)
    posts = load_split("twitter2017", "test", str(task["task"]["root"]))
    store = FeatureStore.open(task["task"]["features"]) if model.config.multimodal else None
    visuals, words = visual_inputs(posts, store), [p.words for p in posts]
    a = model.run(words, visuals)
    b = again.run(words, visuals)
    assert all(torch.equal(x.emissions, y.emissions) and x.tags == y.tags for x, y in zip(a, b, strict=True))
