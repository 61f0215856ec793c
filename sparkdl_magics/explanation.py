"""Why did it say that: class heatmaps for a fitted model's predictions (``%%explain``).

``explain(model, images, n=12, cls="predicted", method="auto")`` picks *n* images
(mistakes first, most confident first, when labels are known), then draws for each
the heatmap of one class: where in the image that class's score came from.

Two Spark jobs, both in the cell's progress and cancel scope: the fitted pipeline
predicts every image (to find the mistakes; only path, label and prediction come
back), then the batch runner computes the *n* heatmaps on the executors, the worker's
cached backbone turned into a heatmap model (:mod:`sparkdl_magics.cam`). Only the
*n* small maps and thumbnails reach the driver; overlays are drawn here from them.

Methods: ``cam`` (exact for a linear classifier on globally averaged maps: the
classifier's weights applied to the maps), ``gradcam`` (the classifier appended to
the backbone as a linear layer; any feature layer), ``auto`` (CAM where exact, else
Grad-CAM; occlusion for any other classifier), ``occlusion`` (any classifier: the
drop of the class's probability when a patch is hidden, :mod:`sparkdl_magics.occlusion`).
Tree ensembles, MLPs, naive Bayes and factorization machines have no class weights
over the features: ``auto`` explains them by occlusion. A fine-tuned model
(``%%finetune``) is explained by Grad-CAM through its whole network
(:mod:`sparkdl_magics.finetuning.heatmaps`); everything else here is shared.

The maps are only as good as the classifier's weights: MLlib standardizes features by
default, which lets near-constant channels (often ones firing on the background) take
large weights. The map stays exact, but noisier: on the shapes test the peak fell on
the object for 64 % of correct answers with ``standardization: true`` and 100 % with
``standardization: false`` (one run each; backbones trained the same way, same images).
"""
from __future__ import annotations

import io
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import defaults
from .cam import find_maps_layer, linear_head, normalise
from .errors import DataError, OptionError, unknown_choice
from .occlusion import check_grid, occlusion_heatmaps
from .results import (CLASS_INDEX_COL, CONTENT_COL, LABEL_COL, LABEL_NAME_COL, PATH_COL,
                      PROBABILITIES_COL, Explanation, FineTunedModel, FittedModel, ImageSet)
from .session import is_dataframe

METHODS = ("auto", "cam", "gradcam", "occlusion")
#: Classifiers with one weight vector per class over the features: what CAM and
#: Grad-CAM need.
LINEAR = ("logistic_regression", "linear_svc")
TARGETS = ("predicted", "true")
#: :func:`choose_method`'s *classifier* for a fine-tuned network (its own head).
NETWORK = "fine-tuned network"


def explain(model: Any, images: Any = None, n: int = defaults.EXPLAIN_IMAGES,
            cls: str = "predicted", method: str = "auto", alpha: float = defaults.EXPLAIN_ALPHA,
            batch_size: int = defaults.BATCH_SIZE, spark: Any = None,
            grid: Optional[int] = None) -> Explanation:
    """Heatmaps of *n* images for a :class:`FittedModel` from ``%%fit`` or a
    :class:`FineTunedModel` from ``%%finetune``.

    *images*: an ImageSet (its test split, else all), a DataFrame of images (e.g. a
    split), a list of image paths, or None (the test split the model was trained on).
    *cls*: ``predicted``, ``true`` or a class name: whose evidence the map shows.
    *alpha*: the heatmap's opacity in the overlays. *grid*: occlusion's patch
    positions per side (:mod:`sparkdl_magics.occlusion`; default 7).
    """
    from .inference import check_batch_size, check_positive_int
    fitted = _check_model(model)
    n = check_positive_int("n", n)
    batch_size = check_batch_size(batch_size)
    alpha = _check_alpha(alpha)
    cls = _check_target(cls, fitted.classes)
    featurizer = fitted.pipeline_model.stages[0]
    df = _images_frame(fitted, images, spark)
    spark = spark or df.sparkSession
    resolved = featurizer.resolve(spark)
    method = _method(fitted, method, resolved.spec)
    grid = check_grid(grid, method)
    chosen = _choose_images(fitted, df, n, spark)
    if not chosen:
        raise DataError("option 'images': no images to explain (the frame is empty)")
    targets = _targets(chosen, cls, fitted.classes)
    if method == "occlusion":
        heats = occlusion_heatmaps(fitted, df, featurizer.getInputCol(), resolved.spec,
                                   targets, grid, batch_size, spark)
    else:
        heats = _heatmaps(df, featurizer.getInputCol(), resolved.spec,
                          _head(fitted, method), targets, batch_size, spark)
    return _explanation(fitted, chosen, targets, heats, method, cls, alpha)


def _method(model: FittedModel, method: Any, spec: Any) -> str:
    """The method for *model*: a fine-tuned network is explained by Grad-CAM only."""
    if isinstance(model, FineTunedModel):
        return choose_method(NETWORK, method, None)
    return choose_method(model.classifier, method, lambda: _pooled(spec))


def _head(model: FittedModel, method: str) -> Any:
    """What the worker turns the featurizer stage's cached model into: Grad-CAM through
    a fine-tuned network, or the linear classifier's weights over the features."""
    if isinstance(model, FineTunedModel):
        from .finetuning.heatmaps import NetworkHead
        return NetworkHead(len(model.classes), method)
    return linear_head(method, class_weights(model.classifier_model, len(model.classes)))


def explain_mistakes(evaluation: Any, model: Any, method: str = "auto",
                     alpha: float = defaults.EXPLAIN_ALPHA, spark: Any = None) -> Any:
    """Heatmap overlays for an evaluation's mistakes gallery (``%%evaluate`` with
    ``explain: true``): the ``overlay`` column of ``evaluation.errors`` (PNG; None
    where an image is not at hand), the same overlays :func:`explain` draws."""
    from pyspark.sql import functions as F
    errors = evaluation.errors
    if errors is None or not len(errors):
        return evaluation
    source = _source_images(model)
    paths = [p for p in errors["path"] if p]
    if source is None or not paths:
        evaluation.notes.append("explain: the model does not know its images (loaded from "
                                "disk?), so the mistakes have no heatmaps")
        return evaluation
    frame = source.df.where(F.col(PATH_COL).isin(paths))
    shown = explain(model, frame, n=len(paths), method=method, alpha=alpha, spark=spark)
    overlays = dict(zip(shown.rows["path"], shown.rows["overlay"]))
    errors["overlay"] = [overlays.get(p) for p in errors["path"]]
    return evaluation


# --------------------------------------------------------------------------- checks

def _check_model(model: Any) -> FittedModel:
    if not isinstance(model, FittedModel):
        raise OptionError(f"option 'model': cannot explain a {type(model).__name__}; expected "
                          "a fitted model from %%fit or %%finetune")
    if not model.has_featurizer:
        raise OptionError("option 'model': this model has no featurizer stage (it was fit "
                          "on precomputed features), so it cannot be traced back to pixels")
    return model


def _check_alpha(alpha: Any) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise OptionError(f"option 'alpha': expected a number in [0, 1] (got {alpha!r})") from None
    if not 0.0 <= value <= 1.0:
        raise OptionError(f"option 'alpha': expected a number in [0, 1] (got {alpha!r})")
    return value


def _check_target(cls: Any, classes: Sequence[str]) -> str:
    text = str(cls).strip()
    if text.lower() in TARGETS:
        return text.lower()
    if text in classes:
        return text
    raise unknown_choice("class", cls, list(TARGETS) + list(classes))


def choose_method(classifier: str, method: Any, pooled: Any) -> str:
    """``cam``, ``gradcam`` or ``occlusion`` for *classifier*, or a one-line error
    naming who supports what. *pooled*: a callable (it may load the model) saying
    whether the features are the global average of the last maps (CAM is exact only
    then). *classifier* :data:`NETWORK`: a fine-tuned network, explained by Grad-CAM
    only."""
    method = str(method).strip().lower()
    if method not in METHODS:
        raise unknown_choice("method", method, METHODS)
    if classifier == NETWORK:
        if method == "cam":
            raise OptionError("option 'method': cam needs a linear classifier on pooled "
                              "features; a fine-tuned network's head is not linear in its "
                              "maps, so use method: gradcam (or auto)")
        if method == "occlusion":
            raise OptionError("option 'method': occlusion scores hidden patches with a "
                              "classifier fitted on frozen features; a fine-tuned network "
                              "is explained with method: gradcam (or auto)")
        return "gradcam"
    if method == "occlusion" or (method == "auto" and classifier not in LINEAR):
        return "occlusion"
    if classifier not in LINEAR:
        raise OptionError(f"option 'method': {method} needs a linear classifier "
                          f"({', '.join(LINEAR)}); a {classifier} model has no class weights "
                          "over the features: use method occlusion (or auto)")
    if method == "gradcam":
        return method
    exact = bool(pooled())
    if method == "cam" and not exact:
        raise OptionError("option 'method': cam is exact only when the features are the "
                          "global average of the last convolutional maps, and this "
                          "model's are not; use method: gradcam (or auto)")
    return "cam" if exact else "gradcam"


def _pooled(spec: Any) -> bool:
    """Are the features the global average of the backbone's last maps?"""
    if spec.model:  # a registry backbone: pooled as the featurizer asked
        return spec.pooling == "avg"
    from .inference import load_user_model
    if os.path.isdir(spec.model_file.driver_path):
        raise OptionError("option 'model': heatmaps need a Keras model file (.keras / .h5); "
                          "this model's featurizer is a SavedModel folder")
    net = load_user_model(spec.model_file.driver_path, spec.layer, spec.safe_mode)
    return find_maps_layer(net)[1]


def class_weights(classifier: Any, num_classes: int) -> np.ndarray:
    """The fitted linear classifier's (classes x features) weights.

    A binary model has one vector ``w`` (score of class 1 minus class 0): it is
    written as ``[-w/2, w/2]``, the multinomial form with the same probabilities."""
    kind = type(classifier).__name__
    if kind == "LogisticRegressionModel":
        w = np.asarray(classifier.coefficientMatrix.toArray(), dtype=np.float64)
    elif kind == "LinearSVCModel":
        w = np.asarray(classifier.coefficients.toArray(), dtype=np.float64)[None, :]
    elif kind == "OneVsRestModel":
        w = np.stack([class_weights(m, 2)[1] * 2.0 for m in classifier.models])
    else:
        raise OptionError(f"option 'model': cannot read class weights from a {kind}")
    if w.shape[0] == 1 and num_classes == 2:
        w = np.concatenate([-w / 2.0, w / 2.0])
    return w


# --------------------------------------------------------------------------- the images

def _source_images(model: FittedModel) -> Optional[ImageSet]:
    """The image set the model was trained on, when it knows it (not after loading)."""
    if isinstance(model, FineTunedModel):
        return model.images
    return model.features.images if model.features is not None else None


def _images_frame(model: FittedModel, images: Any, spark: Any) -> Any:
    """The DataFrame of images to choose from, with labels when known."""
    source = _source_images(model)
    if images is None:
        if source is None:
            raise OptionError("option 'images': this model does not know its images (it was "
                              "loaded from disk?): pass images (an image set, a split or "
                              "a list of paths)")
        images = source
    if isinstance(images, ImageSet):
        return images.test if images.test is not None else images.df
    if is_dataframe(images):
        return images
    if isinstance(images, str):
        images = [images]
    if isinstance(images, (list, tuple)) and images and all(isinstance(p, str) for p in images):
        return _paths_frame(list(images), source, spark)
    raise OptionError(f"option 'images': cannot explain a {type(images).__name__}; expected "
                      "an image set, a DataFrame of images or a list of image paths")


def _paths_frame(paths: List[str], source: Optional[ImageSet], spark: Any) -> Any:
    """The named images: local files read by the workers (any name: Spark's file
    sources would hide ``_x.jpg``), other URIs by Spark's ``binaryFile``."""
    from .loading.inventory import local_path, rows_of
    from .session import get_spark
    local = {p: local_path(p) for p in paths}
    missing = [f for f in local.values() if f is not None and not os.path.isfile(f)]
    if missing:
        raise OptionError(f"option 'images': no image file at {missing[0]!r}"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    spark = spark or (source.df.sparkSession if source is not None else get_spark())
    files = ["file:" + os.path.abspath(f) for f in local.values() if f is not None]
    remote = [p for p, f in local.items() if f is None]
    df = rows_of(spark, files) if files else None
    if remote:
        read = spark.read.format("binaryFile").load(remote).select(PATH_COL, CONTENT_COL)
        df = read if df is None else df.unionByName(read)
    if source is not None:
        labels = [c for c in (LABEL_COL, LABEL_NAME_COL) if c in source.df.columns]
        if labels:
            df = df.join(source.df.select(PATH_COL, *labels), PATH_COL, "left")
    return df


def _true_index(df: Any, classes: Sequence[str]) -> Any:
    """The true class as the model's class index (by name when the frame has names)."""
    from pyspark.sql import functions as F
    if LABEL_NAME_COL in df.columns:
        mapping = F.create_map(*[x for i, c in enumerate(classes)
                                 for x in (F.lit(c), F.lit(float(i)))])
        return mapping[F.col(LABEL_NAME_COL)]
    if LABEL_COL in df.columns:
        return F.col(LABEL_COL).cast("double")
    return F.lit(None).cast("double")


def _choose_images(model: FittedModel, df: Any, n: int, spark: Any) -> List[Dict[str, Any]]:
    """The *n* images to explain: mistakes first (most confident first), then the rest
    by path. Runs the fitted pipeline on every image; only a few fields come back."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from .progress import work
    from .training import transform
    true = _true_index(df, model.classes)
    predicted = transform(model, df.withColumn("__true", true))
    confidence = (F.element_at(vector_to_array(PROBABILITIES_COL),
                               (F.col(CLASS_INDEX_COL) + 1).cast("int"))
                  if model.has_probabilities else F.lit(None).cast("double"))
    wrong = F.coalesce(F.col("__true") != F.col(CLASS_INDEX_COL), F.lit(False))
    picked = (predicted.select(PATH_COL, F.col("__true").alias("true"),
                               F.col(CLASS_INDEX_COL).alias("predicted"),
                               confidence.alias("probability"), wrong.alias("wrong"))
              .where(F.col("predicted").isNotNull())
              .orderBy(F.col("wrong").desc(), F.when(F.col("wrong"), F.col("probability"))
                       .desc_nulls_last(), F.col(PATH_COL))
              .limit(n))
    with work(spark, f"explain: predict to choose {n} images"):
        return [r.asDict() for r in picked.collect()]


def _targets(chosen: List[Dict[str, Any]], cls: str, classes: Sequence[str]) -> Dict[str, int]:
    """Per chosen path, the index of the class whose heatmap is drawn."""
    if cls == "predicted":
        return {r[PATH_COL]: int(r["predicted"]) for r in chosen}
    if cls == "true":
        unlabelled = sum(r["true"] is None for r in chosen)
        if unlabelled:
            raise OptionError(f"option 'class': true needs labelled images ({unlabelled} of "
                              f"the {len(chosen)} chosen have no known class)")
        return {r[PATH_COL]: int(r["true"]) for r in chosen}
    return {r[PATH_COL]: list(classes).index(cls) for r in chosen}


# --------------------------------------------------------------------------- heatmaps

def _heatmaps(df: Any, image_col: str, spec: Any, head: Any, targets: Dict[str, int],
              batch_size: int, spark: Any) -> Dict[str, Dict[str, Any]]:
    """The chosen images' raw maps, sizes and thumbnails, computed on the executors
    (*head*: the ``derive`` that turns the cached model of *spec* into a heatmap model)."""
    from pyspark.sql import functions as F

    from .cam import UDF_RETURN, heatmap_batch, heatmap_frame
    from .inference import BatchRunner
    from .progress import work
    from .session import task_cores
    if image_col not in df.columns:
        raise DataError(f"the images have no column {image_col!r} (columns: "
                        f"{', '.join(df.columns)})")
    target = F.create_map(*[x for path, k in targets.items() for x in (F.lit(path), F.lit(k))])
    runner = BatchRunner(spec, batch_size, heatmap_frame, adapter=heatmap_batch,
                         threads=task_cores(spark), raw=True, derive=head)
    rows = (df.where(F.col(PATH_COL).isin(list(targets)))
            .dropDuplicates([PATH_COL])
            .select(PATH_COL, F.struct(F.col(image_col).alias("image"),
                                       target[F.col(PATH_COL)].alias("target")).alias("x"))
            .select(PATH_COL, runner.udf(UDF_RETURN)(F.col("x")).alias("h")))
    with work(spark, f"explain: {head.method} heatmaps of {len(targets)} images",
              items=len(targets)):
        return {r[PATH_COL]: r["h"].asDict() for r in rows.collect()}


# --------------------------------------------------------------------------- the result

def _explanation(model: FittedModel, chosen: List[Dict[str, Any]], targets: Dict[str, int],
                 heats: Dict[str, Dict[str, Any]], method: str, cls: str, alpha: float
                 ) -> Explanation:
    import pandas as pd
    classes = list(model.classes)
    records, maps = [], []
    for r in chosen:
        path = r[PATH_COL]
        h = heats.get(path) or {"error": "not found in the second pass (the images changed?)"}
        small = None
        if h.get("heat") is not None:
            small = normalise(np.asarray(h["heat"], dtype=np.float32)
                              .reshape(h["map_h"], h["map_w"]))
        maps.append(small)
        true = None if r["true"] is None else classes[int(r["true"])]
        records.append({
            "path": path, "true": true, "predicted": classes[int(r["predicted"])],
            "probability": r["probability"], "explained": classes[targets[path]],
            "correct": None if true is None else not r["wrong"],
            "width": h.get("width"), "height": h.get("height"),
            "thumbnail": h.get("thumbnail"),
            "overlay": overlay_png(h.get("thumbnail"), small, alpha),
            "error": h.get("error")})
    rows = pd.DataFrame.from_records(records, columns=[
        "path", "true", "predicted", "probability", "explained", "correct", "width", "height",
        "thumbnail", "overlay", "error"])
    notes = []
    failed = int(rows["error"].notna().sum())
    if failed:
        notes.append(f"{failed} image{'s' if failed != 1 else ''} could not be explained "
                     "(see the error column)")
    return Explanation(rows=rows, maps=maps, classes=classes, method=method, target=cls,
                       alpha=alpha, model_name=model.model_name, notes=notes,
                       untrained=model.untrained)


def jet(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 on the classic blue-green-red heatmap scale."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0], dtype=np.float32)  # red, green, blue
    return (np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0) * 255).astype(np.uint8)


def overlay_png(thumbnail: Optional[bytes], heat: Optional[np.ndarray], alpha: float
                ) -> Optional[bytes]:
    """The heatmap over the thumbnail (``alpha``: the heatmap's opacity), as PNG."""
    if thumbnail is None or heat is None:
        return None
    from PIL import Image
    image = Image.open(io.BytesIO(bytes(thumbnail))).convert("RGB")
    big = Image.fromarray(np.asarray(heat, dtype=np.float32), "F").resize(
        image.size, Image.Resampling.BILINEAR)
    colour = jet(np.asarray(big)).astype(np.float32)
    mixed = (1.0 - alpha) * np.asarray(image, dtype=np.float32) + alpha * colour
    buf = io.BytesIO()
    Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["explain", "explain_mistakes", "choose_method", "class_weights", "overlay_png",
           "jet", "METHODS", "LINEAR", "NETWORK"]
