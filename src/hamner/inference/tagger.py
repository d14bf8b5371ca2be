"""Tagging new posts: raw text in, entities with types and character offsets out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hamner.data.labels import spans_from_bio
from hamner.data.tokenize import Token, tokenize
from hamner.errors import ConfigError
from hamner.models.tagger import Prediction, TextTagger
from hamner.precision import autocast, resolve_precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entity:
    text: str
    type: str
    start: int  # character offsets into the post's text
    end: int


@dataclass
class TaggedPost:
    text: str
    entities: list[Entity]
    tokens: list[Token] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    words_past_limit: int = 0  # trailing words the encoder could not read (tagged O)
    # What a HamLearning model saw (None / empty for a text-only model): text-image relevance r,
    # the weights of the visual levels, and the post's visual inputs (ImageFeatures: status,
    # detected objects, image words).
    relevance: float | None = None
    level_weights: dict[str, float] | None = None
    features: Any = None
    emissions: torch.Tensor | None = None  # (words read, labels): the CRF's input, for checks and analysis

    def visual_summary(self) -> dict[str, Any] | None:
        """The post's visual inputs as plain data: image status, objects with boxes, image words."""
        f = self.features
        if f is None:
            return None
        return {
            "status": f.status,
            "objects": [
                {"label": label, "score": round(float(score), 4), "box": [round(float(x), 4) for x in box]}
                for label, score, box in zip(f.object_labels, f.object_scores.tolist(), f.boxes.tolist(), strict=True)
            ],
            "image_words": f.semantic.to_dict(),
        }

    def to_dict(self, with_tokens: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "entities": [asdict(e) for e in self.entities]}
        if self.features is not None or self.relevance is not None:
            out["relevance"] = self.relevance
            out["level_weights"] = self.level_weights
            out["visual"] = self.visual_summary()
        if with_tokens:
            out["tokens"] = [asdict(t) for t in self.tokens]
            out["tags"] = self.tags
        return out


class Tagger:
    """``Tagger.from_pretrained(dir).tag("...")``: the Python API over a trained checkpoint."""

    def __init__(
        self,
        model: TextTagger,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        extractor: Any = None,
        on_bad_image: str = "error",
        precision: str = "auto",
    ) -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        # auto: bf16 autocast on a GPU that has it, fp32 on a CPU (see hamner.precision)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        self._warned_visual = False
        self._extractor = extractor
        self.on_bad_image = on_bad_image

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: str = "cpu",
        batch_size: int = 32,
        on_bad_image: str = "error",
        precision: str = "auto",
    ) -> Tagger:
        return cls(TextTagger.from_pretrained(directory), device, batch_size, on_bad_image=on_bad_image, precision=precision)

    @property
    def style(self) -> str:
        return self.model.config.tokenizer_style

    @property
    def multimodal(self) -> bool:
        return bool(self.model.config.multimodal)

    @property
    def vision_config(self) -> Any:
        """The extractor settings the model was trained with (a VisionConfig), for a multimodal model."""
        from hamner.vision.config import VisionConfig

        settings = self.model.config.vision
        if not self.multimodal or settings is None:
            raise ConfigError("this checkpoint records no image extractor settings (a text-only model?)")
        return VisionConfig(**{**settings, "on_bad_image": self.on_bad_image})

    @property
    def extractor(self) -> Any:
        """The image extractor of the training cache's settings and model files, built on first use;
        a different weights file (another fingerprint) is refused: its features would not match."""
        if self._extractor is None:
            from hamner.vision.extractor import VisualExtractor

            extractor = VisualExtractor(self.vision_config)
            want = self.model.config.vision_fingerprint
            if want is not None and extractor.fingerprint != want:
                raise ConfigError(
                    f"the image extractor here (fingerprint {extractor.fingerprint[:12]}) differs from the one the model was "
                    f"trained with ({want[:12]}): other backbone/detector weights or settings. Install the same model files."
                )
            self._extractor = extractor
        return self._extractor

    def features(self, image: Any = None, caption: str | None = None, key: str | None = None) -> Any:
        """A post's visual inputs (ImageFeatures), extracted exactly as 'hamner preprocess' does:
        ``image`` is a path, bytes, a decoded :class:`hamner.vision.images.LoadedImage` or None."""
        from hamner.vision.extractor import features_without_image
        from hamner.vision.images import LoadedImage

        if image is None:  # no image: the caption words alone (no model files needed)
            return features_without_image(self.vision_config, key or "<none>", "no_image", None, caption, None)
        if isinstance(image, LoadedImage):
            return self.extractor.extract(image, key=key or image.source, caption=caption)
        return self.extractor.extract_file(image, key=key, caption=caption)

    def tag(self, text: str, image: str | Path | bytes | None = None, caption: str | None = None) -> TaggedPost:
        """Entities of one post. ``image`` and ``caption`` are used by multimodal checkpoints only."""
        return self.tag_many([text], [image], [caption])[0]

    def tag_many(
        self,
        texts: Sequence[str],
        images: Sequence[str | Path | bytes | None] | None = None,
        captions: Sequence[str | None] | None = None,
        progress: bool = False,
        features: Sequence[Any] | None = None,
    ) -> list[TaggedPost]:
        """Tag several posts in batches. An empty or whitespace-only text gives no entities.

        ``features`` (ImageFeatures per post, e.g. from a feature cache) replace ``images`` and
        ``captions`` for a multimodal model.
        """
        if isinstance(texts, str):
            raise TypeError("tag_many expects a list of texts; use tag() for one post")
        for name, seq in (("images", images), ("captions", captions), ("features", features)):
            if seq is not None and len(seq) != len(texts):
                raise ValueError(f"{len(texts)} texts but {len(seq)} {name}")
        visuals: list[Any] | None = None
        if self.multimodal:
            if features is not None:
                visuals = list(features)
            else:
                imgs = list(images) if images is not None else [None] * len(texts)
                caps = list(captions) if captions is not None else [None] * len(texts)
                visuals = [self.features(im, cap, f"post-{i}") for i, (im, cap) in enumerate(zip(imgs, caps, strict=True))]
        elif not self._warned_visual and any(x is not None for x in list(images or []) + list(captions or []) + list(features or [])):
            log.warning("this checkpoint is a text-only model: image and caption inputs are ignored")
            self._warned_visual = True
        tokens = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"post {i}: text must be a string, got {type(t).__name__}")
            tokens.append(tokenize(t, self.style))
        nonempty = [i for i, toks in enumerate(tokens) if toks]
        preds: dict[int, Prediction] = {}
        if nonempty:
            words = [[tok.text for tok in tokens[i]] for i in nonempty]
            vis = [visuals[i] for i in nonempty] if visuals is not None else None
            with autocast(self.device, self.precision):
                got_all = self.model.run(words, vis, self.batch_size, progress, "tag")
            for i, got in zip(nonempty, got_all, strict=True):
                preds[i] = got
        out = []
        for i, text in enumerate(texts):
            toks = tokens[i]
            pred = preds.get(i)
            tg = pred.tags if pred is not None else []
            past = sum(1 for f in self.model.word_encoder.encode([t.text for t in toks]).first_sub if f < 0) if toks else 0
            if past:
                log.warning("post %d: its last %d of %d words are past the encoder's %d sub-token limit and are tagged O", i, past, len(toks), self.model.max_subtokens)
            ents = [
                Entity(
                    text[toks[s.start].start : toks[s.end - 1].end], s.type, toks[s.start].start, toks[s.end - 1].end
                )
                for s in spans_from_bio(tg)
            ]
            out.append(
                TaggedPost(
                    text, ents, toks, tg, past,
                    relevance=pred.relevance if pred is not None else (0.0 if visuals is not None else None),
                    level_weights=pred.level_weights if pred is not None else None,
                    features=visuals[i] if visuals is not None else None,
                    emissions=pred.emissions if pred is not None else None,
                )
            )  # fmt: skip
        return out
