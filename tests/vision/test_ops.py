"""roi_align against hand-worked numbers and a loop-by-loop port of torchvision's CPU kernel; box ops by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hamner.vision.ops import batched_nms, box_iou, nms, roi_align


def ramp() -> torch.Tensor:
    """A 1x1x4x4 map with f[y, x] = 4 * y + x, values 0..15.

    f is linear, so wherever the clamped sample (x, y) lies inside the map, bilinear interpolation
    gives exactly 4 * y + x; the hand cases below work through the weights anyway.
    """
    return torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)


# ---------------------------------------------------------------------------------------------
# Hand-computed cases (feature map ``ramp``: row y holds 4y, 4y+1, 4y+2, 4y+3).
# ---------------------------------------------------------------------------------------------


def test_aligned_2x2_sampling_1_hits_pixel_centres() -> None:
    # Box [0, 0, 2, 2], aligned: start = 0 - 0.5 = -0.5, width = height = 2, bin = 1.
    # One sample per bin at -0.5 + p * 1 + 0.5 * 1 = p -> points (x, y) = (0,0), (1,0), (0,1), (1,1),
    # exactly on pixels: weights (1, 0, 0, 0) -> f = [[0, 1], [4, 5]].
    out = roi_align(ramp(), torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]]), 2, sampling_ratio=1, aligned=True)
    assert out.shape == (1, 1, 2, 2)
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 1.0], [4.0, 5.0]]]]))


def test_aligned_1x1_sampling_2_averages_four_pixels() -> None:
    # Same box, one bin of size 2, two samples per axis at -0.5 + (0.5) * 2/2 = 0 and -0.5 + 1.5 = 1:
    # points (0,0), (1,0), (0,1), (1,1) -> (0 + 1 + 4 + 5) / 4 = 2.5.
    out = roi_align(ramp(), torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]]), 1, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(out, torch.tensor([[[[2.5]]]]))


def test_unaligned_fractional_weights() -> None:
    # Box [0, 1, 1, 3, 2], not aligned: start x = 1, y = 1, width 2, height 1; one 1x1 bin.
    # Samples x = 1 + 0.5 * 2/2 = 1.5, 1 + 1.5 * 2/2 = 2.5; y = 1 + 0.5 * 1/2 = 1.25, 1 + 1.5/2 = 1.75.
    # Point (1.5, 1.25): y_low = 1, x_low = 1, ly = 0.25, lx = 0.5, weights
    #   hy*hx = 0.375 on f[1,1] = 5, hy*lx = 0.375 on f[1,2] = 6, ly*hx = 0.125 on f[2,1] = 9, ly*lx = 0.125 on f[2,2] = 10
    #   -> 1.875 + 2.25 + 1.125 + 1.25 = 6.5 (= 4 * 1.25 + 1.5).
    # The others likewise: (2.5, 1.25) = 7.5, (1.5, 1.75) = 8.5, (2.5, 1.75) = 9.5; mean = 8.0.
    out = roi_align(ramp(), torch.tensor([[0.0, 1.0, 1.0, 3.0, 2.0]]), 1, sampling_ratio=2, aligned=False)
    torch.testing.assert_close(out, torch.tensor([[[[8.0]]]]))
    # Sampling ratio 1: the single sample is the bin centre (2, 1.5) -> 4 * 1.5 + 2 = 8.0 as well.
    out = roi_align(ramp(), torch.tensor([[0.0, 1.0, 1.0, 3.0, 2.0]]), 1, sampling_ratio=1, aligned=False)
    torch.testing.assert_close(out, torch.tensor([[[[8.0]]]]))


def test_boundary_rules_clamp_and_zero() -> None:
    # Box [0, -1.5, 2.5, 0.5, 3.5], not aligned: start x = -1.5, y = 2.5, width 2, height 1, one bin.
    # Samples x = -1.0, 0.0; y = 2.75, 3.25.
    # x = -1.0 is not < -1, so it is kept and clamped to 0. y = 3.25 <= H = 4 is kept; y_low = 3 >= H - 1,
    # so y becomes 3 with all weight on row 3.
    #   (0, 2.75): ly = 0.75 between f[2,0] = 8 and f[3,0] = 12 -> 0.25 * 8 + 0.75 * 12 = 11, twice;
    #   (0, 3): f[3,0] = 12, twice.  Mean = (11 + 11 + 12 + 12) / 4 = 11.5.
    out = roi_align(ramp(), torch.tensor([[0.0, -1.5, 2.5, 0.5, 3.5]]), 1, sampling_ratio=2, aligned=False)
    torch.testing.assert_close(out, torch.tensor([[[[11.5]]]]))
    # Box [0, 2, 3, 4, 5], not aligned: start (2, 3), width = height = 2. Samples x = 2.5, 3.5; y = 3.5, 4.5.
    # y = 4.5 > H = 4: both samples in that row are 0 (and still count in the average).
    #   (2.5, 3.5): y -> 3, weights 0.5/0.5 on f[3,2] = 14 and f[3,3] = 15 -> 14.5;
    #   (3.5, 3.5): x_low = 3 >= W - 1 so x -> 3, y -> 3 -> f[3,3] = 15.  Mean = (14.5 + 15 + 0 + 0) / 4 = 7.375.
    out = roi_align(ramp(), torch.tensor([[0.0, 2.0, 3.0, 4.0, 5.0]]), 1, sampling_ratio=2, aligned=False)
    torch.testing.assert_close(out, torch.tensor([[[[7.375]]]]))


def test_unaligned_clamps_small_boxes_to_one_pixel() -> None:
    # Box [0, 1, 1, 1.2, 1.2] is 0.2 wide. Not aligned: width/height clamp to 1, so the single sample is at
    # 1 + 0.5 = 1.5 on both axes -> 4 * 1.5 + 1.5 = 7.5. Aligned: start 0.5, width 0.2, sample at
    # 0.5 + 0.1 = 0.6 -> 4 * 0.6 + 0.6 = 3.0.
    box = torch.tensor([[0.0, 1.0, 1.0, 1.2, 1.2]])
    torch.testing.assert_close(roi_align(ramp(), box, 1, sampling_ratio=1, aligned=False), torch.tensor([[[[7.5]]]]))
    torch.testing.assert_close(roi_align(ramp(), box, 1, sampling_ratio=1, aligned=True), torch.tensor([[[[3.0]]]]))


def test_spatial_scale_maps_image_to_feature_coordinates() -> None:
    # Image box [0, 0, 4, 4] at scale 0.5 is the feature box [0, 0, 2, 2] of the first hand case.
    out = roi_align(ramp(), torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]]), 2, spatial_scale=0.5, sampling_ratio=1)
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 1.0], [4.0, 5.0]]]]))


# ---------------------------------------------------------------------------------------------
# Reference: torchvision's CPU kernel (roi_align_kernel.cpp), transcribed as plain loops.
# ---------------------------------------------------------------------------------------------


def _bilinear_interpolate(fmap: list[list[float]], height: int, width: int, y: float, x: float) -> float:
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    if y <= 0:
        y = 0.0
    if x <= 0:
        x = 0.0
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * fmap[y_low][x_low]
        + hy * lx * fmap[y_low][x_high]
        + ly * hx * fmap[y_high][x_low]
        + ly * lx * fmap[y_high][x_high]
    )


def reference_roi_align(
    features: torch.Tensor,
    boxes: torch.Tensor,
    pooled: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    _, channels, height, width = features.shape
    ph_n, pw_n = pooled
    fm = features.tolist()
    out = torch.zeros(boxes.size(0), channels, ph_n, pw_n, dtype=torch.float64)
    for n, row in enumerate(boxes.tolist()):
        b = int(row[0])
        offset = 0.5 if aligned else 0.0
        start_w = row[1] * spatial_scale - offset
        start_h = row[2] * spatial_scale - offset
        end_w = row[3] * spatial_scale - offset
        end_h = row[4] * spatial_scale - offset
        roi_w, roi_h = end_w - start_w, end_h - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / ph_n, roi_w / pw_n
        count = max(sampling_ratio * sampling_ratio, 1)
        for c in range(channels):
            for ph in range(ph_n):
                for pw in range(pw_n):
                    total = 0.0
                    for iy in range(sampling_ratio):
                        y = start_h + ph * bin_h + (iy + 0.5) * bin_h / sampling_ratio
                        for ix in range(sampling_ratio):
                            x = start_w + pw * bin_w + (ix + 0.5) * bin_w / sampling_ratio
                            total += _bilinear_interpolate(fm[b][c], height, width, y, x)
                    out[n, c, ph, pw] = total / count
    return out


def random_boxes(gen: torch.Generator, k: int, batch: int, img_h: float, img_w: float) -> torch.Tensor:
    """Boxes in image coordinates, many partly (or wholly) outside the image, a few tiny ones."""
    x1 = torch.rand(k, generator=gen, dtype=torch.float64) * (img_w + 8) - 6
    y1 = torch.rand(k, generator=gen, dtype=torch.float64) * (img_h + 8) - 6
    w = torch.rand(k, generator=gen, dtype=torch.float64) * img_w * 0.8
    h = torch.rand(k, generator=gen, dtype=torch.float64) * img_h * 0.8
    w[:2] = w[:2] * 0.05
    b = torch.randint(0, batch, (k,), generator=gen).to(torch.float64)
    return torch.stack([b, x1, y1, x1 + w, y1 + h], dim=1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize(
    ("shape", "pooled", "sampling_ratio", "spatial_scale"),
    [
        ((3, 2, 7, 9), (2, 3), 2, 0.5),
        ((3, 2, 7, 9), (3, 1), 1, 0.5),
        ((2, 3, 6, 5), (1, 1), 3, 1.0),
        ((2, 2, 1, 5), (2, 2), 2, 1.0),  # a single-row map: the normalisation must not divide by zero
        ((1, 1, 4, 1), (3, 2), 2, 0.25),
    ],
)
def test_matches_reference_kernel(
    shape: tuple[int, int, int, int], pooled: tuple[int, int], sampling_ratio: int, spatial_scale: float, aligned: bool
) -> None:
    gen = torch.Generator().manual_seed(hash((shape, pooled, sampling_ratio, aligned)) % 2**31)
    features = torch.randn(shape, generator=gen, dtype=torch.float64)
    boxes = random_boxes(gen, 10, shape[0], shape[2] / spatial_scale, shape[3] / spatial_scale)
    got = roi_align(
        features, boxes, pooled, spatial_scale=spatial_scale, sampling_ratio=sampling_ratio, aligned=aligned
    )
    want = reference_roi_align(features, boxes, pooled, spatial_scale, sampling_ratio, aligned)
    assert got.shape == (10, shape[1], *pooled)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_float32_matches_reference() -> None:
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    boxes = random_boxes(gen, 8, 2, 32.0, 32.0)
    got = roi_align(features.float(), boxes.float(), (2, 2), spatial_scale=0.25)
    assert got.dtype == torch.float32
    want = reference_roi_align(features.float().double(), boxes.float().double(), (2, 2), 0.25, 2, True)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)


def test_output_order_follows_boxes_not_images() -> None:
    features = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    boxes = torch.tensor([[1.0, 0, 0, 3, 3], [0.0, 0, 0, 3, 3], [1.0, 1, 1, 4, 4]], dtype=torch.float64)
    got = roi_align(features, boxes, 2)
    for i in range(3):
        torch.testing.assert_close(got[i : i + 1], roi_align(features, boxes[i : i + 1], 2))
    torch.testing.assert_close(got[0, 0], roi_align(features[1:], boxes[:1] * torch.tensor([0.0, 1, 1, 1, 1]), 2)[0, 0])


def test_gradcheck_features() -> None:
    features = torch.randn(2, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0.0, 0.3, -0.6, 2.9, 2.2], [1.0, -1.2, 0.4, 4.6, 3.7]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_align(f, boxes, (2, 2), sampling_ratio=2), (features,))


def test_no_boxes_gives_empty_output() -> None:
    out = roi_align(torch.randn(2, 3, 4, 4), torch.zeros(0, 5), (2, 5))
    assert out.shape == (0, 3, 2, 5)
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    ("features", "boxes", "kwargs", "match"),
    [
        (torch.zeros(3, 4, 4), torch.zeros(1, 5), {}, "features must be"),
        (torch.zeros(1, 1, 4, 4), torch.zeros(1, 4), {}, r"boxes must be \(K, 5\).*\(1, 4\)"),
        (torch.zeros(1, 1, 4, 4), torch.zeros(5), {}, r"boxes must be .*\(5,\)"),
        (torch.zeros(1, 1, 4, 4, dtype=torch.long), torch.zeros(1, 5), {}, "floating-point"),
        (torch.zeros(1, 1, 4, 4), torch.zeros(1, 5), {"sampling_ratio": -1}, "sampling_ratio"),
        (torch.zeros(1, 1, 4, 4), torch.zeros(1, 5), {"sampling_ratio": 0}, "sampling_ratio"),
        (torch.zeros(1, 1, 4, 4), torch.zeros(1, 5), {"output_size": 0}, "output_size"),
        (torch.zeros(1, 1, 4, 4), torch.zeros(1, 5), {"output_size": (2, 2, 2)}, "output_size"),
        (torch.zeros(1, 1, 4, 4), torch.zeros(1, 5), {"spatial_scale": 0.0}, "spatial_scale"),
        (torch.zeros(1, 1, 4, 4), torch.tensor([[1.0, 0, 0, 1, 1]]), {}, "batch indices in \\[0, 1\\)"),
        (torch.zeros(2, 1, 4, 4), torch.tensor([[0.5, 0, 0, 1, 1]]), {}, "integer batch indices"),
    ],
)
def test_bad_input_raises(features: torch.Tensor, boxes: torch.Tensor, kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"output_size": 2, **kwargs}
    output_size = args.pop("output_size")
    with pytest.raises(ValueError, match=match):
        roi_align(features, boxes, output_size, **args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# box_iou, nms, batched_nms
# ---------------------------------------------------------------------------------------------


def test_box_iou_hand_cases() -> None:
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2], [5, 5, 5, 5]])
    b = torch.tensor([[0.0, 0, 2, 2], [1, 0, 3, 2], [4, 4, 6, 6], [5, 5, 5, 5]])
    iou = box_iou(a, b)
    # identical: 1; shifted by half the width: inter 1*2 = 2, union 4 + 4 - 2 = 6 -> 1/3; disjoint: 0;
    # a zero-area box has IoU 0 with everything, itself included (not NaN).
    want = torch.tensor(
        [
            [1.0, 1 / 3, 0.0, 0.0],
            [1.0, 1 / 3, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(iou, want)
    assert box_iou(torch.zeros(0, 4), b).shape == (0, 4)
    with pytest.raises(ValueError, match=r"b must be \(n, 4\).*\(4, 5\)"):
        box_iou(a, torch.zeros(4, 5))


def test_nms_identical_and_disjoint() -> None:
    same = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2]])
    assert nms(same, torch.tensor([0.8, 0.9]), 0.5).tolist() == [1]
    disjoint = torch.tensor([[0.0, 0, 1, 1], [2, 2, 3, 3], [5, 5, 6, 6]])
    assert nms(disjoint, torch.tensor([0.3, 0.9, 0.5]), 0.5).tolist() == [1, 2, 0]


def test_nms_threshold_is_strict() -> None:
    # [0,0,3,1] and [1,0,4,1]: inter 2, union 4 -> IoU exactly 0.5: kept at threshold 0.5, suppressed below.
    boxes = torch.tensor([[0.0, 0, 3, 1], [1, 0, 4, 1]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]
    # half overlap (IoU 1/3)
    half = torch.tensor([[0.0, 0, 2, 2], [1, 0, 3, 2]])
    assert nms(half, scores, 0.3).tolist() == [0]
    assert nms(half, scores, 0.4).tolist() == [0, 1]


def test_nms_is_greedy_and_ties_keep_lower_index() -> None:
    # A overlaps B (IoU 1/3), B overlaps C (1/3), A and C are disjoint: greedy keeps A and C.
    chain = torch.tensor([[0.0, 0, 2, 2], [1, 0, 3, 2], [2, 0, 4, 2]])
    assert nms(chain, torch.tensor([0.9, 0.8, 0.7]), 0.3).tolist() == [0, 2]
    # Equal scores: the lower index ranks first, both among overlapping and disjoint boxes.
    assert nms(chain, torch.tensor([0.5, 0.5, 0.5]), 0.3).tolist() == [0, 2]
    tied = torch.tensor([[5.0, 5, 6, 6], [0, 0, 2, 2], [0, 0, 2, 2], [8, 8, 9, 9]])
    assert nms(tied, torch.tensor([0.5, 0.7, 0.7, 0.5]), 0.5).tolist() == [1, 0, 3]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).dtype == torch.long


def test_batched_nms_only_within_class() -> None:
    boxes = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2], [0.1, 0, 2, 2], [10, 10, 12, 12]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    classes = torch.tensor([0, 1, 0, 1])
    # 0 suppresses 2 (same class), 1 survives (other class) and 3 is far away.
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 1, 3]
    assert batched_nms(boxes, scores, torch.zeros(4, dtype=torch.long), 0.5).tolist() == [0, 3]
    # A negative threshold suppresses every same-class box, still never across classes.
    assert batched_nms(boxes, scores, classes, -1.0).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"classes must be \(4,\).*\(3,\)"):
        batched_nms(boxes, scores, classes[:3], 0.5)
    with pytest.raises(ValueError, match=r"scores must be \(4,\).*\(4, 1\)"):
        nms(boxes, scores[:, None], 0.5)
    # inter 1.9 * 2 = 3.8, union 4 + 3.8 - 3.8 = 4 -> 0.95
    assert math.isclose(float(box_iou(boxes[:1], boxes[2:3])), 0.95, rel_tol=1e-6)


def test_nan_box_gives_zeros_like_torchvision() -> None:
    # torchvision treats a NaN sample coordinate as outside the map (weight 0), not as NaN.
    boxes = torch.tensor([[0.0, math.nan, 0, 2, 2], [0, 0, 0, 2, 2]])
    out = roi_align(ramp(), boxes, 2, sampling_ratio=1)
    torch.testing.assert_close(out[0], torch.zeros(1, 2, 2))
    torch.testing.assert_close(out[1], torch.tensor([[[0.0, 1.0], [4.0, 5.0]]]))
