"""Small real datasets that work offline, written as image folders for demos and docs.

``write_digits`` turns scikit-learn's bundled handwritten digits (1,797 8x8 scans, ten
classes) into ``root/<digit>/<n>.png`` — the classic "50 images of each digit" layout
that ``%%dlload`` reads with ``labels: folders``. ``write_photo_crops`` cuts seeded
random crops from scikit-learn's two bundled photos (``china``: a temple, ``flower``) as
JPEGs in ``root/<photo>/<n>.jpg`` — two classes of real photographs. No download is
involved.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .errors import EnvironmentProblem, OptionError


def write_digits(root: str | Path, per_class: Optional[int] = 50, size: int = 64,
                 seed: int = 0) -> Dict[str, int]:
    """Write up to *per_class* digit images per class as ``size`` x ``size`` PNGs.

    Returns the number of files written per class. Files an earlier call wrote are
    replaced (also those a larger ``per_class`` left), so the folder always holds
    exactly what this call wrote; other files in it are left alone.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise EnvironmentProblem("write_digits needs scikit-learn: pip install scikit-learn") from None
    from PIL import Image

    if per_class is not None and per_class < 1:
        raise OptionError(f"per_class must be at least 1 (got {per_class})")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    root = Path(root)
    written: Dict[str, int] = {}
    for label in range(10):
        indices = np.flatnonzero(digits.target == label)
        if per_class is not None and per_class < len(indices):
            indices = np.sort(rng.choice(indices, size=per_class, replace=False))
        folder = _fresh_folder(root / str(label), f"{label}_*.png")
        for n, index in enumerate(indices):
            pixels = (255 - digits.images[index] * (255 / 16)).astype(np.uint8)  # dark ink on white
            image = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BICUBIC)
            image.save(folder / f"{label}_{n:04d}.png")
        written[str(label)] = len(indices)
    return written


def write_photo_crops(root: str | Path, per_class: int = 12, size: int = 128,
                      seed: int = 0) -> Dict[str, int]:
    """Write *per_class* seeded random ``size`` x ``size`` JPEG crops of each of
    scikit-learn's sample photos (classes ``china`` and ``flower``).

    Crops cover a random 35–70 % of the photo's height, anywhere in it, so the two
    classes are real-photo textures rather than copies. Returns files per class; the
    folder holds exactly what this call wrote (earlier crops are replaced).
    """
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise EnvironmentProblem("write_photo_crops needs scikit-learn: "
                                 "pip install scikit-learn") from None
    from PIL import Image

    if per_class < 1:
        raise OptionError(f"per_class must be at least 1 (got {per_class})")
    photos = load_sample_images()
    rng = np.random.default_rng(seed)
    root = Path(root)
    written: Dict[str, int] = {}
    for filename, pixels in zip(photos.filenames, photos.images):
        label = Path(filename).stem
        folder = _fresh_folder(root / label, f"{label}_*.jpg")
        height, width = pixels.shape[:2]
        for n in range(per_class):
            side = int(rng.uniform(0.35, 0.7) * height)
            top = int(rng.integers(0, height - side + 1))
            left = int(rng.integers(0, width - side + 1))
            crop = Image.fromarray(pixels[top:top + side, left:left + side])
            crop = crop.resize((size, size), Image.Resampling.BILINEAR)
            crop.save(folder / f"{label}_{n:03d}.jpg", quality=90)
        written[label] = per_class
    return written


def _fresh_folder(folder: Path, pattern: str) -> Path:
    """*folder*, created, without the files an earlier call wrote (*pattern*)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(pattern):
        old.unlink()
    return folder
