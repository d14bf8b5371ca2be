"""The extractor with plug-in (fake) models: objects, regions, geometry, semantic words, policies."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from fakes import TINY_CLASSES, ColourDetector, TinyBackbone, scene
from hamner.errors import ConfigError, ImageError
from hamner.vision.backbones import build_backbone
from hamner.vision.config import VisionConfig, load_vision_config
from hamner.vision.detectors import Detections, build_detector
from hamner.vision.extractor import ImageFeatures, VisualExtractor
from hamner.vision.semantics import build_semantic_words, imagenet_short_name

FAKE = {"backbone": "fakes:tiny_backbone", "detector": "fakes:ColourDetector"}


def make(**settings: object) -> VisualExtractor:
    return VisualExtractor(VisionConfig(**{**FAKE, **settings}))  # type: ignore[arg-type]


def save(img, path: Path) -> Path:  # type: ignore[no-untyped-def]
    img.save(path)
    return path


def test_plugins_by_name_build_the_right_objects() -> None:
    ex = make()
    assert isinstance(ex.backbone, TinyBackbone) and isinstance(ex.detector, ColourDetector)


def test_extract_gives_every_level(tmp_path: Path) -> None:
    ex = make(topk_classes=3, min_class_prob=0.0)
    f = ex.extract_file(save(scene(), tmp_path / "a.png"), caption="Obama visits Paris")
    assert f.status == "ok" and f.has_image and f.image_size == (120, 90)
    assert f.grid is not None and f.grid.shape == (8, 8, 8) and f.grid.dtype == torch.float16
    # the echo boxes were removed by NMS (the fake detector does none); most confident first
    assert f.object_labels == ["stop sign", "clock"]
    torch.testing.assert_close(f.boxes[0], torch.tensor([10 / 120, 10 / 90, 50 / 120, 40 / 90]))
    torch.testing.assert_close(f.boxes[1], torch.tensor([70 / 120, 50 / 90, 110 / 120, 85 / 90]))
    assert f.object_vectors is not None and f.object_vectors.shape == (2, 8)
    assert f.pair_geometry.shape == (2, 2, 5) and f.pair_direction.shape == (2, 2)
    assert f.pair_direction[0, 1] == 1  # the clock is below-right of the stop sign
    assert f.pair_direction[0, 0] == 8  # "same place" bin
    assert f.box_features.shape == (2, 7)
    assert len(f.imagenet) == 3 and all(name in [imagenet_short_name(c) for c in TINY_CLASSES] for name, _ in f.imagenet)
    assert f.semantic.from_source("detector") == ["stop", "sign", "clock"]
    assert f.semantic.from_source("imagenet") == [n for name, _ in f.imagenet for n in name.split()]
    assert f.semantic.from_source("caption") == ["Obama", "visits", "Paris"]


def test_region_vectors_pool_the_grid_under_the_box(tmp_path: Path) -> None:
    """RoIAlign on a box covering exactly grid cells [0, 4) x [0, 4) with 1 bin and 2 x 2 samples
    reads the centres of the 4 quadrant cells' neighbourhoods: compare with roi_align itself on the
    float32 grid, and check it differs from a box elsewhere."""
    ex = make(roi_output_size=1, dtype="float32")
    img = scene(width=64, height=64, red=(0, 0, 32, 32), blue=(32, 32, 64, 64))
    f = ex.extract_file(save(img, tmp_path / "q.png"))
    assert f.grid is not None and f.object_vectors is not None
    from hamner.vision.ops import roi_align

    expected = roi_align(f.grid[None], torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]]), 1, sampling_ratio=2, aligned=True)[0, :, 0, 0]
    torch.testing.assert_close(f.object_vectors[0], expected)
    assert not torch.allclose(f.object_vectors[0], f.object_vectors[1])


def test_crop_mode_reencodes_each_box(tmp_path: Path) -> None:
    path = save(scene(), tmp_path / "a.png")
    ex = make(region_mode="crop", dtype="float32")
    f = ex.extract_file(path)
    assert f.object_vectors is not None and f.object_vectors.shape == (2, 8)
    assert ex.backbone is not None
    crop = ex.load(path).image.crop((10, 10, 50, 40))
    with torch.no_grad():
        direct = ex.backbone(ex.backbone.preprocessing.to_tensor(crop)[None]).grid[0].mean(dim=(1, 2))
    torch.testing.assert_close(f.object_vectors[0], direct)


def test_threshold_class_filter_and_top_k(tmp_path: Path) -> None:
    path = save(scene(), tmp_path / "a.png")
    assert make(score_threshold=0.95).extract_file(path).num_objects == 0
    assert make(classes=["clock"]).extract_file(path).object_labels == ["clock"]
    assert make(max_objects=1).extract_file(path).object_labels == ["stop sign"]
    # without NMS the echoes would be there: nms_iou=1.0 keeps everything that is not identical
    assert make(nms_iou=1.0).extract_file(path).num_objects == 4


def test_no_objects_and_detector_or_backbone_alone(tmp_path: Path) -> None:
    empty = save(scene(red=None, blue=None), tmp_path / "e.png")
    f = make().extract_file(empty)
    assert f.num_objects == 0 and f.object_vectors is not None and f.object_vectors.shape == (0, 8)
    assert f.pair_geometry.shape == (0, 0, 5)
    only_det = make(backbone=None).extract_file(save(scene(), tmp_path / "a.png"))
    assert only_det.grid is None and only_det.object_vectors is None and only_det.num_objects == 2 and only_det.imagenet == []
    only_bb = make(detector=None).extract_file(tmp_path / "a.png")
    assert only_bb.num_objects == 0 and only_bb.grid is not None
    with pytest.raises(ConfigError, match="both None"):
        VisionConfig(backbone=None, detector=None)


@pytest.mark.parametrize(
    ("content", "kind"),
    [(None, "missing"), (b"", "unreadable"), (b"not an image at all", "unreadable")],
)
def test_bad_image_policy(tmp_path: Path, content: bytes | None, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=kind) as err:
        make().extract_file(path)
    assert str(path) in str(err.value)
    f = make(on_bad_image="skip").extract_file(path, caption="a red bus")
    assert f.status == kind and not f.has_image and f.grid is None and f.num_objects == 0
    assert f.semantic.words == ["a", "red", "bus"] and set(f.semantic.sources) == {"caption"}
    if kind != "missing":
        assert "skipping the visual part" in caplog.text


def test_truncated_and_too_large_are_reported(tmp_path: Path) -> None:
    full = tmp_path / "full.jpg"
    scene(400, 300).save(full, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert make(on_bad_image="skip").extract_file(cut).status == "truncated"
    big = make(on_bad_image="skip", max_image_pixels=1000).extract_file(full)
    assert big.status == "too_large" and "max_image_pixels" in (big.error or "")


def test_the_extractor_keeps_its_own_copy_of_the_config(tmp_path: Path) -> None:
    cfg = VisionConfig(**FAKE)  # type: ignore[arg-type]
    ex = VisualExtractor(cfg)
    before = ex.fingerprint
    cfg.score_threshold = 0.99  # the caller edits its object afterwards
    assert ex.fingerprint == before and ex.extract_file(save(scene(), tmp_path / "a.png")).num_objects == 2


def test_unknown_class_filter_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\['stop sgn'\] are not classes of detector"):
        make(classes=["stop sgn"])


def test_plugin_boxes_are_clipped_and_non_finite_rows_dropped(tmp_path: Path) -> None:
    ex = make(region_mode="crop")
    raw = Detections(
        torch.tensor([[0.5, 0.5, 1.3, 1.2], [float("-inf"), 0.0, float("inf"), 1.0], [1.2, 1.2, 1.5, 1.5], [0.1, 0.1, 0.2, float("nan")]]),
        torch.tensor([0.9, 0.9, 0.9, 0.9]),
        torch.tensor([1, 1, 2, 2]),
        ["stop sign", "stop sign", "clock", "clock"],
    )
    kept = ex.select_objects(raw)
    assert kept.boxes.tolist() == [[0.5, 0.5, 1.0, 1.0]]  # the box outside the image became degenerate
    loaded = ex.load(save(scene(), tmp_path / "a.png"))
    assert ex.region_vectors(loaded, torch.zeros(8, 8, 8), kept.boxes).shape == (1, 8)


def test_no_image_keeps_the_caption() -> None:
    f = make().extract_file(None, key="p1", caption="a dog", ocr="SALE 50%")
    assert f.status == "no_image" and f.semantic.sources == ["caption", "caption", "ocr", "ocr", "ocr"]


def test_bytes_and_file_give_the_same_features(tmp_path: Path) -> None:
    path = save(scene(), tmp_path / "a.png")
    ex = make()
    a = ex.extract_file(path, key="k")
    b = ex.extract_file(path.read_bytes(), key="k")
    assert a.same_as(b)


def test_fingerprint_tracks_feature_settings_only() -> None:
    base = make().fingerprint
    assert make(on_bad_image="skip").fingerprint == base
    assert make(score_threshold=1).fingerprint == make(score_threshold=1.0).fingerprint  # int vs float
    assert make(classes=["clock", "stop sign"]).fingerprint == make(classes=["stop sign", "clock", "clock"]).fingerprint
    renamed = TinyBackbone()
    renamed.class_names = [f"other{i}" for i in range(5)]
    assert VisualExtractor(VisionConfig(**FAKE), backbone=renamed).fingerprint != base  # type: ignore[arg-type]
    assert make(score_threshold=0.5).fingerprint != base
    assert make(roi_output_size=3).fingerprint != base
    other_weights = VisualExtractor(VisionConfig(**FAKE), backbone=TinyBackbone(seed=1))  # type: ignore[arg-type]
    assert other_weights.fingerprint != base


def test_serialisation_round_trip(tmp_path: Path) -> None:
    f = make().extract_file(save(scene(), tmp_path / "a.png"), caption="hi there")
    g = ImageFeatures.from_parts(f.record(), f.tensors())
    assert g.same_as(f)
    with pytest.raises(ValueError, match="status"):
        ImageFeatures(key="x", status="fine")


def test_registered_names_build_plugins() -> None:
    from fakes import tiny_backbone
    from hamner.vision.backbones import BACKBONES, register_backbone
    from hamner.vision.detectors import DETECTORS, register_detector

    register_backbone("tiny-test")(tiny_backbone)
    register_detector("colour-test")(ColourDetector)
    try:
        ex = VisualExtractor(VisionConfig(backbone="tiny-test", detector="colour-test"))
        assert isinstance(ex.backbone, TinyBackbone) and isinstance(ex.detector, ColourDetector)
    finally:
        BACKBONES.pop("tiny-test")
        DETECTORS.pop("colour-test")


def test_registry_errors() -> None:
    with pytest.raises(ConfigError, match="unknown vision.backbone 'nope'"):
        build_backbone("nope")
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module'"):
        build_backbone("no_such_module:factory")
    with pytest.raises(ConfigError, match="has no callable 'missing'"):
        build_detector("fakes:missing")
    with pytest.raises(ConfigError, match="calling it with weights"):
        build_backbone("fakes:scene")
    with pytest.raises(ConfigError, match="not a hamner Detector"):
        build_detector("fakes:scene")
    with pytest.raises(ConfigError, match="unknown vision.detector"):
        build_detector("yolo")


def test_config_file_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "v.yaml"
    p.write_text("vision:\n  max_objects: 5\n  classes: [person, dog]\n")
    cfg = load_vision_config(str(p), ["score_threshold=0.6", "vision.topk_classes=2"])
    assert (cfg.max_objects, cfg.classes, cfg.score_threshold, cfg.topk_classes) == (5, ["person", "dog"], 0.6, 2)
    with pytest.raises(ConfigError, match="vision.max_objects: expected an integer"):
        load_vision_config(None, ["max_objects=many"])
    with pytest.raises(ConfigError, match="unknown keys \\['colour'\\]"):
        load_vision_config(None, ["colour=red"])
    with pytest.raises(ConfigError, match="region_mode must be one of"):
        VisionConfig(region_mode="pool")


def test_semantic_words_order_dedup_and_limits() -> None:
    words = build_semantic_words(
        detected=["person", "person", "stop sign"],
        imagenet=["tabby, tabby cat", "web site, website"],
        caption="A man, on a bike!",
        ocr="",
        max_text_words=3,
    )
    assert words.words == ["person", "stop", "sign", "tabby", "web", "site", "A", "man", ","]
    assert words.sources == ["detector"] * 3 + ["imagenet"] * 3 + ["caption"] * 3
    invisible = build_semantic_words(caption="\ufeff a \u200b dog \x00 \u202e", max_text_words=5)
    assert invisible.words == ["a", "dog"]


# -- torchvision plug-ins, shown with a stand-in torchvision module (the real one does not import here)


class _MiniResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=4)
        self.layer1 = nn.Conv2d(4, 6, 3, stride=8, padding=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 10)


class _MiniDetector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(1, 1)

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        _, h, w = images[0].shape
        return [{"boxes": torch.tensor([[0.0, 0.0, w / 2, h / 2]]), "labels": torch.tensor([18]), "scores": torch.tensor([0.8])}]


def test_torchvision_backbone_and_detector_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    detection = types.ModuleType("torchvision.models.detection")
    models.resnet152 = lambda weights=None: _MiniResNet()  # type: ignore[attr-defined]
    detection.fasterrcnn_resnet50_fpn = lambda weights=None, weights_backbone=None: _MiniDetector()  # type: ignore[attr-defined]
    for name, mod in (("torchvision", tv), ("torchvision.models", models), ("torchvision.models.detection", detection)):
        monkeypatch.setitem(sys.modules, name, mod)
    torch.save(_MiniResNet().state_dict(), tmp_path / "r.pth")
    torch.save(_MiniDetector().state_dict(), tmp_path / "d.pth")

    cfg = VisionConfig(
        backbone="torchvision:resnet152",
        backbone_weights=str(tmp_path / "r.pth"),
        detector="torchvision:fasterrcnn_resnet50_fpn",
        detector_options={"weights": str(tmp_path / "d.pth")},
        score_threshold=0.5,
    )
    ex = VisualExtractor(cfg)
    f = ex.extract_file(save(scene(), tmp_path / "a.png"))
    assert f.grid is not None and f.grid.shape == (6, 7, 7)  # 224 / 4 / 8 = 7
    assert f.object_labels == ["dog"] and torch.allclose(f.boxes, torch.tensor([[0.0, 0.0, 0.5, 0.5]]))
    assert ex.identity()["backbone"]["name"] == "torchvision:resnet152"
    with pytest.raises(ConfigError, match="needs vision.backbone_weights"):
        build_backbone("torchvision:resnet152")
    with pytest.raises(ConfigError, match=r"detector 'torchvision:fasterrcnn_resnet50_fpn': weights file .*nope.pth' does not exist"):
        build_detector("torchvision:fasterrcnn_resnet50_fpn", {"weights": str(tmp_path / "nope.pth")})
    with pytest.raises(ConfigError, match="has no architecture 'resnet9000'"):
        build_backbone("torchvision:resnet9000", weights=str(tmp_path / "r.pth"))


def test_detections_validate_sizes() -> None:
    with pytest.raises(ValueError, match="inconsistent sizes"):
        Detections(torch.zeros(2, 4), torch.zeros(1), torch.zeros(2, dtype=torch.long), ["a", "b"])
