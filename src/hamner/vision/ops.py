"""Region pooling and box operations, written in plain PyTorch so that torchvision is not needed.

``roi_align`` reproduces ``torchvision.ops.roi_align`` (Mask R-CNN RoIAlign, CPU kernel rules) with a
fixed ``sampling_ratio``; ``box_iou``, ``nms`` and ``batched_nms`` are the usual detector helpers, with
deterministic tie-breaking so that cached object lists do not depend on the sort implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["batched_nms", "box_iou", "nms", "roi_align"]


def _pair(output_size: int | tuple[int, int]) -> tuple[int, int]:
    """``output_size`` as (height, width), both positive ints."""
    if isinstance(output_size, int) and not isinstance(output_size, bool):
        size = (output_size, output_size)
    elif (
        isinstance(output_size, tuple | list)
        and len(output_size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in output_size)
    ):
        size = (int(output_size[0]), int(output_size[1]))
    else:
        raise ValueError(f"output_size must be an int or a pair of ints, got {output_size!r}")
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return size


def _axis_samples(start: Tensor, bin_size: Tensor, bins: int, sampling_ratio: int) -> Tensor:
    """Sample coordinates along one axis: ``start + p * bin + (i + 0.5) * bin / s`` for bin p, sub-sample i.

    The operation order follows torchvision's kernel so the float results agree to the last bits.
    """
    # shape: start, bin_size (k,)
    p = torch.arange(bins, device=start.device, dtype=start.dtype).repeat_interleave(sampling_ratio)  # shape: (bins*s,)
    i = torch.arange(sampling_ratio, device=start.device, dtype=start.dtype).repeat(bins)  # shape: (bins*s,)
    first = start[:, None] + p[None, :] * bin_size[:, None]  # shape: (k, bins*s)
    return first + (i[None, :] + 0.5) * bin_size[:, None] / sampling_ratio  # shape: (k, bins*s)


def roi_align(
    features: Tensor,
    boxes: Tensor,
    output_size: int | tuple[int, int],
    *,
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> Tensor:
    """Pool a fixed-size feature grid for each box, as ``torchvision.ops.roi_align`` does.

    ``features`` is (N, C, H, W); ``boxes`` is (K, 5) with rows ``[batch_index, x1, y1, x2, y2]`` in
    input-image coordinates, multiplied by ``spatial_scale`` to reach feature coordinates. With
    ``aligned`` the box is shifted by -0.5 so that pixel centres sit at integer coordinates; without it
    the box width and height are clamped to at least 1. Each of the ``output_size`` bins averages
    ``sampling_ratio`` x ``sampling_ratio`` bilinear samples at regularly spaced points inside the bin.
    A sample with y outside [-1, H] or x outside [-1, W] counts as 0 (still in the average); otherwise
    its coordinates are clamped to [0, H-1] x [0, W-1] before interpolation (torchvision's CPU rules).

    Vectorised as one ``grid_sample`` call (bilinear, ``align_corners=True``, zero padding) on the
    clamped coordinates: with ``align_corners=True`` the normalised coordinate ``2 * y / (H - 1) - 1``
    maps back to exactly pixel ``y``, and the clamping keeps every sample inside the map, so zero
    padding never contributes; the out-of-range samples are zeroed by a mask afterwards. Boxes are
    grouped per image (padded to the largest group) so the feature map is never copied per box.

    Returns (K, C, oh, ow). Gradients flow to ``features`` (and, through the sample positions, to box
    coordinates, which torchvision does not provide). ``sampling_ratio`` must be >= 1: torchvision's
    adaptive ``-1`` (a per-box number of samples) is not supported.
    """
    oh, ow = _pair(output_size)
    if features.dim() != 4:
        raise ValueError(f"features must be (N, C, H, W), got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating-point tensor, got dtype {features.dtype}")
    n, c, h, w = features.shape
    if h < 1 or w < 1:
        raise ValueError(f"features must have a non-empty spatial size, got shape {tuple(features.shape)}")
    if boxes.dim() != 2 or boxes.size(1) != 5:
        raise ValueError(f"boxes must be (K, 5) rows [batch_index, x1, y1, x2, y2], got shape {tuple(boxes.shape)}")
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int) or sampling_ratio < 1:
        raise ValueError(f"sampling_ratio must be an int >= 1 (adaptive -1 is not supported), got {sampling_ratio!r}")
    if not spatial_scale > 0:
        raise ValueError(f"spatial_scale must be positive, got {spatial_scale!r}")
    k = boxes.size(0)
    if k == 0:
        return features.new_zeros((0, c, oh, ow))  # shape: (0, C, oh, ow)

    boxes = boxes.to(device=features.device, dtype=features.dtype)
    batch = boxes[:, 0]  # shape: (K,)
    index = batch.long()  # shape: (K,)
    if not torch.equal(index.to(batch.dtype), batch) or int(index.min()) < 0 or int(index.max()) >= n:
        raise ValueError(f"boxes[:, 0] must hold integer batch indices in [0, {n}), got {batch.tolist()}")

    offset = 0.5 if aligned else 0.0
    coords = boxes[:, 1:] * spatial_scale - offset  # shape: (K, 4)
    x1, y1, x2, y2 = coords.unbind(1)  # shape: 4 x (K,)
    roi_w = x2 - x1  # shape: (K,)
    roi_h = y2 - y1  # shape: (K,)
    if not aligned:
        roi_w = roi_w.clamp_min(1.0)
        roi_h = roi_h.clamp_min(1.0)
    s = sampling_ratio
    ys = _axis_samples(y1, roi_h / oh, oh, s)  # shape: (K, oh*s)
    xs = _axis_samples(x1, roi_w / ow, ow, s)  # shape: (K, ow*s)

    # torchvision: a sample with y < -1, y > H, x < -1 or x > W is 0; otherwise clamp into the map.
    # Written as "in range" so that NaN coordinates count as outside, as in torchvision.
    valid_y = (ys >= -1.0) & (ys <= h)  # shape: (K, oh*s)
    valid_x = (xs >= -1.0) & (xs <= w)  # shape: (K, ow*s)
    valid = valid_y[:, :, None] & valid_x[:, None, :]  # shape: (K, oh*s, ow*s)
    # Out-of-range samples are moved to 0 first so that no NaN reaches grid_sample.
    gy = torch.where(valid_y, ys, 0.0).clamp(0.0, h - 1) * (2.0 / max(h - 1, 1)) - 1.0  # shape: (K, oh*s)
    gx = torch.where(valid_x, xs, 0.0).clamp(0.0, w - 1) * (2.0 / max(w - 1, 1)) - 1.0  # shape: (K, ow*s)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # shape: (K, oh*s, ow*s, 2)

    # Place each box's grid in its image's slot: rank = position among the boxes of the same image.
    counts = torch.bincount(index, minlength=n)  # shape: (N,)
    starts = counts.cumsum(0) - counts  # shape: (N,)
    order = torch.argsort(index, stable=True)  # shape: (K,)
    rank = torch.empty_like(index)  # shape: (K,)
    rank[order] = torch.arange(k, device=index.device) - starts[index[order]]
    kmax = int(counts.max())
    padded = grid.new_zeros((n, kmax, oh * s, ow * s, 2))  # shape: (N, kmax, oh*s, ow*s, 2)
    padded[index, rank] = grid
    sampled = F.grid_sample(
        features,
        padded.view(n, kmax * oh * s, ow * s, 2),  # shape: (N, kmax*oh*s, ow*s, 2)
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )  # shape: (N, C, kmax*oh*s, ow*s)
    sampled = sampled.view(n, c, kmax, oh * s, ow * s).permute(0, 2, 1, 3, 4)  # shape: (N, kmax, C, oh*s, ow*s)
    per_box = sampled[index, rank]  # shape: (K, C, oh*s, ow*s)
    per_box = torch.where(valid[:, None], per_box, 0.0)  # shape: (K, C, oh*s, ow*s)
    return per_box.view(k, c, oh, s, ow, s).mean(dim=(3, 5))  # shape: (K, C, oh, ow)


def _check_boxes(name: str, boxes: Tensor) -> None:
    if boxes.dim() != 2 or boxes.size(1) != 4:
        raise ValueError(f"{name} must be (n, 4) xyxy boxes, got shape {tuple(boxes.shape)}")


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise intersection over union of xyxy boxes: (N, 4), (M, 4) -> (N, M).

    A pair whose union has no area (two zero-area boxes) gets IoU 0, not NaN, so degenerate
    detections never poison the geometry features or NMS.
    """
    _check_boxes("a", a)
    _check_boxes("b", b)
    area_a = (a[:, 2] - a[:, 0]).clamp_min(0) * (a[:, 3] - a[:, 1]).clamp_min(0)  # shape: (N,)
    area_b = (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)  # shape: (M,)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])  # shape: (N, M, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # shape: (N, M, 2)
    wh = (bottom_right - top_left).clamp_min(0)  # shape: (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]  # shape: (N, M)
    union = area_a[:, None] + area_b[None, :] - inter  # shape: (N, M)
    positive = union > 0
    # Divide by a safe denominator so that neither the value nor its gradient is NaN.
    return torch.where(positive, inter / torch.where(positive, union, torch.ones_like(union)), torch.zeros_like(union))


def _greedy_nms(overlaps: Tensor, scores: Tensor) -> Tensor:
    """Greedy suppression given ``overlaps[i, j]`` = "i suppresses j if i is kept and ranked higher".

    Ties in score keep the lower index first (stable sort), so the result is deterministic.
    """
    order = torch.sort(scores, descending=True, stable=True).indices  # shape: (K,)
    over = overlaps[order][:, order].tolist()  # (K, K) in score order, as Python lists
    suppressed = [False] * len(over)
    keep: list[int] = []
    for i, row in enumerate(over):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in range(i + 1, len(row)):
            if row[j]:
                suppressed[j] = True
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]  # shape: (kept,)


def _check_nms(boxes: Tensor, scores: Tensor) -> None:
    _check_boxes("boxes", boxes)
    if scores.dim() != 1 or scores.size(0) != boxes.size(0):
        raise ValueError(f"scores must be ({boxes.size(0)},) to match boxes, got shape {tuple(scores.shape)}")


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, sorted by decreasing score.

    A box is suppressed by a kept, higher-ranked box when their IoU is strictly greater than
    ``iou_threshold``. Equal scores are ranked by lower index first, so the result is deterministic.
    """
    _check_nms(boxes, scores)
    return _greedy_nms(box_iou(boxes, boxes) > iou_threshold, scores)  # shape: (kept,)


def batched_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou_threshold: float) -> Tensor:
    """``nms`` run independently within each class: boxes of different classes never suppress each other.

    Uses an IoU matrix masked by class instead of torchvision's coordinate-offset trick, which loses
    precision for large coordinates. Returns indices sorted by decreasing score over all classes.
    """
    _check_nms(boxes, scores)
    if classes.dim() != 1 or classes.size(0) != boxes.size(0):
        raise ValueError(f"classes must be ({boxes.size(0)},) to match boxes, got shape {tuple(classes.shape)}")
    same = classes[:, None] == classes[None, :]  # shape: (K, K)
    return _greedy_nms((box_iou(boxes, boxes) > iou_threshold) & same, scores)  # shape: (kept,)
