"""Robust image loading: any common photo format in, RGB uint8 out, or a one-line reason why not.

Every failure a user can cause (empty, truncated or corrupt files, non-images with image
extensions, decompression bombs, unreadable paths) raises `ImageError`, whose message names the
input and the reason. Nothing else escapes for bad input.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 40 megapixels holds any camera photo of today; a bomb expands a few KB into gigabytes.
DEFAULT_MAX_PIXELS = 40_000_000

# The one rule for what an image is. Pillow reads many more formats (ICO, PSD, FITS, ...); facerep
# decodes only photo formats, so every command accepts the same files, and a file's bytes are
# never handed to a decoder no photo needs. A GIF or APNG gives its first frame.
# (Pillow's JPEG reader also opens a camera's multi-picture JPEG, MPO.)
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
# The file names a folder walk takes for images: the extensions Pillow registers for exactly
# those formats (and MPO); PPM covers PGM, PBM, PNM and PFM.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".apng", ".gif", ".bmp", ".webp"}
    | {".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm", ".pfm"}
)

ImageSource = str | os.PathLike | bytes | np.ndarray | Image.Image


ImageErrorKind = Literal["unreadable", "corrupt", "refused"]


class ImageError(ValueError):
    """An input that cannot be used as an image; the message is one line: `source: reason`.

    `kind` sorts it for reports: "unreadable" (the OS refused), "corrupt" (not a valid image),
    "refused" (a valid image facerep will not decode, such as a decompression bomb).
    """

    def __init__(self, source: str, reason: str, kind: ImageErrorKind = "corrupt"):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.kind = kind

    def __reduce__(self):
        # Rebuilt from its fields (not its message) when it crosses a process boundary.
        return (type(self), (self.source, self.reason, self.kind))


def is_image_path(path: Path) -> bool:
    """Whether a file name has one of the image extensions facerep reads."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def load_image(
    source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None
) -> np.ndarray:
    """Load a path, encoded bytes, array or PIL image as an `[H, W, 3]` RGB uint8 array.

    EXIF orientation is applied; greyscale, palette, alpha, CMYK and 16-bit images are converted.

    Raises:
        ImageError: the input is unreadable, not an image, corrupt, or over `max_pixels`.
    """
    label = name or describe_source(source)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, label)
    if isinstance(source, Image.Image):
        _check_pixels(source, label, max_pixels)
        return _pil_to_rgb(source, label)
    data = source if isinstance(source, bytes) else read_image_bytes(source)
    return decode_image(data, label, max_pixels=max_pixels)


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """Read a file's bytes, turning every OS failure into an `ImageError`."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ImageError(str(path), "no such file", "unreadable") from None
    except IsADirectoryError:
        raise ImageError(str(path), "is a directory, not an image file", "unreadable") from None
    except PermissionError:
        raise ImageError(str(path), "unreadable (permission denied)", "unreadable") from None
    except OSError as e:
        raise ImageError(str(path), f"unreadable ({e.strerror or e})", "unreadable") from None


def decode_image(data: bytes, label: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to `[H, W, 3]` RGB uint8, or raise `ImageError`."""
    if not data:
        raise ImageError(label, "empty file (0 bytes)")
    try:
        # Pillow's own bomb guard is global state; facerep checks its own limit before decoding.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            _check_pixels(image, label, max_pixels)  # from the header, before decoding
            image.load()
            return _pil_to_rgb(image, label)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(label, "not an image (unrecognised format)") from None
    except Image.DecompressionBombError:
        raise ImageError(label, "refused: decompression bomb", "refused") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(label, f"truncated or corrupt image ({_first_line(e)})") from None


def _check_pixels(image: Image.Image, label: str, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            label,
            f"refused: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{max_pixels:,} (possible decompression bomb; raise --max-pixels to allow it)",
            "refused",
        )
    if width == 0 or height == 0:
        raise ImageError(label, f"not an image (size {width}x{height})")


def _pil_to_rgb(image: Image.Image, label: str) -> np.ndarray:
    """A PIL image whose size was checked, as `[H, W, 3]` RGB uint8."""
    source_format = image.format  # a transposed copy no longer knows it
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode == "I" and source_format == "PPM":
        # Pillow widens PGM/PPM with maxval > 255 to int32 0..65535: still 16-bit data.
        return _array_to_rgb(np.asarray(image).astype(np.uint16), label)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(image), label)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas become white, as a browser shows them on a page.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _array_to_rgb(array: np.ndarray, label: str) -> np.ndarray:
    """Bring a greyscale, RGB or RGBA array of any numeric dtype to `[H, W, 3]` uint8."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(label, f"not an image array (shape {array.shape})")
    if array.size == 0:
        raise ImageError(label, f"empty image array (shape {array.shape})")
    array = _to_uint8(array, label)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def _to_uint8(array: np.ndarray, label: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError(label, "image array holds NaN or infinite values")
        # Float images are [0, 1] by convention (skimage); anything wider is rescaled to fit.
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            array = (array - low) / max(high - low, 1e-12)
        return np.round(array * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        # 16-bit data keeps its full range: scale, never clip, so a dark 16-bit scan stays visible.
        is_uint16 = array.dtype.kind == "u" and array.dtype.itemsize == 2  # any byte order
        high = 65535 if is_uint16 or array.max() > 255 else 255
        if array.min() < 0 or array.max() > 65535:
            raise ImageError(label, f"unsupported pixel range for dtype {array.dtype}")
        # Round to nearest, as the float path does.
        return ((array.astype(np.uint32) * 255 + high // 2) // high).astype(np.uint8)
    raise ImageError(label, f"unsupported pixel dtype {array.dtype}")


def describe_source(source: object) -> str:
    """How messages name an image input: its path, or its type and size."""
    if isinstance(source, str | os.PathLike):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape}>"
    return f"<{type(source).__name__}>"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def resize_faces(faces: np.ndarray, size: int) -> np.ndarray:
    """`[N, H, W, 3]` uint8 faces at `size` x `size` (box-filtered when shrinking)."""
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
        raise ValueError(f"faces must be uint8 [N, H, W, 3], got {faces.dtype} {faces.shape}")
    if faces.shape[1:3] == (size, size):
        return faces
    shrink = size < faces.shape[1]
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    resized = [np.asarray(Image.fromarray(face).resize((size, size), resample)) for face in faces]
    return np.stack(resized) if resized else np.zeros((0, size, size, 3), np.uint8)
