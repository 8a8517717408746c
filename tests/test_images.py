"""facerep.images: common formats in as RGB uint8, every bad input out as a one-line ImageError.

All files are generated inside the tests (tmp_path); no photos are committed.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from facerep import images
from facerep.images import ImageError, decode_image, load_image, read_image_bytes


def gradient(height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth RGB test picture (lossy codecs keep it within a few levels)."""
    y, x = np.mgrid[0:height, 0:width]
    red = x * 255 // (width - 1)
    green = y * 255 // (height - 1)
    blue = (x + y) * 255 // (width + height - 2)
    return np.stack([red, green, blue], axis=2).astype(np.uint8)


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def image_error(source: object, *, load: Callable = load_image, **options) -> ImageError:
    """The ImageError that `load(source, **options)` raises; the test fails if none is."""
    with pytest.raises(ImageError) as info:
        load(source, **options)
    return info.value


def assert_image_error(error: ImageError, source: object, kind: str, *words: str) -> None:
    """The message is one line, starts with the source, and says why."""
    message = str(error)
    assert error.kind == kind, message
    assert "\n" not in message
    assert message.startswith(f"{source}: "), message
    assert error.source == str(source)
    for word in words:
        assert word in message, message


def assert_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.uint8
    assert array.shape == (height, width, 3)
    assert array.flags.c_contiguous


# --- bad input: one test per class of failure -----------------------------------------------


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = save(Image.new("L", (5000, 5000)), tmp_path / "bomb.png")
    assert path.stat().st_size < 100_000  # a few KB on disk, 25 megapixels decoded
    error = image_error(path, max_pixels=1_000_000)
    assert_image_error(error, path, "refused", "refused", "5000x5000", "1,000,000")


def test_pixel_limit_is_inclusive(tmp_path):
    path = save(Image.new("L", (1000, 1000)), tmp_path / "big.png")
    assert_rgb(load_image(path, max_pixels=1_000_000), 1000, 1000)
    error = image_error(path, max_pixels=999_999)
    assert_image_error(error, path, "refused", "refused")


def test_bomb_past_pillows_own_guard_is_refused_even_under_a_higher_limit(tmp_path):
    # A 20000 x 20000 1-bit PNG (400 Mpx, over twice Pillow's MAX_IMAGE_PIXELS): Image.open
    # refuses it from the header alone, so one row of pixel data is bomb enough.
    side = 20_000
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" + bytes(side // 8)))
        + png_chunk(b"IEND", b"")
    )
    assert len(data) < 1_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    path = tmp_path / "huge.png"
    path.write_bytes(data)
    error = image_error(path, max_pixels=10**9)
    assert_image_error(error, path, "refused", "refused: decompression bomb")


def test_truncated_jpeg_is_corrupt(tmp_path):
    data = encode(Image.fromarray(gradient(128, 128)), "JPEG", quality=95)
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    error = image_error(path)
    assert_image_error(error, path, "corrupt", "truncated")


def test_corrupt_jpeg_bytes_are_corrupt(tmp_path):
    rng = np.random.default_rng(0)
    data = bytearray(encode(Image.fromarray(gradient(128, 128)), "JPEG", quality=95))
    scan = data.find(b"\xff\xda")  # start of scan: keep the headers, garble the entropy data
    data[scan + 20 :] = rng.bytes(len(data) - scan - 20)
    path = tmp_path / "garbled.jpg"
    path.write_bytes(bytes(data))
    error = image_error(path)
    assert_image_error(error, path, "corrupt", "corrupt")


def test_random_bytes_named_jpg_are_not_an_image(tmp_path):
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    error = image_error(path)
    assert_image_error(error, path, "corrupt", "not an image")


def test_text_file_named_png_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are my holiday notes, not a picture\n")
    error = image_error(path)
    assert_image_error(error, path, "corrupt", "not an image")


def test_zero_byte_file_is_empty(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    error = image_error(path)
    assert_image_error(error, path, "corrupt", "empty")


def test_missing_path_is_unreadable(tmp_path):
    path = tmp_path / "missing.jpg"
    error = image_error(path)
    assert_image_error(error, path, "unreadable", "no such file")
    error = image_error(str(path), load=read_image_bytes)
    assert_image_error(error, path, "unreadable", "no such file")


def test_directory_path_is_unreadable(tmp_path):
    folder = tmp_path / "photos.jpg"
    folder.mkdir()
    error = image_error(folder)
    assert_image_error(error, folder, "unreadable", "directory")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="running as root (or not on POSIX): chmod 000 does not stop root from reading",
)
def test_permission_denied_is_unreadable(tmp_path):
    path = save(Image.new("RGB", (8, 8)), tmp_path / "locked.png")
    path.chmod(0)
    try:
        error = image_error(path)
    finally:
        path.chmod(0o644)
    assert_image_error(error, path, "unreadable", "permission denied")


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (PermissionError(13, "Permission denied"), ["permission denied"]),
        (OSError(5, "Input/output error"), ["Input/output error"]),
    ],
)
def test_os_errors_become_unreadable(tmp_path, monkeypatch, error, words):
    """The same branches as chmod 000 and a failing disk, reachable as root too."""

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(images, "open", refuse, raising=False)
    path = tmp_path / "photo.jpg"
    error = image_error(path)
    assert_image_error(error, path, "unreadable", "unreadable", *words)


def test_bytes_and_arrays_are_labelled_in_messages():
    error = image_error(b"")
    assert_image_error(error, "<0 bytes>", "corrupt", "empty")
    error = image_error(b"GIF89a?", load=lambda data: decode_image(data, "upload.gif"))
    assert_image_error(error, "upload.gif", "corrupt")
    error = image_error(b"not an image", name="request 7")
    assert_image_error(error, "request 7", "corrupt", "not an image")


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((5, 5, 2), np.uint8), ["not an image array"]),
        (np.zeros((2, 5, 5, 3), np.uint8), ["not an image array"]),
        (np.zeros((0, 5, 3), np.uint8), ["empty"]),
        (np.full((5, 5), np.nan), ["NaN"]),
        (np.full((5, 5), -1, np.int16), ["range"]),
        (np.full((5, 5), 1j), ["dtype"]),
    ],
    ids=["two-channels", "4-d", "empty", "nan", "negative", "complex"],
)
def test_bad_arrays_raise_image_error(array, words):
    error = image_error(array)
    assert_image_error(error, f"<array {array.shape}>", "corrupt", *words)


# --- good input: formats ----------------------------------------------------------------------

LOSSLESS = [("png", {}), ("bmp", {}), ("tiff", {}), ("webp", {"lossless": True})]


@pytest.mark.parametrize(("suffix", "options"), LOSSLESS, ids=[s for s, _ in LOSSLESS])
def test_lossless_formats_round_trip_exactly(tmp_path, suffix, options):
    if suffix == "webp" and not features.check("webp"):
        pytest.skip("this Pillow build has no WebP support")
    picture = gradient()
    path = save(Image.fromarray(picture), tmp_path / f"picture.{suffix}", **options)
    loaded = load_image(path)
    assert_rgb(loaded, *picture.shape[:2])
    np.testing.assert_array_equal(loaded, picture)
    # Path, str and bytes inputs agree.
    np.testing.assert_array_equal(load_image(str(path)), loaded)
    np.testing.assert_array_equal(load_image(path.read_bytes()), loaded)


@pytest.mark.parametrize(
    ("suffix", "options"), [("jpg", {"quality": 95}), ("webp", {"quality": 95})]
)
def test_lossy_formats_round_trip_closely(tmp_path, suffix, options):
    if suffix == "webp" and not features.check("webp"):
        pytest.skip("this Pillow build has no WebP support")
    picture = gradient()
    path = save(Image.fromarray(picture), tmp_path / f"picture.{suffix}", **options)
    loaded = load_image(path)
    assert_rgb(loaded, *picture.shape[:2])
    assert np.abs(loaded.astype(int) - picture).mean() < 3


def test_one_rule_for_what_an_image_is():
    # The names a folder walk takes are exactly the extensions Pillow gives the formats decoded.
    registered = Image.registered_extensions()
    formats = {*images.IMAGE_FORMATS, "MPO"}  # JPEG's reader opens MPO
    assert {ext for ext, fmt in registered.items() if fmt in formats} == images.IMAGE_SUFFIXES
    assert images.is_image_path(Path("party/Wave.GIF"))


def test_a_gif_is_read_by_its_first_frame_and_a_bomb_gif_refused(tmp_path):
    frames = [Image.new("RGB", (16, 12), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    path = tmp_path / "wave.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    loaded = load_image(path)
    assert_rgb(loaded, 12, 16)
    assert loaded[0, 0, 0] > 200 and loaded[0, 0, 2] < 50
    big = save(Image.new("P", (3000, 3000)), tmp_path / "big.gif")
    assert_image_error(image_error(big, max_pixels=10**6), big, "refused", "exceeds the limit")


def test_formats_no_photo_comes_in_are_not_decoded(tmp_path):
    icon = save(Image.new("RGB", (16, 16), (9, 9, 9)), tmp_path / "icon.ico")
    assert_image_error(image_error(icon), icon, "corrupt", "unrecognised format")


def test_pgm_greyscale_becomes_three_equal_channels(tmp_path):
    grey = gradient()[:, :, 0]
    path = save(Image.fromarray(grey), tmp_path / "face.pgm")
    assert path.read_bytes().startswith(b"P5")
    loaded = load_image(path)
    assert_rgb(loaded, *grey.shape)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[:, :, channel], grey)


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 high, red in the top-left quarter; Orientation 6 = rotate 90 CW to view.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:10, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(Image.fromarray(stored), tmp_path / "phone.jpg", exif=exif, quality=95)
    assert Image.open(path).size == (40, 20)
    loaded = load_image(path)
    assert_rgb(loaded, 40, 20)
    # Rotating clockwise takes the stored top-left to the viewed top-right.
    assert loaded[2:8, 12:18].mean(axis=(0, 1)) == pytest.approx((255, 0, 0), abs=12)
    assert loaded[2:8, 2:8].max() < 20
    assert loaded[32:38, 12:18].max() < 20
    # A PIL image carrying the same EXIF is transposed the same way.
    assert load_image(Image.open(path)).shape == (40, 20, 3)


# --- good input: modes --------------------------------------------------------------------------


def test_greyscale_l(tmp_path):
    path = save(Image.new("L", (6, 4), 77), tmp_path / "grey.png")
    loaded = load_image(path)
    assert_rgb(loaded, 4, 6)
    assert (loaded == 77).all()


def test_palette_without_transparency(tmp_path):
    image = Image.fromarray(gradient()).quantize(colors=16)
    assert image.mode == "P"
    path = save(image, tmp_path / "palette.png")
    assert "transparency" not in Image.open(path).info
    loaded = load_image(path)
    assert_rgb(loaded, 48, 64)
    np.testing.assert_array_equal(loaded, np.asarray(image.convert("RGB")))


def test_palette_with_transparency_composites_on_white(tmp_path):
    image = Image.new("P", (4, 2))
    image.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    image.putdata([0, 0, 1, 1, 0, 0, 1, 1])
    path = save(image, tmp_path / "palette.png", transparency=0)
    assert "transparency" in Image.open(path).info
    loaded = load_image(path)
    assert_rgb(loaded, 2, 4)
    assert (loaded[:, :2] == 255).all()  # index 0 is transparent: white, not (10, 20, 30)
    assert (loaded[:, 2:] == (200, 0, 0)).all()


def test_rgba_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[:, 0] = (0, 0, 255, 0)  # fully transparent blue
    rgba[:, 1] = (0, 0, 255, 255)  # opaque blue
    rgba[:, 2] = (0, 0, 0, 128)  # half-transparent black
    path = save(Image.fromarray(rgba), tmp_path / "alpha.png")
    loaded = load_image(path)
    assert_rgb(loaded, 2, 3)
    assert (loaded[:, 0] == 255).all()
    assert (loaded[:, 1] == (0, 0, 255)).all()
    assert np.abs(loaded[:, 2].astype(int) - 127).max() <= 1


def test_cmyk_jpeg(tmp_path):
    red = Image.new("RGB", (16, 16), (255, 0, 0)).convert("CMYK")
    path = save(red, tmp_path / "print.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    loaded = load_image(path)
    assert_rgb(loaded, 16, 16)
    assert loaded.mean(axis=(0, 1)) == pytest.approx((255, 0, 0), abs=8)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 256, 32768, 65535]], np.uint16)
    path = save(Image.fromarray(values), tmp_path / "scan.png")
    assert Image.open(path).mode.startswith("I")
    loaded = load_image(path)
    assert_rgb(loaded, 1, 4)
    grey = loaded[0, :, 0].astype(int)
    assert grey[0] == 0
    assert grey[1] <= 1  # 256 / 65535 is black, not clipped to white
    assert abs(grey[2] - 128) <= 1
    assert grey[3] == 255


def test_sixteen_bit_tiff(tmp_path):
    values = np.linspace(0, 65535, 12).astype(np.uint16).reshape(3, 4)
    path = save(Image.fromarray(values), tmp_path / "scan.tif")
    loaded = load_image(path)
    assert_rgb(loaded, 3, 4)
    expected = np.round(values / 65535 * 255)
    assert np.abs(loaded[:, :, 0] - expected).max() <= 1


def test_dark_sixteen_bit_pgm_is_scaled_like_a_sixteen_bit_png():
    data = b"P5\n4 1\n65535\n" + np.array([0, 100, 200, 255], ">u2").tobytes()
    assert Image.open(io.BytesIO(data)).mode == "I"
    assert load_image(data).max() <= 1  # 255 / 65535 is black


# --- good input: arrays and PIL images ----------------------------------------------------------


def test_float_array_in_unit_range():
    array = np.array([[0.0, 0.5, 1.0]])
    loaded = load_image(np.repeat(array[:, :, None], 3, axis=2))
    assert_rgb(loaded, 1, 3)
    np.testing.assert_array_equal(loaded[0, :, 0], [0, 128, 255])


def test_float_array_outside_unit_range_is_rescaled():
    loaded = load_image(np.array([[-1.0, 0.0, 3.0]], np.float32))
    np.testing.assert_array_equal(loaded[0, :, 0], [0, 64, 255])


def test_uint16_array_is_scaled():
    loaded = load_image(np.array([[0, 256, 32768, 65535]], np.uint16))
    assert_rgb(loaded, 1, 4)
    assert list(loaded[0, :, 0]) == [0, 1, 128, 255]  # round(v * 255 / 65535)


def test_big_endian_uint16_array_is_scaled_like_native():
    values = np.array([[0, 100, 200, 255]])  # a dark 16-bit image
    native = load_image(values.astype("<u2"))
    np.testing.assert_array_equal(load_image(values.astype(">u2")), native)


def test_greyscale_2d_and_single_channel_arrays():
    grey = gradient()[:, :, 1]
    for array in (grey, grey[:, :, None]):
        loaded = load_image(array)
        assert_rgb(loaded, *grey.shape)
        np.testing.assert_array_equal(loaded, np.repeat(grey[:, :, None], 3, axis=2))


def test_rgba_array_drops_alpha():
    rgba = np.dstack([gradient(), np.zeros(gradient().shape[:2], np.uint8)])
    np.testing.assert_array_equal(load_image(rgba), gradient())


def test_rgb_uint8_array_passes_through():
    picture = gradient()
    np.testing.assert_array_equal(load_image(picture), picture)
    loaded = load_image(picture[:, ::-1])  # a non-contiguous view comes back contiguous
    assert loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, picture[:, ::-1])


def test_bool_array():
    np.testing.assert_array_equal(load_image(np.array([[False, True]]))[0, :, 0], [0, 255])


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "P", "CMYK", "1", "I;16", "F"])
def test_pil_images_in_any_mode(mode):
    image = Image.fromarray(gradient()).convert(mode)
    loaded = load_image(image)
    assert_rgb(loaded, 48, 64)


def test_the_pixel_limit_is_checked_once_per_image(tmp_path, monkeypatch):
    checked, check = [], images._check_pixels

    def counted(image, *args):
        checked.append(image.size)
        return check(image, *args)

    monkeypatch.setattr(images, "_check_pixels", counted)
    path = save(Image.fromarray(gradient()), tmp_path / "picture.png")
    load_image(path)
    decode_image(path.read_bytes(), "upload.png")
    load_image(Image.open(path))
    assert checked == [(64, 48)] * 3


def test_pil_image_over_the_limit_is_refused():
    error = image_error(Image.new("RGB", (100, 100)), max_pixels=5_000)
    assert_image_error(error, "<Image>", "refused", "refused")


def test_image_error_pickles_with_its_fields() -> None:
    # Service workers raise it in another process: it must arrive whole.
    import pickle

    error = pickle.loads(pickle.dumps(ImageError("upload.jpg", "refused: too big", "refused")))
    assert (error.source, error.reason, error.kind) == ("upload.jpg", "refused: too big", "refused")
    assert str(error) == "upload.jpg: refused: too big"
