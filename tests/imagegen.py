"""Synthetic labelled images for tests: every file a test needs, made on the spot.

Each class gets its own dominant colour (plus noise and a shape), so a classifier on
CNN features can learn the classes; sizes, formats and modes vary so the decode path
sees JPEG/PNG, RGB/grayscale/RGBA and odd sizes.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

CLASS_COLOURS = [
    (220, 40, 40), (40, 180, 60), (50, 80, 220), (230, 200, 40), (160, 60, 200),
    (40, 200, 200), (240, 130, 30), (120, 120, 120), (250, 250, 250), (20, 20, 20),
]
SIZES = [(64, 48), (96, 96), (120, 80), (50, 70), (200, 150)]
VARIANTS = [("JPEG", "RGB", ".jpg"), ("PNG", "RGB", ".png"), ("JPEG", "L", ".jpeg"),
            ("PNG", "RGBA", ".png"), ("PNG", "L", ".png")]


def synthetic_image(class_index: int, seed: int, size: Tuple[int, int] = (96, 96),
                    mode: str = "RGB") -> Image.Image:
    """An image whose colour says its class, with seeded noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.array(CLASS_COLOURS[class_index % len(CLASS_COLOURS)], dtype=np.float32)
    pixels = base + rng.normal(0, 25, size=(h, w, 3))
    y0, x0 = rng.integers(0, max(h // 2, 1)), rng.integers(0, max(w // 2, 1))
    pixels[y0:y0 + h // 3, x0:x0 + w // 3] = 255 - base  # a contrasting square
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if mode == "RGBA":
        alpha = Image.fromarray(np.full((h, w), 200, dtype=np.uint8), "L")
        image = image.convert("RGBA")
        image.putalpha(alpha)
    elif mode != "RGB":
        image = image.convert(mode)
    return image


def encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_labelled_folder(root: os.PathLike, classes: Sequence[str], per_class: int | Sequence[int],
                          seed: int = 0, variants: Sequence[Tuple[str, str, str]] = VARIANTS,
                          sizes: Sequence[Tuple[int, int]] = SIZES) -> Dict[str, List[Path]]:
    """Write ``root/<class>/<class>_<i><ext>``; returns the files written per class."""
    root = Path(root)
    counts = [per_class] * len(classes) if isinstance(per_class, int) else list(per_class)
    written: Dict[str, List[Path]] = {}
    for ci, (name, count) in enumerate(zip(classes, counts)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        written[name] = []
        for i in range(count):
            fmt, mode, ext = variants[(i + ci) % len(variants)]
            size = sizes[(i * 7 + ci) % len(sizes)]
            image = synthetic_image(ci, seed * 100_003 + ci * 1009 + i, size, mode)
            path = folder / f"{name}_{i:04d}{ext}"
            path.write_bytes(encode(image, fmt))
            written[name].append(path)
    return written


def write_corrupt_files(folder: os.PathLike) -> Dict[str, Path]:
    """Files that look like images but are not: zero bytes, text, truncated JPEG."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = encode(synthetic_image(0, 1, (80, 60)), "JPEG")
    files = {
        "empty": folder / "empty.jpg",
        "text": folder / "notes.jpg",
        "truncated": folder / "truncated.jpg",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_bytes(b"this is not an image\n" * 20)
    files["truncated"].write_bytes(good[: len(good) // 3])
    return files


def image_bytes(paths: Iterable[os.PathLike]) -> List[bytes]:
    return [Path(p).read_bytes() for p in paths]




SHAPES = ("square", "disc", "cross")
#: Each shape has its own colour too, so every class has evidence of its own on the
#: object (with one colour, a CNN can learn the third shape as "neither of the others",
#: whose evidence is everywhere: a flat map).
SHAPE_COLOURS = ((235, 70, 60), (60, 210, 80), (70, 110, 240))


def shape_on_noise(shape: Optional[str], seed: int, size: int = 64, side: int = 18
                   ) -> Tuple[np.ndarray, Optional[Tuple[int, int, int, int]]]:
    """A bright *shape* pasted at a random place on grey noise, and its box
    (x0, y0, x1, y1; pixels, end exclusive): images whose right answer to "where is
    the object" is known, for heatmap tests. ``shape=None``: the noise alone."""
    rng = np.random.default_rng(seed)
    pixels = rng.normal(110, 30, size=(size, size, 3))
    if shape is None:
        return np.clip(pixels, 0, 255).astype(np.uint8), None
    x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    yy, xx = np.mgrid[0:side, 0:side]
    c = (side - 1) / 2.0
    if shape == "square":
        mask = np.ones((side, side), bool)
    elif shape == "disc":
        mask = (yy - c) ** 2 + (xx - c) ** 2 <= c ** 2
    elif shape == "cross":
        mask = (np.abs(yy - c) <= side / 6) | (np.abs(xx - c) <= side / 6)
    else:
        raise ValueError(f"unknown shape {shape!r} (one of {SHAPES})")
    colour = np.array(SHAPE_COLOURS[SHAPES.index(shape)]) + rng.normal(0, 10, size=3)
    patch = pixels[y0:y0 + side, x0:x0 + side]
    patch[mask] = colour
    return np.clip(pixels, 0, 255).astype(np.uint8), (x0, y0, x0 + side, y0 + side)


def write_shape_folder(root: os.PathLike, per_class: int, seed: int = 0
                       ) -> Dict[str, Tuple[int, int, int, int]]:
    """``root/<shape>/<shape>_<i>.png`` for each of :data:`SHAPES`; returns each file's
    object box, keyed by its absolute path."""
    root = Path(root)
    boxes = {}
    for ci, name in enumerate(SHAPES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels, box = shape_on_noise(name, seed * 100_003 + ci * 1009 + i)
            path = root / name / f"{name}_{i:03d}.png"
            path.write_bytes(encode(Image.fromarray(pixels, "RGB"), "PNG"))
            boxes[str(path.resolve())] = box
    return boxes
