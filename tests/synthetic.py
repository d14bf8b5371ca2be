"""A synthetic multimodal NER task drawn with PIL, where the entity type is decided only by the image.

Each post reads ``<Name> in <colour>`` (colour: red or blue) and its image is a grey square with
one rectangle of that colour, drawn in the top half or the bottom half. The name is PER when the
rectangle is at the top and LOC when it is at the bottom: nothing in the text tells which, so a
text-only model cannot beat chance and a model that reads the image can. The colour word ties
each post to its image: an image swapped in from another post may show the other colour, and
then the text-image relevance r should drop. ``build_task`` writes a
Twitter-2017-shaped data root, the images, and a feature cache made with the fake extractor of
``tests/fakes.py`` (the same ``preprocess`` path as the real benchmark).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from conftest import write_conll

NAMES = ["zorb", "kavo", "mipa", "tesh", "lurn", "quib", "dax", "fenn", "gorp", "hule", "jink", "wopa"]
COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255)}
#: words the tiny test encoder must know as whole tokens (its vocabulary is tiny): names, colours,
#: and the fake extractor's class names (which become image words)
WORDS = (*NAMES, *COLOURS, "dark", "stop", "sign", "clock", "alpha", "beta", "gamma", "delta")
FAKE_VISION = {"backbone": "fakes:tiny_backbone", "detector": "fakes:ColourDetector", "on_bad_image": "error"}


@dataclass(frozen=True)
class SynthPost:
    imgid: str
    name: str
    text_colour: str
    image_colour: str
    top: bool

    @property
    def entity_type(self) -> str:
        return "PER" if self.top else "LOC"

    @property
    def words(self) -> list[str]:
        # "dark blue" is one word longer than "red" because the fake detector's name for a blue
        # rectangle ("clock") is one word shorter than for a red one ("stop sign"): every post then
        # has the same number of sub-tokens, and length-bucketed batches mix the two colours
        return [self.name, "in", self.text_colour] if self.text_colour == "red" else [self.name, "in", "dark", self.text_colour]

    @property
    def rows(self) -> list[tuple[str, str]]:
        return [(w, f"B-{self.entity_type}" if i == 0 else "O") for i, w in enumerate(self.words)]


def draw(colour: str, top: bool, rng: random.Random, size: int = 64) -> Image.Image:
    """A grey square with one rectangle of ``colour`` somewhere in its top or bottom half."""
    img = Image.new("RGB", (size, size), (200, 200, 200))
    w, h = rng.randint(14, 24), rng.randint(10, 16)
    x = rng.randint(0, size - w)
    y = rng.randint(0, size // 2 - h) + (0 if top else size // 2)
    ImageDraw.Draw(img).rectangle((x, y, x + w - 1, y + h - 1), fill=COLOURS[colour])
    return img


def make_posts(n: int, prefix: str, rng: random.Random) -> list[SynthPost]:
    posts = []
    for i in range(n):
        colour = rng.choice(list(COLOURS))
        posts.append(SynthPost(f"{prefix}{i}", rng.choice(NAMES), colour, colour, rng.random() < 0.5))
    return posts


def build_task(
    base: Path, n_train: int = 240, n_dev: int = 48, n_test: int = 96, seed: int = 0, without_image: int = 0
) -> dict[str, object]:
    """Data root, images and feature cache under ``base``; returns their paths and the posts. Every
    ``without_image``-th post (0: none) has no image file: no visual input at all."""
    from hamner.vision.cache import ImageEntry, preprocess
    from hamner.vision.config import VisionConfig
    from hamner.vision.extractor import VisualExtractor

    rng = random.Random(seed)
    root, images = base / "data", base / "images"
    images.mkdir(parents=True, exist_ok=True)
    splits = {
        "train": make_posts(n_train, "tr", rng),
        "valid": make_posts(n_dev, "dv", rng),
        "test": make_posts(n_test, "te", rng),
    }
    entries = []
    for split, posts in splits.items():
        write_conll(root / "twitter2017" / f"{split}.txt", [(f"IMGID:{p.imgid}", p.rows) for p in posts])
        for i, p in enumerate(posts):
            path: Path | None = images / f"{p.imgid}.png"
            if without_image and i % without_image == 0:
                path = None
            else:
                draw(p.image_colour, p.top, rng).save(path)
            entries.append(ImageEntry(p.imgid, path, None, None, split))
    features = base / "features"
    vision = {**FAKE_VISION, "on_bad_image": "skip"} if without_image else FAKE_VISION
    preprocess(entries, features, VisualExtractor(VisionConfig(**vision)), progress=False)
    return {"root": root, "images": images, "features": features, **splits}


#: two posts for the tiny HamLearning checkpoint: one with an image and a caption, one with neither
TINY_POSTS = [
    ("IMGID:p1", [("obama", "B-PER"), ("in", "O"), ("paris", "B-LOC")], "a red square and a blue one"),
    ("IMGID:p2", [("the", "O"), ("nba", "B-ORG"), ("game", "O")], None),
]


def tiny_hamlearning_checkpoint(base: Path, vision: dict[str, object] | None = None) -> dict[str, object]:
    """An untrained tiny HamLearning checkpoint whose extractor settings are the fake models' (or
    ``vision``: VisionConfig fields, ``{}`` for the packaged models), made the way training makes one
    (a 'preprocess' cache adopted by the config); returns the paths."""
    import torch

    from conftest import make_tiny_encoder
    from fakes import scene
    from hamner.models.tagger import TextTagger
    from hamner.training.config import load_config
    from hamner.training.trainer import adopt_features
    from hamner.vision.cache import FeatureStore, ImageEntry, preprocess
    from hamner.vision.config import VisionConfig
    from hamner.vision.extractor import VisualExtractor

    encoder = make_tiny_encoder(base / "encoder", words=("stop", "sign", "clock", "red", "square", "blue", "one"))
    write_conll(base / "data" / "twitter2017" / "test.txt", [(imgid, rows) for imgid, rows, _ in TINY_POSTS])
    image = base / "p1.png"
    scene().save(image)
    entries = [ImageEntry("p1", image, TINY_POSTS[0][2], None, "test"), ImageEntry("p2", None, None, None, "test")]
    settings = dict(vision) if vision is not None else {k: v for k, v in FAKE_VISION.items() if k != "on_bad_image"}
    preprocess(entries, base / "features", VisualExtractor(VisionConfig(**settings, on_bad_image="skip")), progress=False)  # type: ignore[arg-type]
    configs = Path(__file__).resolve().parents[1] / "configs"
    cfg = load_config(configs / "hamlearning.yaml", [
        f"model.encoder={encoder}", "model.num_heads=4", "model.shape_dim=8", "model.max_length=32",
        "model.max_semantic_subtokens=16", f"data.features={base / 'features'}",
    ])  # fmt: skip
    store = FeatureStore.open(base / "features")
    adopt_features(cfg, store)
    torch.manual_seed(0)
    TextTagger.from_config(cfg.model).eval().save_pretrained(base / "ckpt")
    return {"base": base, "image": image, "store": store, "ckpt": base / "ckpt", "data_root": base / "data", "features": base / "features"}
