"""A tiny backbone and a colour-blob detector: the plug-in interface without any weights; and a
stand-in for spaCy's NER (the entity-type channel) that knows a few names.

Configs name them like a user's own plug-ins, ``backbone: "fakes:tiny_backbone"`` and
``detector: "fakes:ColourDetector"`` (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn

from hamner.vision.backbones import Backbone, BackboneOutput, Preprocessing
from hamner.vision.detectors import Detections, Detector

TINY_CLASSES = ["alpha, first letter", "beta", "gamma", "delta", "epsilon"]


class TinyBackbone(Backbone):
    """One strided conv (64 x 64 input -> 8 x 8 grid of ``channels``) and a linear classifier."""

    def __init__(self, channels: int = 8, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, channels, kernel_size=8, stride=8)
        self.fc = nn.Linear(channels, len(TINY_CLASSES))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        self.name = "tiny"
        self.out_channels = channels
        self.class_names = list(TINY_CLASSES)
        self.preprocessing = Preprocessing(size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        self.seed = seed

    def forward(self, images: Tensor) -> BackboneOutput:
        delay = float(os.environ.get("HAMNER_TEST_BACKBONE_DELAY", "0"))  # seconds per call: a slow model, for fault tests
        if delay:
            time.sleep(delay)
        grid = torch.relu(self.conv(images))  # shape: (batch, channels, 8, 8)
        return BackboneOutput(grid=grid, logits=self.fc(grid.mean(dim=(2, 3))))

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "seed": self.seed}


def tiny_backbone(weights: str | None = None, **options: Any) -> TinyBackbone:
    """The factory a config names; ``weights`` is accepted like a real backbone's, and unused."""
    return TinyBackbone(**options)


COLOURS = {"stop sign": (255, 0, 0), "clock": (0, 0, 255)}


class ColourDetector(Detector):
    """Finds solid red ("stop sign") and blue ("clock") rectangles; reports each twice, slightly
    shifted and with a lower score, and does no NMS itself, so the extractor's NMS must remove the echo."""

    def __init__(self, score: float = 0.9) -> None:
        self.name = "colour-blobs"
        self.applies_nms = False
        self.labels = dict(enumerate(COLOURS, start=1))  # id -> class name, like the packaged detector
        self.score = score

    def detect(self, image: Image.Image) -> Detections:
        a = np.asarray(image).astype(np.int16)  # shape: (H, W, 3)
        h, w = a.shape[:2]
        boxes, scores, ids, labels = [], [], [], []
        for cid, (label, rgb) in enumerate(COLOURS.items(), start=1):
            mask = (np.abs(a - np.array(rgb)).sum(axis=2) < 60)  # shape: (H, W)
            if mask.sum() < 4:
                continue
            ys, xs = np.nonzero(mask)
            box = [xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]
            echo = [min(1.0, box[0] + 0.01), box[1], min(1.0, box[2] + 0.01), box[3]]
            for b, s in ((echo, self.score - 0.1), (box, self.score)):
                boxes.append(b)
                scores.append(s)
                ids.append(cid)
                labels.append(label)
        if not boxes:
            return Detections.empty()
        return Detections(
            torch.tensor(boxes, dtype=torch.float32),
            torch.tensor(scores, dtype=torch.float32),
            torch.tensor(ids, dtype=torch.long),
            labels,
        )

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "score": self.score}


def scene(width: int = 120, height: int = 90, red: tuple[int, int, int, int] | None = (10, 10, 50, 40),
          blue: tuple[int, int, int, int] | None = (70, 50, 110, 85), background: tuple[int, int, int] = (200, 200, 200)) -> Image.Image:
    """A grey image with a red and a blue rectangle (pixel boxes x1, y1, x2, y2, exclusive ends)."""
    img = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(img)
    for box, rgb in ((red, COLOURS["stop sign"]), (blue, COLOURS["clock"])):
        if box is not None:
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=rgb)
    return img


#: the stand-in NER's gazetteer: a word's OntoNotes type (case-sensitive, as spaCy's md model is)
FAKE_NER_TYPES = {
    "Barack": "PERSON", "Obama": "PERSON", "Trump": "PERSON", "Microsoft": "ORG", "Apple": "ORG",
    "Google": "ORG", "NBA": "ORG", "Seattle": "GPE", "Paris": "GPE", "London": "GPE", "2017": "DATE",
}  # fmt: skip


class FakeEntityAnnotator:
    """What :func:`hamner.data.entity_types.annotator` returns, without spaCy: each word of
    :data:`FAKE_NER_TYPES` gets its type, a run of words of one type is one entity (B- then I-).
    ``calls`` records the posts of every call (how spaCy would be fed)."""

    def __init__(self) -> None:
        self.calls: list[list[list[str]]] = []

    def __call__(self, word_lists: Any) -> list[list[int]]:
        from hamner.data.entity_types import ENTITY_INDEX

        self.calls.append([list(w) for w in word_lists])
        out = []
        for words in word_lists:
            types = [FAKE_NER_TYPES.get(w) for w in words]
            out.append([
                ENTITY_INDEX["O"] if t is None else ENTITY_INDEX[("I-" if i and types[i - 1] == t else "B-") + t]
                for i, t in enumerate(types)
            ])  # fmt: skip
        return out
