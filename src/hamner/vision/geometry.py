"""Geometry of detected objects, the input of HamLearning's spatial (relation-aware) attention.

``box_features`` describes each object on its own; ``pair_geometry`` gives, for every ordered pair of
objects (i, j), the relation-network style vector [log dx, log dy, log width ratio, log height ratio,
IoU] and a discrete direction bin that is embedded as a learned attention bias.

Direction convention (image coordinates, x to the right, y DOWN): the angle of the vector from the
centre of i to the centre of j is ``atan2(cy_j - cy_i, cx_j - cx_i)``. Bin ``b`` of ``B`` covers angles
``[b*2pi/B - pi/B, b*2pi/B + pi/B)``, so bin 0 means "j is right of i" and the bins then turn
CLOCKWISE as the image is seen on screen (because y points down, a positive angle points down). For
B = 8: 0 right, 1 below-right, 2 below, 3 below-left, 4 left, 5 above-left, 6 above, 7 above-right.
The extra bin ``B`` means "same place": the centres coincide within ``eps`` on both axes (always the
case for i == j). An angle that falls exactly on a bin boundary goes to whichever side float rounding
puts it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hamner.vision.ops import box_iou

__all__ = ["BOX_FEATURES", "PAIR_FEATURES", "box_features", "pair_geometry"]

BOX_FEATURES = ("x1", "y1", "x2", "y2", "w", "h", "area")
PAIR_FEATURES = ("log_dx", "log_dy", "log_w_ratio", "log_h_ratio", "iou")


def _checked(boxes: Tensor) -> Tensor:
    """``boxes`` as a floating (k, 4) xyxy tensor with x2 >= x1 and y2 >= y1 on every row."""
    if boxes.dim() != 2 or boxes.size(1) != 4:
        raise ValueError(f"boxes must be (k, 4) xyxy, got shape {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        boxes = boxes.float()
    # Written as "not ordered" so that NaN coordinates are caught as well.
    bad = ~((boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1]))  # shape: (k,)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"boxes row {row} must have x2 >= x1 and y2 >= y1, got {boxes[row].tolist()}")
    return boxes


def box_features(boxes: Tensor) -> Tensor:
    """Per-object geometry, columns named by ``BOX_FEATURES``: (k, 4) -> (k, 7).

    ``boxes`` are xyxy normalised by the image size, so the features are comparable across images
    (the range [0, 1] is expected but not enforced: detectors may overshoot the border slightly).
    """
    boxes = _checked(boxes)
    wh = boxes[:, 2:] - boxes[:, :2]  # shape: (k, 2)
    area = wh[:, :1] * wh[:, 1:]  # shape: (k, 1)
    return torch.cat([boxes, wh, area], dim=1)  # shape: (k, 7)


def pair_geometry(boxes: Tensor, *, num_direction_bins: int = 8, eps: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Relation geometry for every ordered pair (i, j): ``geom`` (k, k, 5) float and ``direction`` (k, k) long.

    ``geom[i, j]`` follows ``PAIR_FEATURES``: ``log(max(|cx_i - cx_j|, eps) / w_i)``,
    ``log(max(|cy_i - cy_j|, eps) / h_i)``, ``log(w_j / w_i)``, ``log(h_j / h_i)`` and IoU, with widths
    and heights clamped to >= ``eps`` so that degenerate (zero-size) boxes still give finite numbers.
    Distances are relative to the size of i, so the vector is invariant to image scale.
    ``direction[i, j]`` is the bin of the direction from i to j, in 0..B (see the module docstring:
    0 = right, clockwise on screen, B = same place).
    """
    if isinstance(num_direction_bins, bool) or not isinstance(num_direction_bins, int) or num_direction_bins < 1:
        raise ValueError(f"num_direction_bins must be an int >= 1, got {num_direction_bins!r}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    boxes = _checked(boxes)
    k = boxes.size(0)
    if k == 0:
        geom = boxes.new_zeros((0, 0, len(PAIR_FEATURES)))  # shape: (0, 0, 5)
        return geom, torch.zeros((0, 0), dtype=torch.long, device=boxes.device)

    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # shape: (k, 2)
    size = (boxes[:, 2:] - boxes[:, :2]).clamp_min(eps)  # shape: (k, 2)
    delta = centre[None, :, :] - centre[:, None, :]  # shape: (k, k, 2), delta[i, j] = centre_j - centre_i
    log_dxy = torch.log(delta.abs().clamp_min(eps) / size[:, None, :])  # shape: (k, k, 2)
    log_ratio = torch.log(size[None, :, :] / size[:, None, :])  # shape: (k, k, 2)
    iou = box_iou(boxes, boxes)  # shape: (k, k)
    geom = torch.cat([log_dxy, log_ratio, iou[..., None]], dim=-1)  # shape: (k, k, 5)

    bins = num_direction_bins
    angle = torch.atan2(delta[..., 1], delta[..., 0])  # shape: (k, k), in [-pi, pi], y down
    # Bin b is centred on b * 2pi/B, so shift by half a bin before flooring; wrap -pi.. into 0..B-1.
    direction = torch.floor(angle / (2 * math.pi / bins) + 0.5).long().remainder(bins)  # shape: (k, k)
    same = (delta.abs() <= eps).all(dim=-1)  # shape: (k, k)
    direction = torch.where(same, torch.full_like(direction, bins), direction)
    return geom, direction
