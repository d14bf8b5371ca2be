"""Training on a corpus of one's own: six entity types from JSONL posts (some with images), by path."""

from __future__ import annotations

import json
import random
from pathlib import Path

from conftest import make_tiny_encoder
from hamner.cli import main
from hamner.models.tagger import TextTagger

REPO = Path(__file__).resolve().parents[2]
NAMES = {
    "PER": ["obama", "trump"], "LOC": ["paris", "london"], "ORG": ["google", "nba"],
    "BRAND": ["apple", "nike"], "EVENT": ["festival", "game"], "DRUG": ["music", "police"],
}  # fmt: skip


def six_type_corpus(folder: Path, n_train: int = 48, seed: int = 0) -> Path:
    """train/dev/test JSONL: 'the <name> today' with the name's type; every third post has an image."""
    rng = random.Random(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "img" / "a.png").write_bytes(b"not read by a text-only model")
    for split, n in (("train", n_train), ("dev", 12), ("test", 12)):
        lines = []
        for i in range(n):
            typ = list(NAMES)[i % len(NAMES)]
            name = rng.choice(NAMES[typ])
            rec = {
                "id": f"{split}{i}",
                "text": f"the {name} today",
                "entities": [{"start": 4, "end": 4 + len(name), "type": typ}],
            }
            if i % 3 == 0:
                rec["image"] = "img/a.png"
            lines.append(json.dumps(rec))
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_a_six_type_jsonl_corpus_trains_tags_and_evaluates(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    corpus = six_type_corpus(tmp_path / "brands")
    encoder = make_tiny_encoder(tmp_path / "enc", words=("nike", "drug"))
    args = ["train", "--config", str(REPO / "configs" / "text-only.yaml")]
    for o in [
        f"data.path={corpus}", f"model.encoder={encoder}", f"train.output_dir={tmp_path / 'runs'}", "train.epochs=12",
        "train.batch_size=8", "train.lr_encoder=3e-3", "train.lr_head=3e-2", "train.num_threads=1", "train.progress=false",
        "train.warmup_ratio=0.0", "model.use_chars=false", "model.max_length=32",
    ]:  # fmt: skip
        args += ["--set", o]
    assert main(args) == 0
    run = tmp_path / "runs" / "brands" / "text-only" / "seed1"
    best = run / "best"
    model = TextTagger.from_pretrained(best)
    types = ["BRAND", "DRUG", "EVENT", "LOC", "ORG", "PER"]
    assert model.config.labels == ["O", *[f"{p}-{t}" for t in types for p in "BI"]]
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
