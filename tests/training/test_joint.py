"""Joint training on two datasets (data.joint): cross-dataset near-duplicates are dropped, each
dataset selects its own checkpoint on its own dev split and is tested once on its own test split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_POSTS, write_conll
from hamner.errors import ConfigError
from hamner.training.config import load_config
from hamner.training.trainer import JOINT_DIR, open_features, run_training

REPO = Path(__file__).resolve().parents[2]


def two_datasets(root: Path) -> Path:
    """twitter2017 as the tiny dataset; twitter2015 with the tiny posts in another order and two more
    words each (so that they are not near-identical), and one more training post that is a
    twitter2017 dev and test post (retweeted, with a URL)."""
    for split in ("train", "valid", "test"):
        copies = 4 if split == "train" else 1
        posts = [(f"IMGID:{split}{k}_{i}", rows) for k in range(copies) for i, (_, rows) in enumerate(TINY_POSTS)]
        write_conll(root / "twitter2017" / f"{split}.txt", posts)
        more = [("so", "O"), ("much", "O")]
        other = [(f"IMGID:b{split}{k}_{i}", rows + more) for k in range(copies) for i, (_, rows) in enumerate(TINY_POSTS[::-1])]
        if split == "train":  # the same words as a twitter2017 test post: RT, a URL and case aside
            other.append(("IMGID:dup", [("RT", "O"), ("Apple", "B-ORG"), ("and", "O"), ("Google", "B-ORG"), ("in", "O"),
                                        ("Paris", "B-LOC"), ("http://t.co/x", "O")]))  # fmt: skip
        write_conll(root / "twitter2015" / f"{split}.txt", other)
    return root


def overrides(encoder: Path, root: Path, out: Path, epochs: int = 2) -> list[str]:
    return [
        f"model.encoder={encoder}", f"data.root={root}", f"train.output_dir={out}", f"train.epochs={epochs}",
        "train.batch_size=4", "train.lr_encoder=1e-3", "train.num_threads=1", "train.progress=false",
        "data.joint=[twitter2015]",
    ]  # fmt: skip


def test_joint_run_selects_and_tests_each_dataset_on_its_own(tiny_encoder: Path, tmp_path: Path) -> None:
    root = two_datasets(tmp_path / "data")
    cfg = load_config(REPO / "configs" / "text-only.yaml", overrides(tiny_encoder, root, tmp_path / "runs", epochs=3))
    final = run_training(cfg)
    run = cfg.run_dir()
    meta = json.loads((run / "run.json").read_text())
    # 24 + 24 training posts: the twitter2015 post that is a twitter2017 test post (once RT and the URL
    # are dropped) is left out, and run.json says where it was and what it matched
    assert meta["joint"]["datasets"] == ["twitter2017", "twitter2015"]
    assert meta["joint"]["train_posts"] == {"twitter2017": 24, "twitter2015": 24}
    [drop] = meta["joint"]["dropped_overlap"]
    assert drop["post"].startswith("twitter2015/train.txt:")
    assert drop["matches"].split(":")[0] in ("twitter2017/valid.txt", "twitter2017/test.txt")
    assert drop["identical"] is True
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(set(r["joint_dev_f1"]) == {"twitter2015"} for r in records)
    # each dataset: its best dev epoch chosen on its own dev split, its own test split scored once
    assert final["dataset"] == "twitter2017" and final["protocol"] == "joint"
    assert final["trained_on"] == ["twitter2017", "twitter2015"]
    assert final["dev_f1"] == max(r["dev_f1"] for r in records)
    other = json.loads((run / JOINT_DIR / "twitter2015" / "final.json").read_text())
    assert other["dataset"] == "twitter2015" and other["protocol"] == "joint" and other["config"] == "text-only"
    dev_2015 = [r["joint_dev_f1"]["twitter2015"] for r in records]
    assert other["dev_f1"] == max(dev_2015) and other["best_epoch"] == dev_2015.index(max(dev_2015)) + 1
    assert other["test"]["micro"]["n_gold"] == 10  # every gold entity of the twitter2015 test split
    assert (run / JOINT_DIR / "twitter2015" / "test_predictions.jsonl.gz").exists()
    # the twitter2015 checkpoint describes itself and tags on its own
    from hamner.models.tagger import TextTagger

    ckpt = json.loads((run / JOINT_DIR / "twitter2015" / "best" / "hamner_config.json").read_text())
    assert ckpt["trained_on"] == "twitter2015" and ckpt["joint"] == ["twitter2017", "twitter2015"]
    assert len(TextTagger.from_pretrained(run / JOINT_DIR / "twitter2015" / "best").predict([["Obama", "in", "Paris"]])[0]) == 3
    assert not (run / "last" / "state.pt").exists()


def test_a_resumed_joint_run_keeps_each_datasets_best(tiny_encoder: Path, tmp_path: Path) -> None:
    root = two_datasets(tmp_path / "data")
    base = overrides(tiny_encoder, root, tmp_path / "a", epochs=3)
    full = load_config(None, base)
    run_training(full)
    cfg = load_config(None, [*base[:2], f"train.output_dir={tmp_path / 'b'}", *base[3:]])
    assert run_training(cfg, stop_after_epoch=1) == {}
    run_training(load_config(None, [*base[:2], f"train.output_dir={tmp_path / 'b'}", *base[3:]]), resume=True)
    a = full.run_dir() / JOINT_DIR / "twitter2015"
    b = cfg.run_dir() / JOINT_DIR / "twitter2015"
    fa, fb = (json.loads((d / "final.json").read_text()) for d in (a, b))
    assert (fa["best_epoch"], fa["dev_f1"], fa["test_f1"]) == (fb["best_epoch"], fb["dev_f1"], fb["test_f1"])
    wa, wb = (load_file(str(d / "best" / "model.safetensors")) for d in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_joint_config_is_checked_and_finds_each_feature_cache() -> None:
    cfg = load_config(REPO / "configs" / "hamlearning.yaml", ["data.joint=[twitter2015]"])
    assert cfg.data.features == "features/twitter2017"
    assert cfg.data.joint_features == {"twitter2015": "features/twitter2015"}
    assert cfg.data.features_of("twitter2015") == "features/twitter2015"
    with pytest.raises(ConfigError, match="data.joint must name other datasets"):
        load_config(None, ["data.joint=[twitter2017]"])
    with pytest.raises(ConfigError, match="data.joint must name other datasets"):
        load_config(None, ["data.joint=[twitter2015, twitter2015]"])
    with pytest.raises(ConfigError, match="not in data.joint"):
        load_config(None, ["data.joint_features={twitter2015: x}"])
    # a cache path without {dataset}: the joint dataset's cache must be named
    fixed = load_config(REPO / "configs" / "hamlearning.yaml", ["data.features=/nowhere/cache", "data.joint=[twitter2015]"])
    with pytest.raises(ConfigError, match="set data.joint_features.twitter2015 to a feature cache"):
        open_features(fixed, "twitter2015")


def test_joint_feature_caches_must_come_from_the_same_extractor(tmp_path: Path) -> None:
    from test_train import synthetic_task_overrides

    from hamner.vision.cache import preprocess
    from hamner.vision.config import VisionConfig
    from hamner.vision.extractor import VisualExtractor
    from synthetic import FAKE_VISION

    base = synthetic_task_overrides(tmp_path, epochs=1)
    task_root = Path(next(o for o in base if o.startswith("data.root=")).split("=", 1)[1])
    shutil.copytree(task_root / "twitter2017", task_root / "twitter2015")
    other = tmp_path / "other-features"  # the same (no) images through an extractor keeping fewer objects
    preprocess([], other, VisualExtractor(VisionConfig(**{**FAKE_VISION, "max_objects": 3})), progress=False)
    cfg = load_config(
        REPO / "configs" / "hamlearning.yaml", [*base, "data.joint=[twitter2015]", f"data.joint_features={{twitter2015: {other}}}"]
    )
    with pytest.raises(ConfigError, match="made with other image-extractor settings"):
        run_training(cfg)


def test_a_marked_joint_run_marks_each_post_and_each_checkpoint_with_its_dataset(
    tiny_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model.dataset_marker: training posts carry their own dataset's name, each dataset's dev split is
    read with its name, and each dataset's checkpoint keeps it (tagging reads new posts as that
    dataset's); its recorded dev F1 is what the saved checkpoint scores on that dev split."""
    import yaml

    from hamner.data.datasets import load_split
    from hamner.evaluation.evaluate import evaluate
    from hamner.models.tagger import TextTagger
    from hamner.training import trainer
    from hamner.training.trainer import encode_posts

    marks: list[list[str] | None] = []

    def recording(model: TextTagger, posts: list, *args: object) -> list:  # type: ignore[type-arg]
        marks.append(args[2] if len(args) > 2 else None)  # type: ignore[arg-type]
        return encode_posts(model, posts, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(trainer, "encode_posts", recording)
    root = two_datasets(tmp_path / "data")
    cfg = load_config(REPO / "configs" / "text-only.yaml", [*overrides(tiny_encoder, root, tmp_path / "runs"), "model.dataset_marker=true"])
    assert cfg.model.marker == "twitter2017"
    final = run_training(cfg)
    assert marks and all(m == ["twitter2017"] * 24 + ["twitter2015"] * 24 for m in marks)  # the training posts, in order
    run = cfg.run_dir()
    for directory, dataset, f1 in ((run, "twitter2017", final["dev_f1"]), (run / JOINT_DIR / "twitter2015", "twitter2015", None)):
        ckpt = json.loads((directory / "best" / "hamner_config.json").read_text())
        assert ckpt["tagger"]["marker"] == dataset and ckpt["tagger"]["dataset_marker"] is True
        model = TextTagger.from_pretrained(directory / "best")
        assert model.word_encoder.marker == dataset
        mark = model.tokenizer(dataset, add_special_tokens=False)["input_ids"]
        [post] = encode_posts(model, load_split(dataset, "train", root)[:1])
        assert post.input_ids[1 : 1 + len(mark)] == mark
        recorded = f1 if f1 is not None else json.loads((directory / "final.json").read_text())["dev_f1"]
        assert evaluate(model, load_split(dataset, "valid", root)).micro.f1 == pytest.approx(recorded, abs=1e-9)
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["marker"] == "twitter2017"


def three_type_corpus(folder: Path) -> Path:
    """A plain CoNLL corpus of its own (no IMGID lines) that annotates PER, LOC and ORG only: the
    tiny posts with their MISC entity left unannotated, as BTC would have it, and two more words each
    (so that they are not near-identical to the Twitter-2017 posts)."""
    more = [("right", "O"), ("now", "O")]
    for split in ("train", "dev", "test"):
        copies = 3 if split == "train" else 1
        posts = [[(w, "O" if t.endswith("MISC") else t) for w, t in rows + more] for _ in range(copies) for _, rows in TINY_POSTS]
        text = "\n\n".join("\n".join(f"{w}\t{t}" for w, t in rows if w.strip()) for rows in posts) + "\n\n"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{split}.txt").write_text(text)
    return folder


def test_joint_training_with_a_corpus_folder_scores_it_on_its_own_types(tiny_encoder: Path, tmp_path: Path) -> None:
    root = two_datasets(tmp_path / "data")
    mini = three_type_corpus(tmp_path / "corpora" / "mini")
    base = [o for o in overrides(tiny_encoder, root, tmp_path / "runs", epochs=2) if not o.startswith("data.joint")]
    cfg = load_config(REPO / "configs" / "text-only.yaml", [*base, f"data.joint=[{mini}]"])
    assert cfg.data.joint == ["mini"] and cfg.data.joint_paths == {"mini": str(mini)}
    run_training(cfg)
    run = cfg.run_dir()
    meta = json.loads((run / "run.json").read_text())
    assert meta["joint"]["datasets"] == ["twitter2017", "mini"]
    assert meta["joint"]["scored_types"] == {"mini": ["PER", "LOC", "ORG"]}  # the model's order, MISC left out
    final = json.loads((run / JOINT_DIR / "mini" / "final.json").read_text())
    assert final["dataset"] == "mini" and final["scored_types"] == ["PER", "LOC", "ORG"]
    assert set(final["test"]["per_type"]) <= {"PER", "LOC", "ORG"} and "predictions_not_scored" in final
    main_final = json.loads((run / "final.json").read_text())
    assert "scored_types" not in main_final  # Twitter-2017 annotates every type of the model
    # the resolved config names the corpus and its folder: it trains again as it is
    again = load_config(run / "config.yaml")
    assert again.data.joint == ["mini"] and again.data.joint_paths == {"mini": str(mini)}


def test_cross_corpus_evaluation_scores_the_shared_types(trained_tiny_model: Path, tiny_data_root: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A four-type model on a corpus without MISC, and on a MISC corpus with MISC dropped: --type-map
    MISC=O leaves MISC out of the gold and out of the predictions."""
    from hamner.cli import main
    from hamner.data.corpus import corpus_spec, load_posts
    from hamner.data.labels import keep_types, spans_from_bio
    from hamner.evaluation.metrics import entity_scores
    from hamner.models.tagger import TextTagger

    mini = three_type_corpus(tmp_path / "mini")
    model = TextTagger.from_pretrained(trained_tiny_model)
    posts = load_posts(corpus_spec(None, files={"test": mini / "test.txt"}), "test")
    kept = [keep_types(t, ["PER", "LOC", "ORG"]) for t in model.predict([p.words for p in posts])]
    misc = sum(d["MISC"] for _, d in kept)
    assert misc > 0  # the model tags "Paris Festival" MISC, which this corpus does not annotate
    gold = str(mini / "test.txt")
    capsys.readouterr()
    assert main(["evaluate", "--model", str(trained_tiny_model), "--gold", gold, "--json"]) == 0
    unfiltered = json.loads(capsys.readouterr().out)
    assert unfiltered["per_type"]["MISC"]["n_pred"] == misc and "not_scored" not in unfiltered  # false positives
    assert main(["evaluate", "--model", str(trained_tiny_model), "--gold", gold, "--type-map", "MISC=O", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["not_scored"] == {"MISC": misc} and "MISC" not in got["per_type"]
    assert got["micro"] == entity_scores([p.tags for p in posts], [t for t, _ in kept]).to_dict()["micro"]
    assert got["micro"]["precision"] > unfiltered["micro"]["precision"]
    # the other way: the Twitter-2017-shaped gold, MISC dropped, keeps the three shared types only
    t17 = str(tiny_data_root / "twitter2017" / "test.txt")
    assert main(["evaluate", "--model", str(trained_tiny_model), "--gold", t17, "--type-map", "MISC=O", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert "MISC" not in got["per_type"] and got["micro"]["n_gold"] == sum(
        1 for _, rows in TINY_POSTS for s in spans_from_bio([t for _, t in rows]) if s.type != "MISC"
    )


def test_keep_types_turns_other_types_into_o_and_counts_them() -> None:
    from hamner.data.labels import keep_types

    tags, dropped = keep_types(["B-PER", "B-MISC", "I-MISC", "O", "I-MISC", "B-LOC"], ["PER", "LOC"])
    assert tags == ["B-PER", "O", "O", "O", "O", "B-LOC"] and dropped == {"MISC": 2}
    assert keep_types(["B-PER", "O"], ["PER"]) == (["B-PER", "O"], {})
