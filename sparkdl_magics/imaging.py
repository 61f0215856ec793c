"""Decoding compressed image bytes (and Spark image-source structs) to RGB.

One place for the rules every path must share: RGB channel order, how odd modes
(grayscale, RGBA, palette with transparency, CMYK, 16-bit) become RGB, JPEG draft-mode
downscaling for large photos, and what counts as an invalid image. Pure Pillow/numpy:
imported inside Spark Python workers, so it must stay light.
"""
from __future__ import annotations

import io
import re
import warnings
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageFile

#: Refuse images whose declared size is larger than this (decompression bombs), from the
#: header alone. Up to it (a 10,000 x 10,000 photo) images are valid: JPEGs decode in draft
#: mode at 1/2..1/8 scale (tens of MB), other formats (PNG) in full, one image at a time
#: per worker (~300 MB transient for 100 MP RGB).
MAX_PIXELS = 100_000_000

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff")

#: Spark image source: OpenCV type codes -> channels (all 8-bit, BGR(A) order).
SPARK_MODES = {0: 1, 16: 3, 24: 4}

RESAMPLE = Image.Resampling.BILINEAR


class InvalidImage(ValueError):
    """The bytes are not a readable image; ``str(exc)`` is the reason shown to users."""


def open_image(data: bytes) -> Image.Image:
    """Open (header only, lazily) with the checks that make a file invalid."""
    if data is None or len(data) == 0:
        raise InvalidImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 MP; MAX_PIXELS (checked below) is the limit here, so a
            # 10,000 x 10,000 photo is fine (JPEG draft mode decodes it at reduced scale)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise InvalidImage("image too large (decompression bomb protection)") from None
    except Exception as exc:  # PIL raises many types for unreadable data
        raise InvalidImage(_identify_failure(data) or f"not an image ({_reason(exc)})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise InvalidImage(f"image too large ({width}x{height} pixels)")
    return image


def probe(data: bytes) -> Tuple[int, int, str, str]:
    """(width, height, mode, format) from the header, without decoding pixels."""
    image = open_image(data)
    return image.size[0], image.size[1], image.mode, image.format or "?"


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB (alpha dropped, as Keras' load_img does)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.uint32)
        scale = 257 if image.mode.startswith("I;16") else max(int(array.max()) // 255 + 1, 1)
        return Image.fromarray((array // scale).astype(np.uint8), "L").convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def decode_rgb(data: bytes, size: Optional[Tuple[int, int]] = None,
               resample: Image.Resampling = RESAMPLE) -> Image.Image:
    """Decode to RGB, optionally resized to ``size`` = (width, height).

    For JPEGs much larger than the target, draft mode lets libjpeg decode at 1/2, 1/4
    or 1/8 scale (never below the target), which is far faster and lighter.
    """
    image = open_image(data)
    try:
        if size is not None and image.format == "JPEG":
            image.draft("RGB", (size[0], size[1]))
        image.load()
        image = to_rgb(image)
        if size is not None and image.size != tuple(size):
            image = image.resize(tuple(size), resample)
    except InvalidImage:
        raise
    except Exception as exc:  # Pillow's decoders raise many types (OSError, SyntaxError,
        # ValueError, struct.error, ...) for a damaged file: each is that file's fault
        raise InvalidImage(f"cannot decode ({_reason(exc)})") from None
    return image


def decode_array(data: bytes, size: Tuple[int, int]) -> np.ndarray:
    """Decode and resize to an (height, width, 3) uint8 RGB array."""
    return np.asarray(decode_rgb(data, size), dtype=np.uint8)


def struct_to_rgb(height: int, width: int, n_channels: int, mode: int, data: bytes) -> np.ndarray:
    """A Spark image-source struct (BGR/BGRA/gray, 8-bit) to an RGB uint8 array."""
    if mode not in SPARK_MODES:
        raise InvalidImage(f"unsupported Spark image mode {mode} (only 8-bit images)")
    if not data or height <= 0 or width <= 0:
        raise InvalidImage("empty Spark image struct (the image source could not decode it)")
    array = np.frombuffer(data, dtype=np.uint8)
    if array.size != height * width * n_channels:
        raise InvalidImage("Spark image struct has the wrong number of bytes")
    array = array.reshape(height, width, n_channels)
    if n_channels == 1:
        return np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped


def resize_array(array: np.ndarray, size: Tuple[int, int],
                 resample: Image.Resampling = RESAMPLE) -> np.ndarray:
    """Resize an RGB uint8 array with the same resampling as :func:`decode_rgb`."""
    image = Image.fromarray(array, "RGB")
    if image.size != tuple(size):
        image = image.resize(tuple(size), resample)
    return np.asarray(image, dtype=np.uint8)


def thumbnail_png(data: bytes, max_side: int = 96) -> bytes:
    """A small PNG for previews and galleries (aspect kept)."""
    image = open_image(data)
    try:
        if image.format == "JPEG":  # a big photo decodes at 1/2..1/8 scale (draft mode)
            image.draft("RGB", (max_side, max_side))
        image.load()
        image = to_rgb(image)
    except Exception as exc:  # as in decode_rgb: any decoder failure is the file's
        raise InvalidImage(f"cannot decode ({_reason(exc)})") from None
    image.thumbnail((max_side, max_side), RESAMPLE)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _identify_failure(data: bytes) -> Optional[str]:
    """Why a file that *starts* like a known format could not be opened ("cannot identify
    image file" hides it: a bad PNG header checksum, a broken JPEG marker, ...)."""
    Image.init()
    prefix = data[:16]
    for fmt, (factory, accept) in Image.OPEN.items():
        try:
            if accept is None or accept(prefix) is not True:
                continue
            factory(io.BytesIO(data), None)
        except Exception as exc:  # a format plug-in's own error type: any of them words it
            return f"corrupt {fmt} header ({_reason(exc)})"
        return None
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", text)  # PIL's buffer repr
    return text[:160]


# Truncated files must be reported as invalid, never padded with grey silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False
