"""A corpus of one's own with six entity types (JSONL, some posts with an image) and a tiny text-only
model trained on it through the real trainer: the fixtures of the label-set tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAMES = {
    "PER": ["obama", "trump"], "LOC": ["paris", "london"], "ORG": ["google", "nba"],
    "BRAND": ["apple", "nike"], "EVENT": ["festival", "game"], "DRUG": ["music", "police"],
}  # fmt: skip
#: the label order the trainer gives a corpus without a declared list (the types seen, sorted)
SIX_TYPES = sorted(NAMES)


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


def train_six_type_model(base: Path, encoder: Path, epochs: int = 12) -> Path:
    """Train ``text-only`` on :func:`six_type_corpus` under ``base``; the ``best`` checkpoint."""
    from hamner.cli import main

    corpus = six_type_corpus(base / "brands")
    args = ["train", "--config", str(REPO / "configs" / "text-only.yaml")]
    for o in [
        f"data.path={corpus}", f"model.encoder={encoder}", f"train.output_dir={base / 'runs'}", f"train.epochs={epochs}",
        "train.batch_size=8", "train.lr_encoder=3e-3", "train.lr_head=3e-2", "train.num_threads=1", "train.progress=false",
        "train.warmup_ratio=0.0", "model.use_chars=false", "model.max_length=32",
    ]:  # fmt: skip
        args += ["--set", o]
    assert main(args) == 0
    return base / "runs" / "brands" / "text-only" / "seed1" / "best"
