"""One image (or its absence) -> every visual input HamLearning reads.

:class:`VisualExtractor` is the single path from an image file to :class:`ImageFeatures`, used both
by ``hamner preprocess`` (which stores the result in the feature cache) and on the fly for a new post
(``hamner tag``, the web service), so the two give identical tensors for the same file.

Per image: the backbone's feature grid (global level) and ImageNet top-k names; the detector's
objects after threshold / class filter / NMS / top-k, each with a region vector pooled by RoIAlign
over the grid (or a re-encoded crop), its normalised box and the pairwise geometry of every object
pair (spatial level); and the semantic words (detector names, ImageNet names, caption, OCR).

Images go through the backbone one at a time: on the CPU that is also the fastest (measured in
``benchmarks/preprocess_throughput.py``) and it makes the numbers independent of batching.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from hamner.errors import ConfigError, ImageError
from hamner.vision.backbones import Backbone, build_backbone
from hamner.vision.config import VisionConfig
from hamner.vision.detectors import Detections, Detector, build_detector
from hamner.vision.geometry import PAIR_FEATURES, box_features, pair_geometry
from hamner.vision.images import LoadedImage, load_image
from hamner.vision.ops import batched_nms, roi_align
from hamner.vision.semantics import SemanticWords, build_semantic_words

log = logging.getLogger(__name__)

# Bump when the meaning or layout of any extracted tensor changes: old caches become stale.
FEATURE_FORMAT_VERSION = 1
STATUSES = ("ok", "no_image", *ImageError.KINDS)
_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass
class ImageFeatures:
    """The visual inputs of one post. ``status != "ok"`` means no visual part, only caption/OCR words."""

    key: str  # the IMGID, or a name for a new post's image
    status: str = "ok"  # "ok", "no_image" (none given), or why the image was skipped (ImageError kinds)
    error: str | None = None
    image_size: tuple[int, int] | None = None  # (width, height) as decoded and EXIF-rotated, before downscaling
    grid: Tensor | None = None  # shape: (channels, grid_h, grid_w); None without a backbone or image
    imagenet: list[tuple[str, float]] = field(default_factory=list)  # top-k (short name, probability)
    boxes: Tensor = field(default_factory=lambda: torch.zeros(0, 4))  # shape: (k, 4) normalised xyxy
    object_scores: Tensor = field(default_factory=lambda: torch.zeros(0))  # shape: (k,)
    object_class_ids: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # shape: (k,)
    object_labels: list[str] = field(default_factory=list)
    object_vectors: Tensor | None = None  # shape: (k, channels); None without a backbone
    pair_geometry: Tensor = field(default_factory=lambda: torch.zeros(0, 0, len(PAIR_FEATURES)))  # shape: (k, k, 5)
    pair_direction: Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.long))  # shape: (k, k)
    semantic: SemanticWords = field(default_factory=SemanticWords)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"ImageFeatures.status must be one of {STATUSES}, got {self.status!r}")

    @property
    def has_image(self) -> bool:
        return self.status == "ok"

    @property
    def num_objects(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def box_features(self) -> Tensor:  # shape: (k, 7): x1, y1, x2, y2, w, h, area
        return box_features(self.boxes)

    # -- serialisation: tensors go to safetensors, the rest to JSON ---------------------------------
    TENSOR_FIELDS = ("grid", "boxes", "object_scores", "object_class_ids", "object_vectors", "pair_geometry", "pair_direction")

    def tensors(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name in self.TENSOR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.contiguous()
        return out

    def record(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "error": self.error,
            "image_size": list(self.image_size) if self.image_size else None,
            "imagenet": [[n, p] for n, p in self.imagenet],
            "object_labels": list(self.object_labels),
            "num_objects": self.num_objects,
            "semantic": self.semantic.to_dict(),
        }

    @classmethod
    def from_parts(cls, record: dict[str, Any], tensors: dict[str, Tensor]) -> ImageFeatures:
        size = record.get("image_size")
        feats = cls(
            key=record["key"],
            status=record["status"],
            error=record.get("error"),
            image_size=(int(size[0]), int(size[1])) if size else None,
            imagenet=[(str(n), float(p)) for n, p in record.get("imagenet", [])],
            object_labels=list(record.get("object_labels", [])),
            semantic=SemanticWords.from_dict(record["semantic"]),
        )
        for name in cls.TENSOR_FIELDS:
            if name in tensors:
                setattr(feats, name, tensors[name])
        return feats

    def same_as(self, other: ImageFeatures) -> bool:
        """Exact equality of every field and tensor (used to check the two extraction paths agree)."""
        if self.record() != other.record():
            return False
        a, b = self.tensors(), other.tensors()
        return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def _canonical(data: Any) -> str:
    # through JSON once first, so that int dict keys and tuples compare as they will after storage
    plain = json.loads(json.dumps(data, default=str))
    return json.dumps(plain, sort_keys=True, separators=(",", ":"))


def fingerprint_of(identity: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of an extractor identity (stable across JSON round trips)."""
    return hashlib.sha256(_canonical(identity).encode()).hexdigest()


def features_without_image(
    config: VisionConfig, key: str, status: str, error: str | None, caption: str | None, ocr: str | None
) -> ImageFeatures:
    """The visual inputs of a post without a usable image: its caption/OCR words only."""
    words = build_semantic_words(caption=caption, ocr=ocr, max_text_words=config.max_caption_words)
    return ImageFeatures(key=key, status=status, error=error, semantic=words)


class VisualExtractor:
    """Builds the configured backbone and detector once, then extracts image after image."""

    def __init__(self, config: VisionConfig | None = None, *, backbone: Backbone | None = None, detector: Detector | None = None) -> None:
        # a private copy: editing the caller's config later cannot change what this extractor does
        self.config = config = copy.deepcopy(config) if config is not None else VisionConfig()
        self.backbone = backbone if backbone is not None else (
            build_backbone(config.backbone, config.backbone_weights, config.backbone_options) if config.backbone else None
        )
        self.detector = detector if detector is not None else (
            build_detector(config.detector, config.detector_options) if config.detector else None
        )
        if self.backbone is None and self.detector is None:
            raise ValueError("VisualExtractor needs a backbone or a detector")
        known = getattr(self.detector, "labels", None)
        if config.classes is not None and isinstance(known, dict):
            unknown = sorted(set(config.classes) - set(known.values()))
            if unknown:
                raise ConfigError(
                    f"vision.classes: {unknown} are not classes of detector {config.detector!r}; it knows {sorted(set(known.values()))}"
                )
        self._dtype = _DTYPES[config.dtype]

    # -- identity -------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Everything that determines the extracted numbers: format version, settings, model files."""
        return {
            "format_version": FEATURE_FORMAT_VERSION,
            "settings": self.config.feature_settings(),
            "backbone": self.backbone.identity() if self.backbone is not None else None,
            "detector": self.detector.identity() if self.detector is not None else None,
        }

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.identity())

    # -- entry points ---------------------------------------------------------------------------
    def load(self, source: str | os.PathLike[str] | bytes, name: str | None = None) -> LoadedImage:
        """Decode with this extractor's size limits; raises ImageError (the caller applies the policy)."""
        return load_image(source, max_side=self.config.max_image_side, max_pixels=self.config.max_image_pixels, name=name)

    def extract_file(
        self,
        source: str | os.PathLike[str] | bytes | None,
        *,
        key: str | None = None,
        caption: str | None = None,
        ocr: str | None = None,
    ) -> ImageFeatures:
        """Load and extract one image; ``None`` means the post has no image (caption/OCR words only).

        A missing, unreadable, truncated or too large image raises :class:`ImageError` under the
        ``error`` policy; under ``skip`` it is logged and the post keeps only its caption/OCR words.
        """
        if key is None:
            key = "<bytes>" if isinstance(source, bytes) else os.path.basename(os.fspath(source)) if source is not None else "<none>"
        if source is None:
            return self.without_image(key, "no_image", None, caption, ocr)
        try:
            loaded = self.load(source, name=key if isinstance(source, bytes) else None)
        except ImageError as exc:
            return self.handle_bad_image(key, exc, caption, ocr)
        return self.extract(loaded, key=key, caption=caption, ocr=ocr)

    def handle_bad_image(self, key: str, exc: ImageError, caption: str | None, ocr: str | None) -> ImageFeatures:
        if self.config.on_bad_image == "error":
            raise exc
        log.log(logging.DEBUG if exc.kind == "missing" else logging.WARNING, "skipping the visual part of %s: %s", key, exc)
        return self.without_image(key, exc.kind, str(exc), caption, ocr)

    def without_image(self, key: str, status: str, error: str | None, caption: str | None, ocr: str | None) -> ImageFeatures:
        return features_without_image(self.config, key, status, error, caption, ocr)

    @torch.inference_mode()
    def extract(self, loaded: LoadedImage, *, key: str, caption: str | None = None, ocr: str | None = None) -> ImageFeatures:
        """Every visual input of one decoded image."""
        cfg = self.config
        grid32: Tensor | None = None
        imagenet: list[tuple[str, float]] = []
        if self.backbone is not None:
            x = self.backbone.preprocessing.to_tensor(loaded.image)[None]  # shape: (1, 3, H, W)
            out = self.backbone(x)
            grid32 = out.grid[0].float()  # shape: (C, h, w)
            if out.logits is not None and self.backbone.class_names is not None and cfg.topk_classes > 0:
                probs = out.logits[0].float().softmax(-1)  # shape: (classes,)
                top_p, top_i = probs.topk(min(cfg.topk_classes, probs.numel()))
                names = self.backbone.class_names
                imagenet = [(names[int(i)].split(",")[0].strip(), round(float(p), 6)) for p, i in zip(top_p, top_i, strict=True) if float(p) >= cfg.min_class_prob]

        dets = self.select_objects(self.detector.detect(loaded.image)) if self.detector is not None else Detections.empty()
        vectors: Tensor | None = None
        if grid32 is not None:
            vectors = self.region_vectors(loaded, grid32, dets.boxes)  # shape: (k, C)
        geom, direction = pair_geometry(dets.boxes, num_direction_bins=cfg.direction_bins)
        semantic = build_semantic_words(
            detected=dets.labels,
            imagenet=[n for n, _ in imagenet],
            caption=caption,
            ocr=ocr,
            max_text_words=cfg.max_caption_words,
        )
        return ImageFeatures(
            key=key,
            status="ok",
            image_size=loaded.original_size,
            grid=grid32.to(self._dtype) if grid32 is not None else None,
            imagenet=imagenet,
            boxes=dets.boxes.float(),
            object_scores=dets.scores.float(),
            object_class_ids=dets.class_ids.long(),
            object_labels=list(dets.labels),
            object_vectors=vectors.to(self._dtype) if vectors is not None else None,
            pair_geometry=geom.float(),
            pair_direction=direction.long(),
            semantic=semantic,
        )

    # -- pieces ---------------------------------------------------------------------------------
    def select_objects(self, dets: Detections) -> Detections:
        """Non-finite rows dropped, boxes clipped to the image, score threshold, class filter, NMS (if
        the detector has none), degenerate boxes, top-k."""
        cfg = self.config
        if dets.boxes.shape[0] == 0:
            return dets
        finite = torch.isfinite(dets.boxes).all(dim=1) & torch.isfinite(dets.scores)  # shape: (n,)
        dets = dets.select(finite.nonzero().flatten())
        # a plug-in detector may overshoot the image: boxes are clipped to it (the packaged ones clip)
        dets = Detections(dets.boxes.clamp(0.0, 1.0), dets.scores, dets.class_ids, dets.labels)
        wh = dets.boxes[:, 2:] - dets.boxes[:, :2]  # shape: (n, 2)
        keep = (dets.scores >= cfg.score_threshold) & (wh > 1e-4).all(dim=1)
        if cfg.classes is not None:
            wanted = set(cfg.classes)
            keep &= torch.tensor([label in wanted for label in dets.labels], dtype=torch.bool)
        dets = dets.select(keep.nonzero().flatten())
        if dets.boxes.shape[0] == 0:
            return dets
        if not self.detector or not self.detector.applies_nms:
            order = batched_nms(dets.boxes, dets.scores, dets.class_ids, cfg.nms_iou)
        else:
            # stable sort: equal scores keep the detector's order
            order = torch.sort(dets.scores, descending=True, stable=True).indices
        return dets.select(order[: cfg.max_objects])

    def region_vectors(self, loaded: LoadedImage, grid: Tensor, boxes: Tensor) -> Tensor:
        """One vector per box: RoIAlign over the grid (default) or the backbone on the cropped box."""
        assert self.backbone is not None
        channels, gh, gw = grid.shape
        k = boxes.shape[0]
        if k == 0:
            return grid.new_zeros(0, channels)
        if self.config.region_mode == "roialign":
            scale = torch.tensor([gw, gh, gw, gh], dtype=grid.dtype)
            rois = torch.cat([torch.zeros(k, 1, dtype=grid.dtype), boxes.to(grid.dtype) * scale], dim=1)  # shape: (k, 5)
            pooled = roi_align(
                grid[None], rois, self.config.roi_output_size, spatial_scale=1.0, sampling_ratio=self.config.roi_sampling_ratio, aligned=True
            )  # shape: (k, C, o, o)
            return pooled.mean(dim=(2, 3))  # shape: (k, C)
        w, h = loaded.image.size
        vectors = []
        for x1, y1, x2, y2 in boxes.tolist():
            left, top = int(x1 * w), int(y1 * h)
            right, bottom = max(left + 1, round(x2 * w)), max(top + 1, round(y2 * h))
            crop = loaded.image.crop((left, top, min(right, w), min(bottom, h)))
            x = self.backbone.preprocessing.to_tensor(crop)[None]  # shape: (1, 3, H, W)
            vectors.append(self.backbone(x).grid[0].float().mean(dim=(1, 2)))  # shape: (C,)
        return torch.stack(vectors)  # shape: (k, C)
