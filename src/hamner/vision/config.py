"""The typed settings of visual feature extraction.

Every field that changes the extracted tensors takes part in the extractor's fingerprint (see
:meth:`VisionConfig.feature_settings`); the others (threads, batch size, what to do with a bad image)
only change how the work is done.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hamner.errors import ConfigError

IMAGE_POLICIES = ("error", "skip")
REGION_MODES = ("roialign", "crop")

# Settings that do not change a single extracted number; left out of the fingerprint.
_RUNTIME_FIELDS = frozenset({"on_bad_image"})
_FLOAT_FIELDS = ("score_threshold", "nms_iou", "min_class_prob")


@dataclass
class VisionConfig:
    """How an image becomes the global, object, spatial and semantic inputs of HamLearning.

    Defaults are the packaged offline models: EfficientNet-Lite0 (7x7 grid, ImageNet classes) and
    SSD-MobileNet-V2 COCO through OpenCV DNN.
    """

    # Backbone: a registered name ("efficientnet-lite0", "torchvision:resnet152", ...) or
    # "package.module:factory". None switches the grid, region vectors and ImageNet words off.
    backbone: str | None = "efficientnet-lite0"
    backbone_weights: str | None = None  # a weights file; None = the backbone's packaged default
    backbone_options: dict[str, Any] = field(default_factory=dict)  # keyword arguments for the backbone's factory
    # Detector: a registered name ("ssd-mobilenet-v2-coco", "torchvision:fasterrcnn_resnet50_fpn")
    # or "package.module:factory". None switches objects and spatial geometry off.
    detector: str | None = "ssd-mobilenet-v2-coco"
    detector_options: dict[str, Any] = field(default_factory=dict)  # keyword arguments for the detector's factory

    # Objects
    max_objects: int = 10  # the k highest-scoring boxes kept per image
    score_threshold: float = 0.4  # a box needs at least this detector score
    classes: list[str] | None = None  # keep only these detector classes (None = all)
    nms_iou: float = 0.5  # applied per class when the detector does not do NMS itself
    region_mode: str = "roialign"  # "roialign" over the backbone grid, or "crop" (re-encode each box)
    roi_output_size: int = 2  # RoIAlign bins per side; the bins are averaged into one vector
    roi_sampling_ratio: int = 2  # RoIAlign sampling points per bin and side
    direction_bins: int = 8  # angle bins of the pairwise geometry (plus one "same place" bin)

    # Semantic words
    topk_classes: int = 5  # ImageNet class names kept per image
    min_class_prob: float = 0.05  # ... if their softmax probability reaches this
    max_caption_words: int = 40  # caption / OCR words kept per image

    # Image input
    max_image_side: int = 1024  # larger images are downscaled (aspect kept) before anything else
    max_image_pixels: int = 89_478_485  # more pixels than this in the header: refused (decompression bomb)
    on_bad_image: str = "error"  # "error", or "skip" the visual part of the post (logged and counted)

    # Storage
    dtype: str = "float16"  # grid and region vectors are stored (and returned) in this dtype

    # There is no batch size: the models see one image at a time (decoding runs ahead in a thread).
    # On the CPU that is the fastest (benchmarks/preprocess_throughput.py --batch-sweep) and it keeps
    # every image's numbers independent of which images share its batch. Threads are a process
    # setting (hamner.vision.set_threads, --threads), not part of this config; note that a different
    # thread count changes float results in their last bits (reductions are split differently).

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS:  # 1 and 1.0 must give the same fingerprint
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, float(value))
        if self.backbone is None and self.detector is None:
            raise ConfigError("vision: backbone and detector are both None; nothing would be extracted")
        checks: list[tuple[str, bool, str]] = [
            ("max_objects", self.max_objects >= 0, ">= 0"),
            ("score_threshold", 0.0 <= self.score_threshold <= 1.0, "in [0, 1]"),
            ("nms_iou", 0.0 < self.nms_iou <= 1.0, "in (0, 1]"),
            ("region_mode", self.region_mode in REGION_MODES, f"one of {REGION_MODES}"),
            ("roi_output_size", self.roi_output_size >= 1, ">= 1"),
            ("roi_sampling_ratio", self.roi_sampling_ratio >= 1, ">= 1"),
            ("direction_bins", self.direction_bins >= 1, ">= 1"),
            ("topk_classes", self.topk_classes >= 0, ">= 0"),
            ("min_class_prob", 0.0 <= self.min_class_prob <= 1.0, "in [0, 1]"),
            ("max_caption_words", self.max_caption_words >= 0, ">= 0"),
            ("max_image_side", self.max_image_side >= 32, ">= 32"),
            ("max_image_pixels", self.max_image_pixels >= 1, ">= 1"),
            ("on_bad_image", self.on_bad_image in IMAGE_POLICIES, f"one of {IMAGE_POLICIES}"),
            ("dtype", self.dtype in ("float16", "float32"), "'float16' or 'float32'"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"vision.{name} must be {expected}, got {getattr(self, name)!r}")
        if self.region_mode == "crop" and self.backbone is None:
            raise ConfigError("vision.region_mode 'crop' re-encodes boxes with the backbone, but vision.backbone is None")

    def feature_settings(self) -> dict[str, Any]:
        """The settings that determine the extracted numbers (the fingerprint's input)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in _RUNTIME_FIELDS}
        if out["classes"] is not None:  # a filter: its order does not matter
            out["classes"] = sorted(set(out["classes"]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "vision") -> VisionConfig:
        """Build from a mapping (YAML), checking every key and type; errors name the field."""
        from hamner.typed_config import build_dataclass

        return build_dataclass(cls, data, where)  # type: ignore[no-any-return]


def load_vision_config(
    path: str | None = None, overrides: list[str] | None = None, defaults: dict[str, Any] | None = None
) -> VisionConfig:
    """A VisionConfig from ``defaults``, then a YAML file (its top level, or its ``vision:`` section),
    then ``key=value`` overrides, each layer winning over the one before."""
    from hamner.typed_config import apply_overrides, read_yaml_mapping

    data: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml_mapping(path)
        if "vision" in loaded:  # an experiment config: its vision section
            data = loaded["vision"] or {}
        elif set(loaded) & {"name", "data", "model", "train"}:  # an experiment config without one: defaults
            data = {}
        else:  # a vision-only config file
            data = loaded
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: 'vision' must be a mapping")
    data = apply_overrides({**(defaults or {}), **data}, [o.removeprefix("vision.") for o in overrides or []])
    return VisionConfig.from_dict(data)
