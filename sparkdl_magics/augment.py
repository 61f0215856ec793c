"""Training-time augmentation: extra, seeded, transformed copies of the train images.

``featurize(images, augment=...)`` adds, for every train image, ``copies`` more rows
whose features come from a transformed version of the *same compressed bytes*: the
image is decoded and resized inside the batch function as usual, then flipped and/or
rotated by a small angle there (no pixels are stored, no files written). Which
transform a copy gets depends only on ``seed``, the image's ``path`` and the copy
number, so the rows are the same on every run, whatever the partitioning.

``augment`` accepts: ``True`` (flip + rotate up to 10°, 1 copy), a number of copies,
an operation list (``"flip, rotate"``, ``"flip, rotate=15, copies=2"``) or a dict
(``{"flip": True, "rotate": 15, "copies": 2}``). Augmented rows carry the transform in
an ``augmentation`` column (null for the originals).
"""
from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from .errors import OptionError, did_you_mean
from .inference import BatchRunner, decode_bytes, decode_struct
from .results import FEATURES_COL, FEATURIZE_ERROR_COL, PATH_COL

AUGMENT_COL = "augmentation"
OPERATIONS = ("flip", "rotate", "copies")
DEFAULT_ROTATE = 10.0
_COPY_COL = "__sparkdl_aug_copy"
_TMP_COL = "__sparkdl_aug"


@dataclass(frozen=True)
class Augmentation:
    """What to do: horizontal flips (p=0.5), rotation in [-rotate, rotate] degrees."""

    copies: int = 1
    flip: bool = True
    rotate: float = DEFAULT_ROTATE

    def params(self, seed: int, path: str, copy: int) -> Tuple[bool, float]:
        """(flip?, angle) for one copy of one image: a function of seed, path, copy."""
        key = zlib.crc32(f"{int(seed)}|{path}|{int(copy)}".encode("utf-8"))
        rng = np.random.default_rng(key)
        flip = bool(self.flip and rng.random() < 0.5)
        angle = float(rng.uniform(-self.rotate, self.rotate)) if self.rotate else 0.0
        if self.flip and not self.rotate and not flip:
            flip = True  # a flip-only copy that would be identical: flip it
        return flip, round(angle, 3)

    def apply(self, array: np.ndarray, flip: bool, angle: float) -> np.ndarray:
        """Transform an (h, w, 3) uint8 RGB image (same size out)."""
        from PIL import Image
        image = Image.fromarray(array, "RGB")
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if angle:
            image = image.rotate(angle, resample=Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def parse_augment(augment: Any) -> Optional[Augmentation]:
    """The ``augment`` option as an :class:`Augmentation` (None: no augmentation)."""
    if augment is None or augment is False:
        return None
    if isinstance(augment, Augmentation):
        return augment
    if augment is True:
        return Augmentation()
    if isinstance(augment, (int, float)) and not isinstance(augment, bool):
        return _checked({"copies": augment, "flip": True, "rotate": DEFAULT_ROTATE})
    if isinstance(augment, str):
        text = augment.strip().lower()
        if text in ("", "none", "false", "no", "off"):
            return None
        if text in ("true", "yes", "on"):
            return Augmentation()
        parts: Dict[str, Any] = {"flip": False, "rotate": 0.0}
        for item in (p.strip() for p in text.split(",") if p.strip()):
            key, eq, value = (s.strip() for s in item.partition("="))
            if key == "rotate" and not eq:
                value = DEFAULT_ROTATE
            elif key == "flip" and not eq:
                value = True
            elif key == "copies" and not eq:
                raise OptionError("option 'augment': copies needs a number (copies=2)")
            parts[key] = value
        return _checked(parts)
    if isinstance(augment, dict):
        return _checked({"flip": False, "rotate": 0.0, **augment})
    raise OptionError(f"option 'augment': expected true, a number of copies, or operations "
                      f"like 'flip, rotate=10, copies=2' (got {augment!r})")


def _checked(parts: Dict[str, Any]) -> Augmentation:
    for key in parts:
        if key not in OPERATIONS:
            raise OptionError(f"option 'augment': unknown operation {key!r}"
                              f"{did_you_mean(key, OPERATIONS)} (valid: {', '.join(OPERATIONS)})")
    try:
        copies = int(parts.get("copies", 1))
        rotate = float(parts.get("rotate") or 0.0)
        flip = parts.get("flip")
        flip = flip if isinstance(flip, bool) else str(flip).lower() in ("true", "yes", "1", "on")
    except (TypeError, ValueError):
        raise OptionError(f"option 'augment': cannot read {parts!r} (e.g. 'flip, rotate=10, "
                          "copies=2')") from None
    if not 1 <= copies <= 20:
        raise OptionError(f"option 'augment': copies must be 1 to 20 (got {copies})")
    if not 0 <= rotate <= 45:
        raise OptionError(f"option 'augment': rotate must be 0 to 45 degrees (got {rotate})")
    if not flip and not rotate:
        raise OptionError("option 'augment': choose flip and/or rotate")
    return Augmentation(copies, bool(flip), rotate)


def describe(flip: bool, angle: float) -> str:
    return ",".join((["flip"] if flip else []) + ([f"rotate={angle:g}"] if angle else [])) \
        or "none"


# --------------------------------------------------------------------------- Spark side

def augmented_rows(df: Any, image_col: str, spec: Any, augment: Any, seed: int,
                   batch_size: int, threads: int = 1) -> Any:
    """``copies`` augmented rows per row of *df*: its columns (image column dropped),
    ``features`` (MLlib vector, null if undecodable), ``featurize_error`` and
    ``augmentation``. Lazy; nothing runs until used."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    aug = parse_augment(augment)
    if aug is None:
        raise OptionError("option 'augment': nothing to do")
    path = F.col(PATH_COL) if PATH_COL in df.columns else F.lit("")
    expanded = df.withColumn(_COPY_COL, F.explode(F.sequence(F.lit(1), F.lit(aug.copies))))
    udf = augment_udf(spec, aug, int(seed), int(batch_size), threads)
    tmp = F.col(_TMP_COL)
    out = expanded.withColumn(_TMP_COL, udf(F.struct(
        F.col(image_col).alias("image"), path.cast("string").alias("path"),
        F.col(_COPY_COL).alias("copy"))))
    out = (out.withColumn(FEATURES_COL, F.when(tmp["features"].isNotNull(),
                                               array_to_vector(tmp["features"])))
              .withColumn(FEATURIZE_ERROR_COL, tmp["error"])
              .withColumn(AUGMENT_COL, tmp["augmentation"]))
    return out.drop(_TMP_COL, _COPY_COL, image_col)


def augment_udf(spec: Any, aug: Augmentation, seed: int, batch_size: int, threads: int) -> Any:
    """The pandas UDF: struct<image, path, copy> -> features, error and the transform."""
    adapter = functools.partial(_augmented_items, aug=aug, seed=seed)
    return BatchRunner(spec, batch_size, _augmented_frame, adapter, threads).udf(
        "features array<float>, error string, augmentation string")


def _augmented_items(frame: pd.DataFrame, model: Any, aug: Augmentation, seed: int
                     ) -> Tuple[List[Tuple[Any, bool, float]], Any]:
    """The batch runner's adapter: per row (image, flip?, angle), and a decoder that
    decodes then transforms."""
    items = []
    for image, path, copy in zip(frame["image"], frame["path"], frame["copy"]):
        flip, angle = aug.params(seed, str(path), int(copy))
        items.append((image, flip, angle))
    return items, functools.partial(_decode_augmented, aug=aug)


def _augmented_frame(items: List[Tuple[Any, bool, float]], features: List[Any],
                     errors: List[Optional[str]]) -> pd.DataFrame:
    return pd.DataFrame({"features": features, "error": errors,
                         "augmentation": [describe(flip, angle) for _, flip, angle in items]})


def _decode_augmented(item: Tuple[Any, bool, float], size: Tuple[int, int],
                      aug: Augmentation) -> np.ndarray:
    image, flip, angle = item
    if isinstance(image, (dict, pd.Series)) or hasattr(image, "nChannels"):
        array = decode_struct(dict(image) if isinstance(image, pd.Series) else image, size)
    else:
        array = decode_bytes(image, size)
    return aug.apply(array, flip, angle)


__all__ = ["Augmentation", "parse_augment", "augmented_rows", "augment_udf", "describe",
           "AUGMENT_COL"]
