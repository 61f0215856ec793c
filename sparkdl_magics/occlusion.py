"""Occlusion sensitivity: heatmaps for classifiers with no class weights over the features.

Random forests, gradient-boosted trees, MLPs, naive Bayes and factorization machines
cannot be folded back onto the backbone's maps the way a linear classifier can (CAM).
So ask the model itself: hide one patch of the image, featurize it, and see how much
the explained class's probability drops. A big drop means the evidence was there.

How, for each of the *n* chosen images:

- **Variants** (on the executors, by the batch runner and the worker's cached
  backbone): the image as the backbone sees it (resized to its input size), and one
  copy per cell of a ``grid`` x ``grid`` layout with that cell's patch filled with
  the image's mean colour. A patch is twice a cell's side, centred on the cell (it
  overlaps its neighbours by half), so an object across a cell border is still hidden
  whole by one patch. Only features leave the worker, never pixels.
- **Probabilities** (in the JVM): the fitted pipeline's own classifier stage, exactly
  as ``%%fit`` trained it, transforms those feature vectors; one number per variant
  (the explained class's probability; the raw score for a classifier without
  probabilities) comes back to the driver.
- **Heat** (on the driver): per cell, the unoccluded probability minus the occluded
  one; the explanation keeps its positive part scaled to [0, 1] (``grid`` x ``grid``,
  scaled to the image's size on request, as CAM maps are).

Cost, bounded by the grid: ``n x (grid**2 + 1)`` backbone passes, as many as
featurizing that many images: 12 x 50 = 600 at the defaults, at most 48 x 257 = 12,336
(``grid`` 16, the largest allowed). The classifier sees as many feature vectors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import defaults
from .errors import OptionError
from .inference import LoadedModel

#: Patch positions per side a user may ask for: 2 x 2 is the coarsest map worth
#: drawing; 16 x 16 already costs 257 backbone passes per image.
MIN_GRID, MAX_GRID = 2, 16
#: What the occlusion UDF returns per image: the features of every variant (the
#: original first), the image's own size, a PNG thumbnail, and why it failed.
UDF_RETURN = "features array<array<float>>, width int, height int, thumbnail binary, error string"


def check_grid(grid: Any, method: str) -> int:
    """The grid for *method* (``occlusion``), or a one-line error for a grid out of
    range or given to a method that has none."""
    if grid is None:
        return defaults.OCCLUSION_GRID
    if method != "occlusion":
        raise OptionError(f"option 'grid': only method occlusion uses a patch grid (this "
                          f"model is explained with {method})")
    text = str(grid).strip()
    if isinstance(grid, bool) or not isinstance(grid, (int, str)) or not text.isdigit():
        raise OptionError(f"option 'grid': expected a whole number of patches per side "
                          f"(got {grid!r})")
    value = int(text)
    if not MIN_GRID <= value <= MAX_GRID:
        raise OptionError(f"option 'grid': patches per side must be {MIN_GRID} to {MAX_GRID} "
                          f"(got {grid!r}; each image costs grid x grid + 1 backbone passes)")
    return value


# --------------------------------------------------------------------------- the variants

def patch_boxes(grid: int, width: int, height: int) -> List[Tuple[int, int, int, int]]:
    """The patch of each cell, row by row: (x0, y0, x1, y1) in pixels, end exclusive.
    Twice a cell's side, centred on the cell, clipped to the image."""
    boxes = []
    for row in range(grid):
        for col in range(grid):
            x0, x1 = (round((col + d) * width / grid) for d in (-0.5, 1.5))
            y0, y1 = (round((row + d) * height / grid) for d in (-0.5, 1.5))
            boxes.append((max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)))
    return boxes


def occluded(image: np.ndarray, boxes: Sequence[Tuple[int, int, int, int]]) -> np.ndarray:
    """Copies of an (h, w, 3) uint8 image, one per box, the box filled with the
    image's mean colour: (len(boxes), h, w, 3)."""
    fill = np.round(image.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    out = np.repeat(image[None], len(boxes), axis=0)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        out[k, y0:y1, x0:x1] = fill
    return out


@dataclass(frozen=True)
class OcclusionGrid:
    """What turns the cached backbone into an occlusion model (hashable: a cache key).

    ``grid``: patch positions per side; ``batch_size``: variants per backbone call."""

    grid: int
    batch_size: int

    @property
    def variants(self) -> int:
        return self.grid * self.grid + 1

    def __call__(self, base: LoadedModel) -> "OcclusionModel":
        return OcclusionModel(base, self)


class OcclusionModel(LoadedModel):
    """The backbone run on every variant of each image: :meth:`run` takes decoded
    uint8 images (n, h, w, 3) and returns features (n, grid**2 + 1, d), the
    unoccluded image first. Variants are made ``batch_size`` at a time, so memory
    does not grow with the grid."""

    def __init__(self, base: LoadedModel, head: OcclusionGrid):
        super().__init__(base.spec, base.model, base.preprocess, base.precision)
        self.base = base
        self.head = head

    def run(self, x: np.ndarray) -> np.ndarray:
        w, h = self.input_size
        boxes = [None] + patch_boxes(self.head.grid, w, h)
        step = max(int(self.head.batch_size), 1)
        out = []
        for image in np.asarray(x, dtype=np.uint8):
            parts = []
            for start in range(0, len(boxes), step):
                chunk = boxes[start:start + step]
                originals = [image[None]] if chunk[0] is None else []
                variants = np.concatenate(
                    originals + [occluded(image, [b for b in chunk if b is not None])])
                parts.append(self.base.predict(variants))
            out.append(np.concatenate(parts))
        return np.stack(out).astype(np.float32)


# --------------------------------------------------------------------------- runner parts

def occlusion_batch(batch: Any, model: OcclusionModel) -> Tuple[List[Any], Any]:
    """The runner's adapter: rows of ``image`` (bytes or an image struct) as dicts;
    the decoder gives the image at the backbone's input size (uint8 RGB)."""
    from .cam import batch_items, decode_image
    return batch_items(batch), decode_image


def occlusion_frame(items: Sequence[Any], features: List[Optional[np.ndarray]],
                    errors: List[Optional[str]]) -> Any:
    """The runner's formatter: every variant's features, the image's size and a
    thumbnail per row (:data:`UDF_RETURN`)."""
    import pandas as pd

    from .cam import size_and_thumbnail
    rows = []
    for item, feats, error in zip(items, features, errors):
        width = height = thumb = None
        if feats is not None:
            width, height, thumb = size_and_thumbnail(item)
        rows.append({"features": None if feats is None else list(feats),
                     "width": width, "height": height, "thumbnail": thumb, "error": error})
    return pd.DataFrame(rows, columns=["features", "width", "height", "thumbnail", "error"])


# --------------------------------------------------------------------------- the driver

def occlusion_heatmaps(model: Any, df: Any, image_col: str, spec: Any, targets: Dict[str, int],
                       grid: int, batch_size: int, spark: Any) -> Dict[str, Dict[str, Any]]:
    """Per chosen path, what :func:`sparkdl_magics.explanation.explain` draws: the raw
    map (``heat``: probability drop per cell, ``map_h`` x ``map_w``), the image's size,
    its thumbnail and any error. One Spark job: backbone on the executors, then the
    fitted classifier stage; only per-variant numbers and *n* thumbnails come back."""
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    from .inference import BatchRunner
    from .progress import work
    from .results import PATH_COL, PROBABILITIES_COL
    from .session import task_cores
    head = OcclusionGrid(grid, batch_size)
    classifier = model.classifier_model
    features_col = classifier.getFeaturesCol()
    score_col = PROBABILITIES_COL if model.has_probabilities else classifier.getRawPredictionCol()
    runner = BatchRunner(spec, batch_size, occlusion_frame, adapter=occlusion_batch,
                         threads=task_cores(spark), raw=True, derive=head)
    per_image = (df.where(F.col(PATH_COL).isin(list(targets)))
                 .dropDuplicates([PATH_COL])
                 .select(PATH_COL, runner.udf(UDF_RETURN)(
                     F.struct(F.col(image_col).alias("image"))).alias("o")))
    # An image that failed has no variants: one placeholder row keeps its error (its
    # score is ignored); a classifier cannot take a null vector.
    blank = F.array_repeat(F.lit(0.0).cast("float"), int(model.num_features))
    variants = (per_image
                .select(PATH_COL, "o.width", "o.height", "o.thumbnail", "o.error",
                        F.posexplode_outer("o.features").alias("variant", "f"))
                .withColumn(features_col, array_to_vector(F.coalesce("f", blank))))
    target = F.create_map(*[x for path, k in targets.items() for x in (F.lit(path), F.lit(k))])
    first = F.coalesce(F.col("variant"), F.lit(0)) == 0
    scored = classifier.transform(variants).select(
        PATH_COL, F.coalesce("variant", F.lit(0)).alias("variant"),
        F.element_at(vector_to_array(score_col), target[F.col(PATH_COL)] + 1).alias("score"),
        *[F.when(first, F.col(c)).alias(c) for c in ("width", "height", "thumbnail", "error")])
    with work(spark, f"explain: occlusion of {len(targets)} images x {head.variants - 1} "
              "patches", items=len(targets)):
        rows = scored.collect()
    return assemble(rows, grid)


def assemble(rows: Sequence[Any], grid: int) -> Dict[str, Dict[str, Any]]:
    """Collected (path, variant, score, width, height, thumbnail, error) rows -> per
    path the raw map: the unoccluded score minus each cell's occluded score."""
    out: Dict[str, Dict[str, Any]] = {}
    scores: Dict[str, Dict[int, float]] = {}
    for r in rows:
        path = r["path"]
        if r["variant"] == 0:
            out[path] = {k: r[k] for k in ("width", "height", "thumbnail", "error")}
        scores.setdefault(path, {})[int(r["variant"])] = r["score"]
    cells = grid * grid
    for path, info in out.items():
        got = scores.get(path, {})
        if info["error"] is None and len(got) == cells + 1:
            base = float(got[0])
            info["heat"] = [base - float(got[k + 1]) for k in range(cells)]
            info["map_h"] = info["map_w"] = grid
        elif info["error"] is None:
            info["error"] = f"occlusion: {len(got)} of {cells + 1} variants scored"
    return out


__all__ = ["check_grid", "patch_boxes", "occluded", "OcclusionGrid", "OcclusionModel",
           "occlusion_batch", "occlusion_frame", "occlusion_heatmaps", "assemble",
           "MIN_GRID", "MAX_GRID", "UDF_RETURN"]
