"""Training on a corpus of one's own: six entity types from JSONL posts (some with images), by path."""

from __future__ import annotations

import json
import random
from pathlib import Path

from conftest import make_tiny_encoder
from hamner.cli import main
from hamner.models.tagger import TextTagger
from six_types import NAMES, REPO, train_six_type_model

TYPES = ["BRAND", "DRUG", "EVENT", "LOC", "ORG", "PER"]
LABELS = ["O", *[f"{p}-{t}" for t in TYPES for p in "BI"]]


def train(config: str, overrides: list[str]) -> int:
    """``hamner train --config configs/<config>.yaml --set ...`` (one thread, no progress bars)."""
    args = ["train", "--config", str(REPO / "configs" / f"{config}.yaml")]
    for o in [*overrides, "train.num_threads=1", "train.progress=false", "model.use_chars=false", "model.max_length=32"]:
        args += ["--set", o]
    return main(args)


def test_a_six_type_jsonl_corpus_trains_tags_and_evaluates(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    encoder = make_tiny_encoder(tmp_path / "enc", words=("nike", "drug"))
    best = train_six_type_model(tmp_path, encoder)
    corpus, run = tmp_path / "brands", best.parent
    model = TextTagger.from_pretrained(best)
    types = TYPES
    assert model.config.labels == LABELS
    meta = json.loads((best / "hamner_config.json").read_text())
    assert meta["trained_on"] == "brands" and meta["type_map"] == {}
    final = json.loads((run / "final.json").read_text())
    assert set(final["test"]["per_type"]) <= set(types) and final["test"]["micro"]["n_gold"] == 12
    assert "BRAND" in (best / "README.md").read_text()
    capsys.readouterr()
    assert main(["tag", "--model", str(best), "--text", "the nike today"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert all(e["type"] in types for e in got["entities"])
    assert main(["evaluate", "--model", str(best), "--dataset", str(corpus), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"] == final["test"]["micro"]


def six_type_multimodal_corpus(folder: Path, n_train: int = 48, seed: int = 0) -> Path:
    """:func:`six_type_corpus` with real pictures: every third post has an image drawn with PIL
    (two posts share one, the rest their own), every fourth a caption, the others neither."""
    from fakes import scene

    rng = random.Random(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", 12), ("test", 12)):
        lines = []
        for i in range(n):
            typ = list(NAMES)[i % len(NAMES)]
            name = rng.choice(NAMES[typ])
            rec: dict[str, object] = {
                "id": f"{split}{i}",
                "text": f"the {name} today",
                "entities": [{"start": 4, "end": 4 + len(name), "type": typ}],
            }
            if i % 3 == 0:
                image = f"img/{split}{i // 6}.png"  # posts 0 and 3 of every six share a picture
                if not (folder / image).exists():
                    scene(64, 48, red=(4, 4, 4 + 8 * (i % 5 + 1), 20), blue=None if i % 2 else (40, 30, 60, 46)).save(folder / image)
                rec["image"] = image
            if i % 4 == 0:
                rec["caption"] = "a red stop sign"
            lines.append(json.dumps(rec))
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


FAKE_VISION_SET = ["backbone=fakes:tiny_backbone", "detector=fakes:ColourDetector"]


def test_a_six_type_corpus_with_some_images_trains_a_hamlearning_model_that_exports_and_tags(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from hamner.vision.cache import KEY_SCHEME_CONTENT, FeatureStore

    corpus = six_type_multimodal_corpus(tmp_path / "brands")
    features = tmp_path / "features"
    pre = ["preprocess", "--corpus", str(corpus), "--out", str(features), "--no-progress", "--threads", "1"]
    for o in FAKE_VISION_SET:
        pre += ["--set", o]
    assert main(pre) == 0
    capsys.readouterr()
    store = FeatureStore.open(features)
    assert store.key_scheme == KEY_SCHEME_CONTENT
    status = {store.record(k)["status"] for k in store.keys()}
    assert status == {"ok", "no_image"}  # pictures, and posts with a caption or nothing at all
    # train (48) + dev (12) + test (12) posts: 8 + 2 + 2 pictures, each with and without a caption
    # where its two posts differ, plus the caption-only and the bare post
    assert len(store) < 72 and store.manifest["corpus"]["with_image"] == 24
    encoder = make_tiny_encoder(tmp_path / "enc", words=("nike", "stop", "sign", "clock", "red", "alpha", "beta"))
    assert train("hamlearning", [
        f"data.path={corpus}", f"data.features={features}", f"model.encoder={encoder}",
        f"train.output_dir={tmp_path / 'runs'}", "train.epochs=2", "train.batch_size=8", "model.num_heads=4",
        "model.shape_dim=8", "model.max_semantic_subtokens=16", "model.ffn_mult=1",
    ]) == 0  # fmt: skip
    run = tmp_path / "runs" / "brands" / "hamlearning" / "seed1"
    best = run / "best"
    types, labels = TYPES, LABELS
    model = TextTagger.from_pretrained(best)
    assert model.config.multimodal and model.config.labels == labels
    final = json.loads((run / "final.json").read_text())
    assert final["test"]["micro"]["n_gold"] == 12
    assert set(final["relevance"]) == {"pixels", "words", "none"}  # every kind of visual input was read
    capsys.readouterr()
    assert main(["evaluate", "--model", str(best), "--dataset", str(corpus), "--features", str(features), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"] == final["test"]["micro"]

    onnx = tmp_path / "onnx"
    assert main(["export", "--model", str(best), "--out", str(onnx)]) == 0
    assert json.loads((onnx / "hamner_config.json").read_text())["tagger"]["labels"] == labels
    crf = json.loads((onnx / "onnx_export.json").read_text())["crf"]
    assert len(crf["start"]) == len(crf["transitions"]) == len(labels) == 13
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        json.dumps({"id": 1, "text": "the nike today", "image": str(corpus / "img" / "test0.png"), "caption": "a red stop sign"})
        + "\n" + json.dumps({"id": 2, "text": "the obama today"}) + "\n"
    )  # fmt: skip
    outputs = {}
    for name, ckpt in (("torch", best), ("onnx", onnx)):
        capsys.readouterr()
        assert main(["tag", "--model", str(ckpt), str(posts), "--tokens", "--no-progress"]) == 0
        outputs[name] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        for rec in outputs[name]:
            assert all(e["type"] in types for e in rec["entities"])
            assert set(rec["tags"]) <= set(labels)
    assert [r["tags"] for r in outputs["onnx"]] == [r["tags"] for r in outputs["torch"]]
    assert outputs["torch"][0]["visual"]["status"] == "ok" and outputs["torch"][1]["visual"]["status"] == "no_image"


def test_an_onnx_export_refuses_a_crf_of_another_label_set(six_type_model: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The export keeps the checkpoint's six types (tests/test_label_sets.py checks its answers), and
    an export whose CRF does not match its label list is refused, not read with the wrong tags."""
    best = six_type_model
    onnx = tmp_path / "onnx"
    assert main(["export", "--model", str(best), "--out", str(onnx)]) == 0
    labels = TextTagger.from_pretrained(best).config.labels
    assert labels == LABELS and json.loads((onnx / "hamner_config.json").read_text())["tagger"]["labels"] == labels
    capsys.readouterr()
    assert main(["tag", "--model", str(onnx), "--text", "the nike today", "--tokens"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got["tags"]) <= set(labels)
    meta = json.loads((onnx / "onnx_export.json").read_text())
    meta["crf"] = {k: [row for row in v][:4] for k, v in meta["crf"].items()}  # a CRF of another label set
    (onnx / "onnx_export.json").write_text(json.dumps(meta))
    assert main(["tag", "--model", str(onnx), "--text", "the nike today"]) == 2
    assert "the CRF has 4 tags but" in capsys.readouterr().err
