"""Synthetic scenes, drawn with PIL only, that the packaged SSD-MobileNet-V2 COCO detector really detects.

Each scene function draws one object on a flat background and returns a :class:`DrawnScene` with the
image, the COCO class name and the normalised box of what was drawn, so a test can check that a
detector finds the object *where* it was drawn (e.g. a sign drawn on the left gives a box on the left).

Nothing here is random, reads a file or needs a font: letters are drawn with rectangles and arcs.

Sizes: ``radius`` is a fraction of the image's shorter side. With ``radius >= 0.12`` both scenes were
detected (score >= 0.8, IoU >= 0.85) over 640x480, 320x240, 800x600, 640x360, 480x640 and 1280x720
images and light, dark, green and beige backgrounds. At ``radius = 0.1`` on a 16:9 image the object is
only ~17 px wide in the detector's 300x300 input and scores can fall below 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

Color = tuple[int, int, int]
Box = tuple[float, float, float, float]


@dataclass
class DrawnScene:
    image: Image.Image  # RGB
    label: str  # COCO class name, e.g. "stop sign" or "clock"
    box: Box  # normalised (x1, y1, x2, y2) of what was drawn, in [0, 1]

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2


def _geometry(width: int, height: int, center: tuple[float, float], radius: float) -> tuple[float, float, float]:
    """Pixel centre and radius; the object (a circle of ``radius`` x shorter side) must lie inside the image."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    cx, cy, r = center[0] * width, center[1] * height, radius * min(width, height)
    if cx - r < 0 or cy - r < 0 or cx + r > width or cy + r > height:
        raise ValueError(f"an object of radius {radius} at {center} does not fit in a {width}x{height} image")
    return cx, cy, r


def _normalise(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> Box:
    def clip(v: float) -> float:
        return min(1.0, max(0.0, v))

    return clip(x1 / width), clip(y1 / height), clip(x2 / width), clip(y2 / height)


def _draw_stop(draw: ImageDraw.ImageDraw, cx: float, cy: float, h: float, color: Color) -> None:
    """Block letters S T O P centred at (cx, cy) with cap height ``h``, from rectangles and arcs only."""
    w = h * 0.62  # letter width
    gap = h * 0.14
    t = h * 0.17  # stroke thickness
    st = max(1, round(t))
    x0 = cx - (4 * w + 3 * gap) / 2
    y0, y1 = cy - h / 2, cy + h / 2
    # S: an upper bowl open to the lower right and a lower bowl open to the upper left
    x = x0
    draw.arc([x, y0, x + w, y0 + h / 2 + t / 2], 90, 360, fill=color, width=st)
    draw.arc([x, y0 + h / 2 - t / 2, x + w, y1], -90, 180, fill=color, width=st)
    # T
    x = x0 + (w + gap)
    draw.rectangle([x, y0, x + w, y0 + t], fill=color)
    draw.rectangle([x + w / 2 - t / 2, y0, x + w / 2 + t / 2, y1], fill=color)
    # O
    x = x0 + 2 * (w + gap)
    draw.ellipse([x, y0, x + w, y1], outline=color, width=st)
    # P
    x = x0 + 3 * (w + gap)
    draw.rectangle([x, y0, x + t, y1], fill=color)
    draw.arc([x - w * 0.1, y0, x + w, y0 + h * 0.58], -90, 90, fill=color, width=st)
    draw.rectangle([x, y0, x + w * 0.45, y0 + t], fill=color)
    draw.rectangle([x, y0 + h * 0.58 - t, x + w * 0.45, y0 + h * 0.58], fill=color)


def stop_sign_scene(
    width: int = 640,
    height: int = 480,
    center: tuple[float, float] = (0.3, 0.4),
    radius: float = 0.18,
    background: Color = (200, 210, 220),
) -> DrawnScene:
    """A red octagonal STOP sign with a white rim on a grey pole.

    ``center`` is the sign's centre as fractions of width and height; ``radius`` (the octagon's
    circumradius) is a fraction of the shorter side. The returned box is the octagon's (the pole,
    below the sign, is not part of it).
    """
    cx, cy, r = _geometry(width, height, center, radius)
    img = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(img)
    draw.rectangle([cx - r * 0.06, cy, cx + r * 0.06, height], fill=(120, 120, 120))  # pole

    def octagon(rr: float) -> list[tuple[float, float]]:
        return [
            (cx + rr * math.cos(math.radians(22.5 + 45 * k)), cy + rr * math.sin(math.radians(22.5 + 45 * k)))
            for k in range(8)
        ]

    outer = octagon(r)
    draw.polygon(outer, fill=(255, 255, 255))
    draw.polygon(octagon(r * 0.9), fill=(200, 20, 30))
    _draw_stop(draw, cx, cy, r * 0.38, (255, 255, 255))
    xs, ys = [p[0] for p in outer], [p[1] for p in outer]
    return DrawnScene(img, "stop sign", _normalise(min(xs), min(ys), max(xs), max(ys), width, height))


def clock_scene(
    width: int = 640,
    height: int = 480,
    center: tuple[float, float] = (0.3, 0.4),
    radius: float = 0.18,
    background: Color = (180, 160, 120),
) -> DrawnScene:
    """A round wall clock: dark rim, white face, 60 minute ticks (bold every 5), hands at 10:10.

    ``center`` is the clock's centre as fractions of width and height; ``radius`` is a fraction of the
    shorter side. The returned box is the rim's bounding box.
    """
    cx, cy, r = _geometry(width, height, center, radius)
    img = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(img)
    ink = (20, 20, 20)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(30, 30, 30))  # rim
    ri = r * 0.9
    draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=(250, 250, 245))  # face

    def polar(frac: float, deg: float) -> tuple[float, float]:
        a = math.radians(deg)
        return cx + ri * frac * math.sin(a), cy - ri * frac * math.cos(a)

    for k in range(60):
        hour = k % 5 == 0
        length = 0.18 if hour else 0.06
        tick_w = max(1, int(r * (0.05 if hour else 0.015)))
        draw.line([polar(0.95, 6 * k), polar(0.95 - length, 6 * k)], fill=ink, width=tick_w)
    draw.line([(cx, cy), polar(0.5, 305)], fill=ink, width=max(1, int(r * 0.07)))  # hour hand, ~10
    draw.line([(cx, cy), polar(0.75, 60)], fill=ink, width=max(1, int(r * 0.045)))  # minute hand, 10
    hub = r * 0.05
    draw.ellipse([cx - hub, cy - hub, cx + hub, cy + hub], fill=ink)
    return DrawnScene(img, "clock", _normalise(cx - r, cy - r, cx + r, cy + r, width, height))
