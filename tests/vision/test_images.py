"""load_image: every mode and format to upright, bounded RGB, and every broken file to a named ImageError."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, features

from hamner.errors import ImageError
from hamner.vision.images import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, LoadedImage, load_image

WHITE = (255, 255, 255)


def pixel(loaded: LoadedImage, xy: tuple[int, int]) -> tuple[int, int, int]:
    value = loaded.image.getpixel(xy)
    assert isinstance(value, tuple)
    return (int(value[0]), int(value[1]), int(value[2]))


def close_to(actual: tuple[int, int, int], expected: tuple[int, int, int], tol: int = 6) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


def save(img: Image.Image, path: Path, fmt: str | None = None, **params: object) -> Path:
    img.save(path, format=fmt, **params)
    return path


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def assert_rgb(loaded: LoadedImage, size: tuple[int, int]) -> None:
    assert loaded.image.mode == "RGB"
    assert loaded.size == size
    assert loaded.image.size == size


# --- formats and modes -------------------------------------------------------------------------


def test_jpeg_rgb(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (30, 20), (200, 30, 40)), tmp_path / "a.jpg", quality=95)
    loaded = load_image(path)
    assert_rgb(loaded, (30, 20))
    assert loaded.format == "JPEG"
    assert loaded.source == str(path)
    assert loaded.original_size == (30, 20)
    assert close_to(pixel(loaded, (15, 10)), (200, 30, 40))


def test_accepts_path_objects_and_strings(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (5, 4), (1, 2, 3)), tmp_path / "a.png")
    by_path, by_str = load_image(path), load_image(str(path))
    assert by_path.source == by_str.source == str(path)
    assert np.array_equal(np.asarray(by_path.image), np.asarray(by_str.image))


def test_png_saved_under_jpg_name_is_detected_from_content(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (12, 8), (10, 200, 30)), tmp_path / "really_a_png.jpg", "PNG")
    loaded = load_image(path)
    assert loaded.format == "PNG"
    assert pixel(loaded, (0, 0)) == (10, 200, 30)


def test_gif_gives_the_first_frame(tmp_path: Path) -> None:
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    path = save(red, tmp_path / "anim.gif", save_all=True, append_images=[blue], duration=100, loop=0)
    with Image.open(path) as check:
        assert getattr(check, "n_frames", 1) == 2
    loaded = load_image(path)
    assert loaded.format == "GIF"
    assert_rgb(loaded, (8, 8))
    assert pixel(loaded, (4, 4)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("mode", "fill", "expected"),
    [
        ("L", 77, (77, 77, 77)),
        ("1", 1, WHITE),
        ("1", 0, (0, 0, 0)),
        ("RGB", (9, 99, 199), (9, 99, 199)),
    ],
)
def test_plain_modes_become_rgb(tmp_path: Path, mode: str, fill: object, expected: tuple[int, int, int]) -> None:
    path = save(Image.new(mode, (6, 5), fill), tmp_path / f"{mode}.png")  # type: ignore[arg-type]
    loaded = load_image(path)
    assert_rgb(loaded, (6, 5))
    assert pixel(loaded, (3, 2)) == expected


def test_palette_image(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 - 3) * 3)
    img.putpixel((0, 0), 2)
    loaded = load_image(save(img, tmp_path / "p.png"))
    assert_rgb(loaded, (4, 4))
    assert pixel(loaded, (0, 0)) == (0, 255, 0)
    assert pixel(loaded, (3, 3)) == (255, 0, 0)


def test_palette_with_transparency_goes_over_white_not_black(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 0)  # index 0 (black in the palette) is the transparent one
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 - 2) * 3)
    img.putpixel((2, 2), 1)
    path = save(img, tmp_path / "pt.png", transparency=0)
    with Image.open(path) as raw:
        assert "transparency" in raw.info
        assert raw.convert("RGB").getpixel((0, 0)) == (0, 0, 0)  # what a naive convert gives
    loaded = load_image(path)
    assert pixel(loaded, (0, 0)) == WHITE
    assert pixel(loaded, (2, 2)) == (255, 0, 0)


def test_gif_with_transparency_goes_over_white(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 - 2) * 3)
    img.putpixel((1, 1), 1)
    loaded = load_image(save(img, tmp_path / "t.gif", transparency=0))
    assert pixel(loaded, (0, 0)) == WHITE
    assert pixel(loaded, (1, 1)) == (0, 0, 255)


def test_rgba_composited_over_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (3, 1), (0, 0, 0, 0))  # fully transparent black
    img.putpixel((1, 0), (0, 255, 0, 255))
    img.putpixel((2, 0), (255, 0, 0, 128))
    loaded = load_image(save(img, tmp_path / "rgba.png"))
    assert_rgb(loaded, (3, 1))
    assert pixel(loaded, (0, 0)) == WHITE
    assert pixel(loaded, (1, 0)) == (0, 255, 0)
    assert close_to(pixel(loaded, (2, 0)), (255, 127, 127), tol=1)


def test_la_composited_over_white(tmp_path: Path) -> None:
    img = Image.new("LA", (2, 1), (0, 0))
    img.putpixel((1, 0), (50, 255))
    loaded = load_image(save(img, tmp_path / "la.png"))
    assert pixel(loaded, (0, 0)) == WHITE
    assert pixel(loaded, (1, 0)) == (50, 50, 50)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    loaded = load_image(path)
    assert_rgb(loaded, (16, 16))
    assert close_to(pixel(loaded, (8, 8)), (255, 0, 0))


def test_16_bit_greyscale_is_divided_by_256(tmp_path: Path) -> None:
    values = np.array([[0, 256 * 100, 65535, 255]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "grey16.png")
    with Image.open(path) as raw:
        assert raw.mode.startswith("I;16")
    loaded = load_image(path)
    assert_rgb(loaded, (4, 1))
    assert [pixel(loaded, (x, 0))[0] for x in range(4)] == [0, 100, 255, 0]
    assert pixel(loaded, (1, 0)) == (100, 100, 100)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([[0, 100, 255]], dtype=np.int32), [0, 100, 255]),  # fits 8 bits: kept
        (np.array([[-5, 256 * 100, 65535]], dtype=np.int32), [0, 100, 255]),  # fits 16 bits: / 256
        (np.array([[0, 1 << 19, 1 << 20]], dtype=np.int32), [0, 128, 255]),  # larger: * 255 / max
        (np.array([[0.0, 0.5, 1.0]], dtype=np.float32), [0, 128, 255]),  # float 0..1: * 255
        (np.array([[0.0, 100.0, np.nan]], dtype=np.float32), [0, 100, 0]),  # float 0..255: kept, NaN -> 0
        (np.array([[0.0, 500.0, 1000.0]], dtype=np.float32), [0, 128, 255]),  # larger: * 255 / max
    ],
)
def test_32_bit_and_float_greyscale(tmp_path: Path, values: np.ndarray, expected: list[int]) -> None:
    img = Image.fromarray(values)
    assert img.mode in ("I", "F")
    loaded = load_image(save(img, tmp_path / "deep.tif"))
    assert [pixel(loaded, (x, 0))[0] for x in range(3)] == expected


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "WEBP"])
def test_other_formats(tmp_path: Path, fmt: str) -> None:
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("this Pillow has no WebP support")
    params: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    path = save(Image.new("RGB", (7, 5), (12, 34, 56)), tmp_path / "x.img", fmt, **params)
    loaded = load_image(path)
    assert loaded.format == fmt
    assert_rgb(loaded, (7, 5))
    assert pixel(loaded, (3, 2)) == (12, 34, 56)


# --- orientation and size ----------------------------------------------------------------------


def exif_jpeg(path: Path, size: tuple[int, int], orientation: int) -> Path:
    """Blue image with a red 10x10 marker at the stored top-left corner and an EXIF orientation tag."""
    img = Image.new("RGB", size, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))
    exif = img.getexif()
    exif[274] = orientation
    return save(img, path, quality=95, exif=exif)


@pytest.mark.parametrize(
    ("orientation", "marker", "elsewhere"),
    [
        (6, (15, 5), (5, 35)),  # rotate 90 clockwise: stored top-left ends at the top-right
        (8, (5, 35), (15, 5)),  # rotate 90 counter-clockwise: stored top-left ends at the bottom-left
        (3, (35, 15), (5, 5)),  # rotate 180 (no swap): stored top-left ends at the bottom-right
    ],
)
def test_exif_orientation_applied(
    tmp_path: Path, orientation: int, marker: tuple[int, int], elsewhere: tuple[int, int]
) -> None:
    loaded = load_image(exif_jpeg(tmp_path / "rot.jpg", (40, 20), orientation))
    expected = (40, 20) if orientation == 3 else (20, 40)
    assert_rgb(loaded, expected)
    assert loaded.original_size == expected
    assert close_to(pixel(loaded, marker), (255, 0, 0), tol=20)
    assert close_to(pixel(loaded, elsewhere), (0, 0, 255), tol=20)


def test_exif_rotation_with_downscale_reports_upright_original_size(tmp_path: Path) -> None:
    loaded = load_image(exif_jpeg(tmp_path / "rot.jpg", (400, 200), 6), max_side=100)
    assert loaded.original_size == (200, 400)
    assert_rgb(loaded, (50, 100))


@pytest.mark.parametrize("size", [(1, 1), (2, 3)])
def test_tiny_images_are_not_upscaled(tmp_path: Path, size: tuple[int, int]) -> None:
    loaded = load_image(save(Image.new("RGB", size, (1, 2, 3)), tmp_path / "tiny.png"))
    assert_rgb(loaded, size)
    assert loaded.original_size == size
    assert pixel(loaded, (0, 0)) == (1, 2, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_huge_allowed_image_is_downscaled_deterministically(tmp_path: Path, fmt: str) -> None:
    xs = np.linspace(0, 255, 3000, dtype=np.float32)
    grad = np.broadcast_to(xs[None, :, None], (1000, 3000, 3)).astype(np.uint8)
    path = save(Image.fromarray(grad, mode="RGB"), tmp_path / "wide.img", fmt)
    first, second = load_image(path), load_image(path)
    assert first.original_size == (3000, 1000)
    assert_rgb(first, (1024, 341))
    assert abs(first.size[0] / first.size[1] - 3.0) < 0.01
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    row = np.asarray(first.image)[170, :, 0].astype(int)
    assert row[0] < 10 and row[-1] > 245 and np.all(np.diff(row) >= -2)  # still the same gradient


def test_big_jpeg_is_drafted_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import JpegImagePlugin

    calls: list[tuple[str | None, tuple[int, int] | None]] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> object:
        calls.append((mode, size))
        return real_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    path = save(noise(2000, 1000), tmp_path / "big.jpg")
    loaded = load_image(path, max_side=400)
    assert calls == [("RGB", (400, 200))]
    assert loaded.original_size == (2000, 1000)
    assert_rgb(loaded, (400, 200))
    calls.clear()
    load_image(path, max_side=2000)  # no downscale needed: decoded at full size
    assert calls == []


def test_image_exactly_max_side_is_untouched(tmp_path: Path) -> None:
    loaded = load_image(save(noise(64, 32), tmp_path / "n.png"), max_side=64)
    assert_rgb(loaded, (64, 32))


def test_defaults() -> None:
    assert DEFAULT_MAX_SIDE == 1024
    assert DEFAULT_MAX_PIXELS == 89_478_485


# --- decompression bombs -----------------------------------------------------------------------


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny real 1-bit PNG whose IHDR is rewritten to claim ``width`` x ``height`` (never decoded)."""
    buf = io.BytesIO()
    Image.new("1", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def test_small_limit_rejects_before_decoding(tmp_path: Path) -> None:
    path = save(noise(200, 200), tmp_path / "big.png")
    with pytest.raises(ImageError) as info:
        load_image(path, max_pixels=10_000)
    err = info.value
    assert err.kind == "too_large"
    assert err.source == str(path)
    for text in (str(path), "200 x 200", "40,000", "10,000", "max_image_pixels"):
        assert text in str(err)
    assert load_image(path, max_pixels=40_000).size == (200, 200)  # the limit is inclusive


def test_header_size_over_default_limit_is_too_large(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header_size(10_000, 10_000))  # above PIL's warning, below its hard error
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not leak out
        with pytest.raises(ImageError) as info:
            load_image(path)
    assert info.value.kind == "too_large"
    assert "10000 x 10000" in str(info.value) and "100,000,000" in str(info.value)


def test_header_size_over_pils_hard_limit_is_too_large() -> None:
    with pytest.raises(ImageError) as info:
        load_image(png_with_header_size(20_000, 20_000), name="bomb-id")
    assert info.value.kind == "too_large"
    assert info.value.source == "bomb-id"
    assert isinstance(info.value.__cause__, Image.DecompressionBombError)


def test_global_pil_limit_is_left_alone(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError):
        load_image(png_with_header_size(10_000, 10_000), max_pixels=10)
    assert before == Image.MAX_IMAGE_PIXELS


# --- broken inputs -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.kind == "missing"
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_missing_parent_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "no_dir" / "x.jpg")
    assert info.value.kind == "missing"


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        load_image(tmp_path)
    assert info.value.kind == "unreadable"
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("empty.jpg", b""),
        ("random.jpg", np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        ("text.jpg", b"this is not an image, it is a caption\n" * 20),
        ("html.png", b"<!DOCTYPE html><html><body>404 Not Found</body></html>"),
    ],
)
def test_not_an_image_is_unreadable(tmp_path: Path, filename: str, content: bytes) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.kind == "unreadable"
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    full = save(noise(64, 64), tmp_path / "full.img", fmt)
    data = full.read_bytes()
    cut = tmp_path / "cut.img"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        load_image(cut)
    assert info.value.kind == "truncated"
    assert str(cut) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


def test_truncated_bytes_still_truncated() -> None:
    buf = io.BytesIO()
    noise(64, 64).save(buf, "PNG")
    with pytest.raises(ImageError) as info:
        load_image(buf.getvalue()[:-200])
    assert info.value.kind == "truncated"
    assert info.value.source == "<bytes>"


# --- bytes and arguments -----------------------------------------------------------------------


def test_bytes_input() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (9, 7), (5, 6, 7)).save(buf, "PNG")
    loaded = load_image(buf.getvalue())
    assert loaded.source == "<bytes>"
    assert loaded.format == "PNG"
    assert_rgb(loaded, (9, 7))
    assert load_image(buf.getvalue(), name="IMGID:42").source == "IMGID:42"


def test_bytes_that_are_not_an_image() -> None:
    with pytest.raises(ImageError) as info:
        load_image(b"\x00\x01garbage", name="post-7")
    assert info.value.kind == "unreadable"
    assert str(info.value).startswith("post-7:")


def test_name_overrides_source_but_the_path_is_still_named(tmp_path: Path) -> None:
    path = tmp_path / "gone.jpg"
    with pytest.raises(ImageError) as info:
        load_image(path, name="IMGID:9")
    assert info.value.source == "IMGID:9"
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_side": 0}, {"max_side": -3}, {"max_pixels": 0}, {"max_pixels": -1}, {"max_side": 1.5}],
)
def test_invalid_limits(tmp_path: Path, kwargs: dict[str, object]) -> None:
    path = save(Image.new("RGB", (2, 2)), tmp_path / "ok.png")
    with pytest.raises(ValueError, match="must be a positive integer"):
        load_image(path, **kwargs)  # type: ignore[arg-type]


# --- the real sample images --------------------------------------------------------------------


def sample_images() -> list[Path]:
    root = Path(os.environ.get("HAMNER_DATA_ROOT", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
    return sorted((root / "twitter2015" / "images").glob("*.jpg")) + sorted(
        (root / "twitter2017" / "images").glob("*.jpg")
    )


def test_real_sample_images() -> None:
    paths = sample_images()
    if not paths:
        pytest.skip("the sample images are not at ../shared/data and HAMNER_DATA_ROOT is not set")
    assert len(paths) == 30
    loaded = {p.name: load_image(p) for p in paths}
    for path, item in zip(paths, loaded.values(), strict=True):
        assert item.image.mode == "RGB", path
        assert max(item.size) <= DEFAULT_MAX_SIDE, path
        assert item.source == str(path)
    assert loaded["33.jpg"].format == "PNG"
    assert loaded["113.jpg"].format == "PNG"
    assert {name for name, item in loaded.items() if item.format != "JPEG"} == {"33.jpg", "113.jpg"}
    # 113 is RGBA: the result is the colour composited over white with its own alpha.
    with Image.open(paths[[p.name for p in paths].index("113.jpg")]) as raw:
        assert raw.mode == "RGBA"
        rgba = np.asarray(raw).astype(np.float64)
    alpha = rgba[..., 3:] / 255.0
    expected = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    got = np.asarray(loaded["113.jpg"].image).astype(np.float64)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1.0


# --- the decoded-memory budget -------------------------------------------------------------------


def test_small_file_of_many_pixels_is_refused_by_the_memory_budget_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_with_header_size(6000, 6000)  # a few hundred bytes that claim 36 M pixels of 1-bit
    rgb = io.BytesIO()
    Image.new("RGB", (3000, 2000), (200, 30, 30)).save(rgb, "PNG")  # 30 kB, 24 MB decoded
    loads: list[str] = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self.mode))  # never reached
    with pytest.raises(ImageError) as info:
        load_image(rgb.getvalue(), max_decoded_bytes=20 * 1024 * 1024, name="upload.png")
    err = info.value
    assert err.kind == "too_large" and err.source == "upload.png"
    for text in ("upload.png", "3000 x 2000", "mode RGB", "23 MiB", "limit of 20 MiB", "max_image_decoded_mb"):
        assert text in str(err), (text, str(err))
    with pytest.raises(ImageError, match="max_image_decoded_mb"):
        load_image(data, max_decoded_bytes=30_000_000)  # 36 MB decoded + 144 MB of RGB
    assert loads == []


def test_the_budget_counts_what_the_conversion_to_rgb_adds() -> None:
    from hamner.vision.images import decode_cost

    def cost(img: Image.Image, fmt: str = "PNG", **params: object) -> int:
        buf = io.BytesIO()
        img.save(buf, fmt, **params)
        buf.seek(0)
        with Image.open(buf) as opened:
            return decode_cost(opened)

    px = 100 * 50
    assert cost(Image.new("RGB", (100, 50))) == 4 * px  # PIL stores RGB in 4 bytes; resized without a copy
    assert cost(Image.new("L", (100, 50))) == px + 4 * px  # 8-bit grey, then its RGB
    assert cost(Image.new("RGBA", (100, 50))) == 4 * px + 8 * px  # RGBA, its copy and the white RGB under it
    assert cost(Image.new("P", (100, 50)), transparency=0) == px + 8 * px
    assert cost(Image.new("I;16", (100, 50))) == 2 * px + 21 * px


def test_a_big_jpeg_is_budgeted_at_its_reduced_decoding_size() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4096, 4096), (10, 120, 200)).save(buf, "JPEG", quality=80)
    # full size: 64 MiB decoded; drafted to 1/4 for max_side 1024: 4 MiB
    loaded = load_image(buf.getvalue(), max_side=1024, max_decoded_bytes=8 * 1024 * 1024)
    assert loaded.size == (1024, 1024) and loaded.original_size == (4096, 4096)
    with pytest.raises(ImageError, match="4096 x 4096 pixels of mode RGB: decoding it takes about 64 MiB"):
        load_image(buf.getvalue(), max_side=4096, max_decoded_bytes=8 * 1024 * 1024)  # no reduction wanted
    with pytest.raises(ImageError, match=r"\(decoded at 2048 x 2048\): decoding it takes about 16 MiB"):
        load_image(buf.getvalue(), max_side=2048, max_decoded_bytes=8 * 1024 * 1024)


def test_too_large_messages_name_the_callers_option() -> None:
    from hamner.vision.images import LimitOptions

    options = LimitOptions(pixels="--max-image-pixels (ServeConfig.max_image_pixels)", decoded="--max-image-decoded-mb")
    with pytest.raises(ImageError) as info:
        load_image(png_with_header_size(300, 300), max_pixels=1000, options=options)
    assert "raise --max-image-pixels (ServeConfig.max_image_pixels)" in str(info.value)
    assert "in the config" not in str(info.value)
    with pytest.raises(ImageError, match="raise --max-image-decoded-mb if"):
        load_image(png_with_header_size(300, 300), max_decoded_bytes=1000, options=options)


def test_default_bomb_message_names_the_command_line_option() -> None:
    with pytest.raises(ImageError) as info:
        load_image(png_with_header_size(10_000, 10_000))
    assert "--max-image-pixels" in str(info.value) and "in the config" not in str(info.value)


def test_a_big_rgb_image_is_resized_without_a_full_size_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    noise(300, 200).save(buf, "PNG")
    expected = noise(300, 200).resize((150, 100), Image.Resampling.BILINEAR, reducing_gap=3.0)
    copies: list[tuple[int, int]] = []
    real_copy = Image.Image.copy
    monkeypatch.setattr(Image.Image, "copy", lambda self: copies.append(self.size) or real_copy(self))
    loaded = load_image(buf.getvalue(), max_side=150)
    assert copies == []
    assert np.array_equal(np.asarray(loaded.image), np.asarray(expected))  # the same pixels as copy-then-resize


def test_return_freed_memory_is_idempotent() -> None:
    from hamner.vision.images import return_freed_memory

    first = return_freed_memory()
    assert return_freed_memory() == first
    if os.uname().sysname == "Linux" and first is False:
        pytest.skip("not glibc")
