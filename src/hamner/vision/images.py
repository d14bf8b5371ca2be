"""Load one image from a path or bytes into a bounded RGB picture, or fail with an :class:`ImageError`.

Tweet images come from the wild: PNGs saved under a ``.jpg`` name, GIFs, palette images with
transparency, CMYK JPEGs, 16-bit greyscale, phone photos whose pixels are stored sideways with an
EXIF orientation tag, files cut short by a failed download, and the occasional decompression bomb.
Every consumer downstream (backbones, detectors, the feature cache) wants the same thing: an RGB
:class:`PIL.Image.Image` the right way up and of bounded size. The policy, in the order it is
applied:

1. **Format from content.** PIL identifies the decoder from the file's bytes; the extension is never
   consulted. :attr:`LoadedImage.format` reports what the decoder found. Multi-frame images (GIF,
   APNG, animated WebP, multi-page TIFF) give their first frame.
2. **Size limit before decoding.** The header's ``width * height`` is checked against
   ``max_pixels`` before any pixel is decoded; more raises ``ImageError(kind="too_large")``. PIL's
   own :class:`~PIL.Image.DecompressionBombWarning` is silenced locally (our check replaces it) and
   its hard :class:`~PIL.Image.DecompressionBombError` (above twice ``Image.MAX_IMAGE_PIXELS``,
   raised while the header is read) is also reported as ``too_large``. The global
   ``Image.MAX_IMAGE_PIXELS`` is never changed, so a ``max_pixels`` above PIL's hard stop is
   capped by it.
3. **Memory budget before decoding.** The memory the decode will take is estimated from the header
   (after a JPEG's DCT reduction, step 6): the decoded pixels as PIL stores them (4 bytes a pixel
   for RGB and every multi-band mode, 1 for ``L``/``P``/``1``, 2 for ``I;16``, 4 for ``I``/``F``)
   plus the full-size copies the conversion to RGB makes (an RGBA copy and an RGB one for an image
   with transparency, an RGB one for other modes, two float arrays for high-depth greyscale, one
   more copy for an EXIF rotation). Over ``max_decoded_bytes`` raises
   ``ImageError(kind="too_large")``. A 120 kB PNG of 6000 x 6000 pixels takes 144 MB this way:
   the file size says nothing about it.
4. **Full decode inside the error boundary.** ``img.load()`` runs inside the ``try`` so that a file
   which ends early fails here (``truncated``) rather than later in a backbone.
   ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left alone: a half-grey picture is worse than a counted
   skip.
5. **EXIF orientation** is applied with :func:`PIL.ImageOps.exif_transpose`. A broken EXIF block is
   logged and ignored (the pixels are still good).
6. **To RGB.** Anything with alpha (``RGBA``, ``LA``, ``PA``, palette or greyscale/RGB with a
   ``transparency`` key) is composited over **white**: a transparent logo on white is what a
   person sees in a browser, while PIL's plain ``convert("RGB")`` drops alpha and exposes whatever
   colour the transparent pixels happen to store (often black). ``CMYK``, ``YCbCr``, ``1``, ``L``
   and opaque ``P`` use PIL's ``convert``. Greyscale with more than 8 bits is mapped to 0..255
   deterministically: ``I;16*`` is divided by 256 (a fixed scale, so one image's brightness does not
   depend on its content); ``I`` (32-bit integer) is kept if it fits 0..255, divided by 256 if it
   fits 0..65535, else scaled by ``255 / max``; ``F`` (float) is taken as 0..1 if its maximum is at
   most 1, as 0..255 if at most 255, else scaled by ``255 / max``; negatives and non-finite values
   become 0. A ``transparency`` key on such high-depth images is ignored. ICC profiles are not
   applied.
7. **Downscale, never upscale.** If the longest side exceeds ``max_side`` the image is resized,
   keeping the aspect ratio, so that the longest side equals ``max_side``. JPEGs are first decoded
   at a reduced DCT scale with ``img.draft`` (never below the target size), which makes a 6000 px
   photo cheap; the final resize is ``Image.Resampling.BILINEAR`` with ``reducing_gap``. Both steps
   are deterministic: the same bytes always give the same pixels. Small images are returned at
   their own size; consumers resize to their input size themselves.

Errors are :class:`hamner.errors.ImageError` with ``kind`` ``missing`` (no such file),
``unreadable`` (a directory, not an image, a decoder error), ``truncated`` (the data ends early) or
``too_large``; the message always names the source so a skip log can be acted on, and a ``too_large``
message names the option that raises the limit (the caller says its name: ``hamner serve`` and
``hamner tag`` have flags, the Python API has keyword arguments).

Freed image memory goes back to the operating system only if the C allocator lets it:
:func:`return_freed_memory` makes glibc do so for large blocks (a long-running server calls it once).
"""

from __future__ import annotations

import ctypes
import io
import logging
import math
import os
import struct
import warnings
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from hamner.errors import ImageError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS)
DEFAULT_MAX_SIDE = 1024
# Estimated working memory of one decode (see the module doc, step 3): 1 GiB admits a 89 M-pixel RGB
# PNG (PIL's own bomb limit) and refuses what only a hostile or broken file asks for.
DEFAULT_MAX_DECODED_BYTES = 1024 * 1024 * 1024
# Decoders tried, in PIL's names. Others (EPS, PDF, ...) are refused: PIL would run Ghostscript on
# PostScript, and nothing else belongs in a tweet's picture.
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "ICO")  # JPEG covers MPO (phone photos)

# EXIF orientations 5..8 swap width and height (transpose/rotate by 90 or 270 degrees).
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_TRANSPOSING_ORIENTATIONS = frozenset({2, 3, 4, 5, 6, 7, 8})
# Exceptions PIL's decoders raise for bad data, besides OSError (which also covers truncation).
_DECODER_ERRORS = (SyntaxError, EOFError, ValueError, struct.error)
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class LimitOptions:
    """The names of the options that raise the size limits, as the caller's user knows them (for messages)."""

    pixels: str = "max_image_pixels (--max-image-pixels of hamner tag and hamner serve)"
    decoded: str = "max_image_decoded_mb (--max-image-decoded-mb of hamner serve; load_image's max_decoded_bytes)"


DEFAULT_LIMIT_OPTIONS = LimitOptions()


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image ready for a backbone, with where it came from and how big it was."""

    image: Image.Image
    """Mode ``RGB``, EXIF orientation applied, longest side at most ``max_side``."""
    source: str
    """The path as a string, ``"<bytes>"``, or the caller-given ``name``."""
    format: str | None
    """What the decoder found in the content (``"JPEG"``, ``"PNG"``, ``"GIF"``...), not the extension."""
    original_size: tuple[int, int]
    """``(width, height)`` after EXIF rotation and before downscaling: boxes in the original frame scale by this."""

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of :attr:`image` as returned (after any downscaling)."""
        return self.image.size


def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    name: str | None = None,
    options: LimitOptions = DEFAULT_LIMIT_OPTIONS,
) -> LoadedImage:
    """Decode ``source`` (a path or the file's bytes) into an upright RGB image no longer than ``max_side``.

    ``name`` replaces the label used in :attr:`LoadedImage.source` and in error messages (useful for
    bytes, e.g. an image id); for a path the path is still named in error messages. ``max_pixels``
    bounds the header's width x height, ``max_decoded_bytes`` the estimated memory of the decode
    (module doc, step 3); ``options`` names the options that raise them in a ``too_large`` message.
    Raises :class:`ImageError` for a missing, unreadable, truncated or too large image and
    ``ValueError`` for a non-positive ``max_side``, ``max_pixels`` or ``max_decoded_bytes``.
    """
    _check_positive("max_side", max_side)
    _check_positive("max_pixels", max_pixels)
    _check_positive("max_decoded_bytes", max_decoded_bytes)
    limits = _Limits(max_side, max_pixels, max_decoded_bytes, options)
    if isinstance(source, bytes | bytearray):
        label = name if name is not None else "<bytes>"
        return _load_from(io.BytesIO(source), label, label, limits)
    path = os.fspath(source)
    label = name if name is not None else str(path)
    where = str(path) if name is None or name == str(path) else f"{name} ({path})"
    try:
        fp = open(path, "rb")  # closed by the with below; open errors are mapped first
    except (FileNotFoundError, NotADirectoryError) as err:
        raise ImageError(label, "missing", f"no such file: {where}") from err
    except IsADirectoryError as err:
        raise ImageError(label, "unreadable", f"{where} is a directory, not an image file") from err
    except OSError as err:  # permission denied, name too long, I/O error
        raise ImageError(label, "unreadable", f"cannot open {where}: {err}") from err
    with fp:
        return _load_from(fp, label, where, limits)


def _check_positive(field: str, value: int) -> None:
    """Reject limits that would make every image fail or divide by zero."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class _Limits:
    max_side: int
    max_pixels: int
    max_decoded_bytes: int
    options: LimitOptions


def _load_from(fp: IO[bytes], label: str, where: str, limits: _Limits) -> LoadedImage:
    """Open, check, decode and normalise the image in ``fp``; ``where`` names it in messages."""
    with warnings.catch_warnings():
        # Our own max_pixels check below replaces PIL's warning; the hard error is still caught.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            Image.init()  # register every plugin first: ``formats`` names only registered ones
            img = Image.open(fp, formats=ACCEPTED_FORMATS)
        except Image.DecompressionBombError as err:
            raise ImageError(
                label,
                "too_large",
                f"{where}: {err} Raise {limits.options.pixels} (and PIL's Image.MAX_IMAGE_PIXELS) only for trusted images.",
            ) from err
        except UnidentifiedImageError as err:
            raise ImageError(
                label, "unreadable", f"{where} is not a JPEG, PNG, GIF, WebP, BMP, TIFF or ICO image (empty, text, corrupt or another format)"
            ) from err
        except OSError as err:
            raise _decode_error(label, where, err) from err
        except _DECODER_ERRORS as err:
            raise ImageError(label, "unreadable", f"cannot read the header of {where}: {err}") from err
        with img:
            return _decode(img, label, where, limits)


def _decode(img: Image.Image, label: str, where: str, limits: _Limits) -> LoadedImage:
    """Everything after a successful header read: size checks, decode, orientation, RGB, downscale."""
    fmt = img.format
    width, height = img.size
    pixels = width * height
    max_side, max_pixels = limits.max_side, limits.max_pixels
    if pixels > max_pixels:
        raise ImageError(
            label,
            "too_large",
            f"{where} is {width} x {height} = {pixels:,} pixels, more than the limit of {max_pixels:,} "
            f"(a possible decompression bomb); raise {limits.options.pixels} if the image is trusted",
        )
    try:
        img.seek(0)  # first frame of a GIF / APNG / animated WebP / multi-page TIFF
        if fmt == "JPEG" and max(width, height) > max_side:
            scale = max_side / max(width, height)
            target = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
            img.draft("RGB", target)  # DCT-domain reduction; the result is never smaller than target
    except OSError as err:
        raise _decode_error(label, where, err) from err
    except _DECODER_ERRORS as err:
        raise ImageError(label, "unreadable", f"cannot decode {where}: {err}") from err
    cost = decode_cost(img)
    if cost > limits.max_decoded_bytes:
        decoded = f" (decoded at {img.size[0]} x {img.size[1]})" if img.size != (width, height) else ""
        raise ImageError(
            label,
            "too_large",
            f"{where} is {width} x {height} pixels of mode {img.mode}{decoded}: decoding it takes about "
            f"{_mib(cost)} of memory, more than the limit of {_mib(limits.max_decoded_bytes)}; raise "
            f"{limits.options.decoded} if the image is trusted",
        )
    try:
        img.load()
    except Image.DecompressionBombError as err:
        raise ImageError(label, "too_large", f"{where}: {err}") from err
    except OSError as err:
        raise _decode_error(label, where, err) from err
    except _DECODER_ERRORS as err:
        raise ImageError(label, "unreadable", f"cannot decode {where}: {err}") from err

    orientation = _orientation(img, where)
    original_size = (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)
    upright: Image.Image = img
    if orientation in _TRANSPOSING_ORIENTATIONS:
        try:
            upright = ImageOps.exif_transpose(img)
        except (OSError, SyntaxError, ValueError, KeyError, struct.error) as err:
            logger.warning(
                "%s: could not apply EXIF orientation %s (%s); using the stored pixels", where, orientation, err
            )

    longest = max(original_size)
    resize_to = None
    if longest > max_side:
        scale = max_side / longest
        resize_to = (max(1, round(original_size[0] * scale)), max(1, round(original_size[1] * scale)))
    try:
        rgb = _to_rgb(upright, copy=resize_to is None)  # a resize makes the new image: no full-size copy
    except ValueError as err:
        raise ImageError(label, "unreadable", f"{where}: cannot convert mode {upright.mode!r} to RGB: {err}") from err
    if resize_to is not None:
        logger.debug("%s: downscaling %s x %s to %s x %s", where, *original_size, *resize_to)
        rgb = rgb.resize(resize_to, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return LoadedImage(image=rgb, source=label, format=fmt, original_size=original_size)


def _decode_error(label: str, where: str, err: OSError) -> ImageError:
    """PIL reports a short file as an OSError mentioning truncation; other OSErrors are bad data."""
    text = str(err)
    if "truncated" in text.lower():
        return ImageError(label, "truncated", f"{where} ends early ({text}); re-download it")
    return ImageError(label, "unreadable", f"cannot decode {where}: {text}")


def _orientation(img: Image.Image, where: str) -> int:
    """The EXIF orientation tag (1 = upright); a broken EXIF block counts as upright, with a warning."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError, KeyError, struct.error) as err:
        logger.warning("%s: unreadable EXIF block (%s); assuming upright", where, err)
        return 1
    return value if isinstance(value, int) else 1


def _to_rgb(img: Image.Image, copy: bool = True) -> Image.Image:
    """RGB: alpha composited over white, high bit depths scaled to 8 bits (see module doc). A new
    image, except an RGB ``img`` with ``copy=False`` (the caller resizes it into a new one)."""
    if img.mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(_high_depth_to_uint8(img), mode="L").convert("RGB")
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, _WHITE)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if img.mode == "RGB":
        return img.copy() if copy else img  # a copy detaches it from the file object, closed after loading
    return img.convert("RGB")


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """Map 16-bit, 32-bit integer or float greyscale to 0..255 with a documented, content-light rule."""
    if img.mode.startswith("I;16"):
        return (np.asarray(img).astype(np.uint32) >> 8).astype(np.uint8)
    arr = np.asarray(img).astype(np.float64)
    arr = np.where(np.isfinite(arr), arr, 0.0)
    arr = np.clip(arr, 0.0, None)
    top = float(arr.max()) if arr.size else 0.0
    if img.mode == "F" and top <= 1.0:
        arr = arr * 255.0
    elif top <= 255.0:
        pass
    elif img.mode == "I" and top <= 65535.0:
        arr = np.floor(arr / 256.0)
    else:
        arr = arr * (255.0 / top)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


# Bytes a pixel takes in PIL's storage: every multi-band mode (RGB included) takes 4.
_ONE_BAND_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}


def decode_cost(img: Image.Image) -> int:
    """Estimated bytes of decoding ``img`` (opened, not loaded) to RGB: see the module doc, step 3."""
    width, height = img.size
    pixels = width * height
    mode = img.mode
    decoded = pixels * _ONE_BAND_BYTES.get(mode, 4)
    if mode in _HIGH_DEPTH_MODES:
        conversion = pixels * (8 + 8 + 1 + 4)  # two float64 arrays, the 8-bit L image, its RGB
    elif mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        conversion = pixels * 8  # an RGBA copy, and the RGB image it is pasted on
    elif mode == "RGB":
        conversion = 0  # resized (or copied, when small) straight from the decoded pixels
    else:
        conversion = pixels * 4
    rotation = 0
    try:  # only an EXIF block already read with the header: PNG's getexif() would decode the image to look
        if "exif" in img.info and img.getexif().get(ExifTags.Base.Orientation, 1) in _TRANSPOSING_ORIENTATIONS:
            rotation = pixels * 4
    except (OSError, SyntaxError, ValueError, KeyError, struct.error):
        pass  # an unreadable EXIF block is ignored when the image is decoded (_orientation), so no rotation
    return decoded + conversion + rotation


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):,.0f} MiB"


_MMAP_THRESHOLD = -3  # glibc's M_MMAP_THRESHOLD parameter of mallopt()
_memory_tuned = False


def return_freed_memory(threshold: int = 1024 * 1024) -> bool:
    """Make freed large blocks (decoded images) go back to the operating system; True if it took effect.

    glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB), so after
    the first big image PIL's 16 MiB blocks come from the heap, and a burst of concurrent decodes
    leaves the process gigabytes larger for good (8 threads decoding 6000 x 6000 PNGs: 1.0-1.4 GB kept
    after they finish). Fixing the threshold (``mallopt(M_MMAP_THRESHOLD, 1 MiB)``) keeps every
    block of 1 MiB or more mmapped, so it is unmapped when freed (the same: 18 MB after). A process
    setting, for long-running processes; a no-op where the C library is not glibc.
    """
    global _memory_tuned
    if _memory_tuned:
        return True
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _memory_tuned = bool(mallopt(_MMAP_THRESHOLD, threshold))
    return _memory_tuned
