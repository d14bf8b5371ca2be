"""Object geometry for spatial attention, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hamner.vision.geometry import BOX_FEATURES, PAIR_FEATURES, box_features, pair_geometry

# A = (0.1, 0.1, 0.3, 0.5): cx = 0.2, cy = 0.3, w = 0.2, h = 0.4
# B = (0.5, 0.2, 0.9, 0.4): cx = 0.7, cy = 0.3, w = 0.4, h = 0.2   (right of A, same height)
# C = (0.2, 0.3, 0.4, 0.7): cx = 0.3, cy = 0.5, w = 0.2, h = 0.4   (below-right of A, overlapping it)
# D = (0.1, 0.6, 0.3, 0.8): cx = 0.2, cy = 0.7, w = 0.2, h = 0.2   (straight below A)
A, B, C, D = (0.1, 0.1, 0.3, 0.5), (0.5, 0.2, 0.9, 0.4), (0.2, 0.3, 0.4, 0.7), (0.1, 0.6, 0.3, 0.8)
EPS = 1e-3


def boxes(*rows: tuple[float, float, float, float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_feature_names() -> None:
    assert BOX_FEATURES == ("x1", "y1", "x2", "y2", "w", "h", "area")
    assert PAIR_FEATURES == ("log_dx", "log_dy", "log_w_ratio", "log_h_ratio", "iou")


def test_box_features_by_hand() -> None:
    out = box_features(boxes(A, B))
    want = torch.tensor(
        [
            [0.1, 0.1, 0.3, 0.5, 0.2, 0.4, 0.08],
            [0.5, 0.2, 0.9, 0.4, 0.4, 0.2, 0.08],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(out, want)
    assert box_features(torch.zeros(0, 4)).shape == (0, 7)


def test_pair_geometry_a_b_by_hand() -> None:
    geom, direction = pair_geometry(boxes(A, B))
    assert geom.shape == (2, 2, 5) and direction.shape == (2, 2)
    assert geom.dtype == torch.float64 and direction.dtype == torch.long
    # (A, B): |dx| = 0.5, |dy| = 0 -> clamped to eps.
    #   log_dx = log(0.5 / 0.2) = log 2.5;  log_dy = log(1e-3 / 0.4) = log 0.0025
    #   log_w_ratio = log(0.4 / 0.2) = log 2;  log_h_ratio = log(0.2 / 0.4) = log 0.5;  IoU = 0 (disjoint in x)
    want_ab = [math.log(2.5), math.log(0.0025), math.log(2.0), math.log(0.5), 0.0]
    # (B, A): sizes relative to B.
    #   log_dx = log(0.5 / 0.4) = log 1.25;  log_dy = log(1e-3 / 0.2) = log 0.005
    #   log_w_ratio = log(0.2 / 0.4) = log 0.5;  log_h_ratio = log(0.4 / 0.2) = log 2;  IoU = 0
    want_ba = [math.log(1.25), math.log(0.005), math.log(0.5), math.log(2.0), 0.0]
    torch.testing.assert_close(geom[0, 1], torch.tensor(want_ab, dtype=torch.float64))
    torch.testing.assert_close(geom[1, 0], torch.tensor(want_ba, dtype=torch.float64))
    # Directions with B = 8 bins of 45 degrees centred on 0, 45, 90, ... (y down):
    # A -> B points along +x: angle 0 -> bin 0 ("right"); B -> A: angle pi -> bin 4 ("left").
    assert direction[0, 1] == 0
    assert direction[1, 0] == 4


def test_pair_geometry_overlap_and_diagonal() -> None:
    geom, direction = pair_geometry(boxes(A, C))
    # (A, C): dx = 0.1, dy = 0.2; log_dx = log(0.1 / 0.2), log_dy = log(0.2 / 0.4), same size -> ratios 0.
    # Intersection x [0.2, 0.3] x y [0.3, 0.5] = 0.02; union 0.08 + 0.08 - 0.02 = 0.14 -> IoU 1/7.
    want = [math.log(0.5), math.log(0.5), 0.0, 0.0, 1 / 7]
    torch.testing.assert_close(geom[0, 1], torch.tensor(want, dtype=torch.float64))
    torch.testing.assert_close(geom[1, 0, 4], geom[0, 1, 4])
    # A -> C: atan2(0.2, 0.1) = 63.4 degrees, in bin 1 = [22.5, 67.5): below-right (y down).
    # C -> A: 63.4 - 180 = -116.6 degrees = 243.4, in bin 5 = [202.5, 247.5): above-left.
    assert direction[0, 1] == 1
    assert direction[1, 0] == 5


def test_below_and_above_bins() -> None:
    # D is straight below A: angle +pi/2 with y pointing down -> bin 2 ("below"); A from D -> bin 6 ("above").
    _, direction = pair_geometry(boxes(A, D))
    assert direction[0, 1] == 2
    assert direction[1, 0] == 6
    # With 4 bins: 0 right, 1 below, 2 left, 3 above.
    _, direction = pair_geometry(boxes(A, D, B), num_direction_bins=4)
    assert direction[0, 1] == 1 and direction[1, 0] == 3
    assert direction[0, 2] == 0 and direction[2, 0] == 2


def test_same_place_gets_extra_bin() -> None:
    # i == i always, and two different boxes with the same centre (within eps) too.
    inner = (0.15, 0.25, 0.25, 0.35)  # centre (0.2, 0.3) like A
    _, direction = pair_geometry(boxes(A, B, inner), num_direction_bins=8)
    assert direction.diagonal().tolist() == [8, 8, 8]
    assert direction[0, 2] == 8 and direction[2, 0] == 8
    assert int(direction.min()) >= 0 and int(direction.max()) <= 8
    _, direction = pair_geometry(boxes(A, B), num_direction_bins=1)
    assert direction.tolist() == [[1, 0], [0, 1]]


def test_degenerate_boxes_stay_finite() -> None:
    point = (0.5, 0.5, 0.5, 0.5)  # zero width and height -> clamped to eps
    geom, direction = pair_geometry(boxes(A, point, point))
    assert torch.isfinite(geom).all()
    assert geom[1, 2].tolist() == pytest.approx([math.log(1.0), math.log(1.0), 0.0, 0.0, 0.0])  # eps / eps; IoU 0
    assert geom[0, 1, 2].item() == pytest.approx(math.log(EPS / 0.2))
    assert direction[1, 2] == 8


def test_empty_and_float32() -> None:
    geom, direction = pair_geometry(torch.zeros(0, 4))
    assert geom.shape == (0, 0, 5) and direction.shape == (0, 0) and direction.dtype == torch.long
    geom, direction = pair_geometry(torch.tensor([A, B]))
    assert geom.dtype == torch.float32
    assert direction.tolist() == [[8, 0], [4, 8]]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (torch.zeros(3, 5), r"boxes must be \(k, 4\).*\(3, 5\)"),
        (torch.zeros(4), r"boxes must be \(k, 4\).*\(4,\)"),
        (torch.tensor([A, (0.5, 0.2, 0.4, 0.4)]), "row 1 must have x2 >= x1"),
        (torch.tensor([A, B, (0.5, 0.6, 0.9, 0.4)]), "row 2 must have x2 >= x1 and y2 >= y1"),
        (torch.tensor([(math.nan, 0.1, 0.2, 0.3)]), "row 0"),
    ],
)
def test_bad_boxes_raise(value: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pair_geometry(value)
    with pytest.raises(ValueError, match=match):
        box_features(value)


@pytest.mark.parametrize("bins", [0, -3])
def test_bad_bin_count_raises(bins: int) -> None:
    with pytest.raises(ValueError, match="num_direction_bins"):
        pair_geometry(boxes(A), num_direction_bins=bins)
