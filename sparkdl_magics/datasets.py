"""Small real datasets that work offline, written as image folders for demos and docs.

``write_digits`` turns scikit-learn's bundled handwritten digits (1,797 8x8 scans, ten
classes) into ``root/<digit>/<n>.png`` — the classic "50 images of each digit" layout
that ``%%dlload`` reads with ``labels: folders``. No download is involved.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .errors import EnvironmentProblem, OptionError


def write_digits(root: str | Path, per_class: Optional[int] = 50, size: int = 64,
                 seed: int = 0) -> Dict[str, int]:
    """Write up to *per_class* digit images per class as ``size`` x ``size`` PNGs.

    Returns the number of files written per class. Existing files are overwritten, so
    running twice gives the same folder.
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
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        for n, index in enumerate(indices):
            pixels = (255 - digits.images[index] * (255 / 16)).astype(np.uint8)  # dark ink on white
            image = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BICUBIC)
            image.save(folder / f"{label}_{n:04d}.png")
        written[str(label)] = len(indices)
    return written
