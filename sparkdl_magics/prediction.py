"""Prediction without training: top-K ImageNet labels per image (``%%predict``).

``predict(images, model="InceptionV3", weights="imagenet", top_k=5)`` runs a registry
model *with* its 1000-class ImageNet head (``include_top``) over compressed image bytes
(or Spark image-source structs) and returns, per image, the top-K class names with
their probabilities. It is built on the featurize core: weights are resolved once on
the driver and shipped (:func:`sparkdl_magics.weights.resolve_spec` with
``include_top=True``), each Python worker builds the model once
(:func:`sparkdl_magics.inference.get_model`) and decodes/infers in batches
(:func:`sparkdl_magics.inference.run_decoded`). Top-K is taken inside the batch, so
only K (label, probability) pairs per image leave the worker.

Class names come from ``sparkdl_magics/data/imagenet_class_index.json`` (Keras'
format), shipped in the package: nothing is downloaded. A user model file works too:
its output classes are named by ``labels`` (a list), else by their index.

The same batch function backs :func:`sparkdl_magics.sql.register_sql_function` and
works on streaming DataFrames (no Spark action is run on the input).
"""
from __future__ import annotations

import functools
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from . import defaults, engines
from . import precision as precisions
from .errors import DataError, OptionError
from .frames import image_column, images_frame
from .inference import (ENGINE_FIELD, PRECISION_FIELD, BatchRunner, check_batch_size,
                        check_positive_int)
from .results import (CONTENT_COL, FEATURES_COL, IMAGE_COL, LABEL_NAME_COL,
                      LABEL_PROBABILITIES_COL, LABELS_COL, PATH_COL, PREDICT_ERROR_COL,
                      PREDICT_ENGINE_COL, PREDICT_PRECISION_COL, PREDICTED_LABELS_COL,
                      TOP_K_COL, TOP_LABEL_COL, TOP_PROBABILITY_COL, FineTunedModel, ImageSet,
                      MultiLabelModel, Predictions)

ERROR_COL = PREDICT_ERROR_COL
PRECISION_COL = PREDICT_PRECISION_COL
ENGINE_COL = PREDICT_ENGINE_COL
_TMP_COL = "__sparkdl_predict"

#: One predicted class.
CLASS_TYPE = "struct<class_id:int,wnid:string,label:string,probability:float>"
#: What the batch function returns per image (``outputs='labels'``).
LABELS_RETURN = f"predictions array<{CLASS_TYPE}>, error string"
#: The shapes the shared batch function can return, by ``output``.
OUTPUT_TYPES = {
    "labels": LABELS_RETURN,
    "topk": f"array<{CLASS_TYPE}>",
    "label": "string",
    "probabilities": "array<float>",
    "features": "array<float>",
    "label_set": "array<string>",
}


# --------------------------------------------------------------------------- class names

@functools.lru_cache(maxsize=1)
def imagenet_classes() -> Tuple[Tuple[str, str], ...]:
    """The 1000 ImageNet classes as (wnid, name), in class-index order (from the package)."""
    from importlib import resources
    text = resources.files("sparkdl_magics").joinpath("data/imagenet_class_index.json") \
        .read_text(encoding="utf-8")
    index = json.loads(text)
    return tuple((index[str(i)][0], index[str(i)][1]) for i in range(len(index)))


def class_names(n_classes: int, labels: Optional[Sequence[str]] = None
                ) -> Tuple[List[Optional[str]], List[str]]:
    """(wnids, names) for a model with *n_classes* outputs."""
    if labels is not None:
        if len(labels) != n_classes:
            raise OptionError(f"option 'labels': the model has {n_classes} classes but "
                              f"{len(labels)} labels were given")
        return [None] * n_classes, [str(x) for x in labels]
    if n_classes == 1000:
        pairs = imagenet_classes()
        return [p[0] for p in pairs], [p[1] for p in pairs]
    return [None] * n_classes, [str(i) for i in range(n_classes)]


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the *k* largest scores, largest first (ties: lower index)."""
    scores = np.asarray(scores)
    k = min(int(k), scores.shape[-1])
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def decode_scores(scores: np.ndarray, k: int, labels: Optional[Sequence[str]] = None
                  ) -> List[List[Dict[str, Any]]]:
    """Class scores (n, classes) -> per row the top-*k* classes as dicts (no Keras needed)."""
    scores = np.asarray(scores, dtype=np.float32)
    wnids, names = class_names(scores.shape[-1], labels)
    out = []
    for row, idx in zip(scores, top_k_indices(scores, k)):
        out.append([{"class_id": int(i), "wnid": wnids[i], "label": names[i],
                     "probability": float(row[i])} for i in idx])
    return out


# --------------------------------------------------------------------------- batch function

def image_udf(spec: Any, batch_size: int, output: str = "labels", top_k: int = defaults.TOP_K,
              labels: Optional[Sequence[str]] = None, threads: int = 1,
              head: Optional[Any] = None, threshold: Optional[float] = None,
              report_precision: bool = False, report_engine: bool = False) -> Any:
    """A pandas UDF over an image column: bytes (``content``) *or* image structs.

    The input kind is seen per batch (a Series of bytes, or a DataFrame of struct
    fields), so one UDF serves both and can be registered for SQL without knowing the
    column. ``output``: ``labels`` (struct of top-K classes + decode error), ``topk``
    (the top-K array alone), ``label``
    (top-1 name), ``probabilities`` (all class scores), ``features`` (the spec's
    output as is, e.g. pooled features) or ``label_set`` (the *labels* whose score is
    at least *threshold*: a multi-label model). Undecodable images give nulls. *head* (a
    :class:`sparkdl_magics.sql.LinearHead` or :class:`~sparkdl_magics.sql.LabelHeads`)
    turns the spec's features into class probabilities on the worker, for a fitted
    classifier. *report_precision* (``labels`` only: a struct): one field more, the type
    each task's model ran in (see :class:`~sparkdl_magics.inference.BatchRunner`);
    *report_engine* likewise the engine that ran it.
    """
    if output not in OUTPUT_TYPES:
        raise OptionError(f"unknown output {output!r} (valid: {', '.join(OUTPUT_TYPES)})")
    if (report_precision or report_engine) and output != "labels":
        raise ValueError(f"reporting needs the 'labels' output (a struct), not {output!r}")
    labels = list(labels) if labels is not None else None
    formatter = functools.partial(_format_scores, output=output, top_k=top_k, labels=labels,
                                  head=head, threshold=threshold)
    return BatchRunner(spec, batch_size, formatter, threads=threads,
                       report_precision=report_precision,
                       report_engine=report_engine).udf(OUTPUT_TYPES[output])


def _format_scores(items: Any, scores: List[Optional[np.ndarray]], errors: List[Optional[str]],
                   output: str, top_k: int, labels: Optional[List[str]],
                   head: Optional[Any] = None, threshold: Optional[float] = None) -> Any:
    """The batch runner's formatter: a fitted *head* first, then the *output* shape."""
    if head is not None:
        scores = [None if s is None else head(s) for s in scores]
    rows = [i for i, s in enumerate(scores) if s is not None]
    decoded: Dict[int, List[Dict[str, Any]]] = {}
    if rows and output in ("labels", "topk", "label"):
        k = 1 if output == "label" else top_k
        for i, top in zip(rows, decode_scores(np.stack([scores[i] for i in rows]), k, labels)):
            decoded[i] = top
    n = len(scores)
    if output == "labels":
        return pd.DataFrame({"predictions": [decoded.get(i) for i in range(n)],
                             "error": errors})
    if output == "topk":
        return pd.Series([decoded.get(i) for i in range(n)])
    if output == "label":
        return pd.Series([decoded[i][0]["label"] if i in decoded else None for i in range(n)])
    if output == "label_set":
        names = labels or []
        return pd.Series([None if s is None else [names[j] for j in np.flatnonzero(
            np.asarray(s) >= threshold)] for s in scores])
    return pd.Series([None if s is None else np.asarray(s, dtype=np.float32) for s in scores])


# --------------------------------------------------------------------------- predict()

def preview_rows(result: Predictions, n: Optional[int] = None) -> pd.DataFrame:
    """The first *n* rows (default: ``result.show``) as pandas, computed once and kept
    on ``result.rows`` (``%%predict`` calls it inside the cell's progress scope)."""
    n = result.show if n is None else int(n)
    if result.rows is None or len(result.rows) < n:
        from .progress import current_scope, work
        cols = [c for c in (PATH_COL, LABEL_NAME_COL, LABELS_COL, TOP_LABEL_COL,
                            TOP_PROBABILITY_COL, TOP_K_COL, PREDICTED_LABELS_COL,
                            LABEL_PROBABILITIES_COL, ERROR_COL) if c in result.df.columns]
        known = result.stats.get("images")
        todo = min(n, known) if known is not None else n
        scope = current_scope()
        if scope is not None:
            scope.set_items(todo, unit="images", counted=True)
        with work(result.df.sparkSession, f"predict: {result.model_name} on the first "
                  f"{todo:,} images", items=todo,
                  shuffled=result.stats.get("partitioning") == "repartition") as part:
            result.rows = read_rows(result, n, cols)
            if len(result.rows) < todo:  # fewer images than asked: all of them are done
                part.items = len(result.rows)
                if scope is not None:
                    scope.set_items(len(result.rows), unit="images", counted=True)
    return result.rows.head(n)


def read_rows(result: Predictions, limit: Optional[int], cols: Optional[Sequence[str]] = None
              ) -> pd.DataFrame:
    """*limit* rows (None: all) of *result*'s *cols* (default: all) as pandas, one job.
    Where the result reports what ran (``reporting_df``), ``stats['precision']`` and
    ``stats['engine']`` become what the tasks that computed these rows ran (see
    :class:`Predictions`)."""
    reporting = result.reporting_df
    cols = list(cols) if cols is not None else list(result.df.columns)
    if reporting is None:
        df = result.df.select(*cols)
    else:
        df = reporting.select(*cols, PRECISION_COL, ENGINE_COL)
    rows = (df if limit is None else df.limit(int(limit))).toPandas()
    if reporting is not None:
        ran = rows.pop(PRECISION_COL).dropna().unique().tolist()
        result.stats["precision"] = precisions.report(result.model_name,
                                                      result.requested_precision, ran)
        used = rows.pop(ENGINE_COL).dropna().unique().tolist()
        result.stats["engine"] = engines.describe(result.requested_engine, used)
    return rows


def predict(images: Any, model: str = defaults.MODEL, weights: Optional[str] = defaults.WEIGHTS,
            top_k: int = defaults.TOP_K, batch_size: int = defaults.BATCH_SIZE,
            labels: Optional[Sequence[str]] = None, preprocess: Optional[str] = None,
            input_col: Optional[str] = None, unsafe: bool = False,
            partitions: Any = "auto", precision: str = defaults.PRECISION,
            threshold: Optional[float] = None, spark: Any = None,
            engine: str = defaults.ENGINE) -> Predictions:
    """Top-K classes per image with a full pretrained model (no training).

    *images*: an ImageSet (its ``df``: every split) or a DataFrame with ``content``
    bytes or an ``image`` struct — a streaming DataFrame too. *model*: a registry name
    (run with its ImageNet head: ``weights`` is ``imagenet``, ``none``, or a weights
    file of the full model) or a ``.keras`` / ``.h5`` classifier file (its outputs are
    named by *labels*, else by index). Nothing runs until the result is used.
    *partitions*: ``auto`` spreads an image set's images evenly over the task slots
    (its size is known; a DataFrame keeps its partitions, to stay lazy), ``0`` keeps
    them, ``N`` repartitions to N (see :mod:`sparkdl_magics.partitioning`).
    *precision*: ``float32``, ``bfloat16``, ``float16`` or ``auto`` (see
    :mod:`sparkdl_magics.precision`); ``stats['precision']`` says what the tasks that
    computed the rows ran in, once rows are computed (``preview``, ``to_pandas``,
    ``%%predict``), and the request until then. *engine*: ``keras`` (the default),
    ``openvino`` or ``auto`` (see :mod:`sparkdl_magics.engines`); ``stats['engine']``
    is reported the same way.
    *model* may be a :class:`~sparkdl_magics.results.MultiLabelModel`: then each image
    gets its label set and one probability per label (:func:`label_sets`; *threshold*;
    its featurizer stage runs in the engine it was fitted with).
    """
    from pyspark.sql import functions as F

    from .partitioning import check_partitions
    from .session import task_cores
    if isinstance(model, MultiLabelModel):
        if engines.check(engine) != defaults.ENGINE:
            raise OptionError("option 'engine': a multi-label model runs in the engine its "
                              "featurizer stage was fitted with (leave engine out)")
        return label_sets(images, model, threshold, partitions)
    if threshold is not None:
        raise OptionError("option 'threshold' is for multi-label models (one probability "
                          "per label); this model predicts classes")
    if isinstance(model, FineTunedModel):  # its Keras file, its classes, its input scaling
        model, labels, preprocess = model.model_file, labels or model.classes, model.preprocess
    partitions = check_partitions(partitions)
    df = images_frame(images, "predict on")
    image_set = images if isinstance(images, ImageSet) else None
    top_k = check_positive_int("top_k", top_k)
    batch_size = check_batch_size(batch_size)
    precision = precisions.check(precision)
    engine = engines.check_request(engine, precision)
    spark = spark or df.sparkSession
    col = input_col or (image_set.image_col if image_set else None) or image_column(df)
    if col not in df.columns:
        raise DataError(f"the images have no column {col!r} (columns: {', '.join(df.columns)})")
    resolved = engines.with_engine(
        resolve_classifier(model, weights, preprocess, unsafe, spark, precision), engine)
    df, how = _spread(df, image_set, partitions, spark)
    udf = image_udf(resolved.spec, batch_size, "labels", top_k, labels, task_cores(spark),
                    report_precision=True, report_engine=True)
    tmp = F.col(_TMP_COL)
    out = df.withColumn(_TMP_COL, udf(F.col(col)))
    out = (out.withColumn(TOP_LABEL_COL, tmp[TOP_K_COL][0]["label"])
              .withColumn(TOP_PROBABILITY_COL, tmp[TOP_K_COL][0]["probability"])
              .withColumn(TOP_K_COL, tmp[TOP_K_COL])
              .withColumn(ERROR_COL, tmp["error"])
              .withColumn(PRECISION_COL, tmp[PRECISION_FIELD])
              .withColumn(ENGINE_COL, tmp[ENGINE_FIELD])
              .drop(_TMP_COL, *[c for c in (CONTENT_COL, IMAGE_COL, col) if c in df.columns]))
    return Predictions(out.drop(PRECISION_COL, ENGINE_COL), resolved.model_name,
                       resolved.weights, top_k,
                       resolved.untrained,
                       stats={"batch_size": batch_size, "partitioning": how,
                              "precision": precision,  # the request, until rows are computed
                              "engine": engine,
                              **({"images": image_set.num_images} if image_set else {})},
                       reporting_df=out, requested_precision=precision,
                       requested_engine=engine)


def _spread(df: Any, image_set: Optional[ImageSet], partitions: Optional[int], spark: Any
            ) -> Tuple[Any, str]:
    """*df* spread over the task slots (see *partitions* in :func:`predict`), and how."""
    from .partitioning import partition_plan
    if partitions is None and image_set is None:  # a DataFrame stays lazy
        return df, "keep"
    how, count = partition_plan(df, image_set.num_images if image_set else None,
                                image_set.stats.get("mean_bytes") if image_set else None,
                                partitions, spark)
    if how == "repartition":
        return df.repartition(count), how
    return (df.coalesce(count) if how == "coalesce" else df), how


def label_sets(images: Any, model: MultiLabelModel, threshold: Optional[float] = None,
               partitions: Any = "auto") -> Predictions:
    """Each image's label set (``predicted_labels``: the labels whose probability is at
    least *threshold*, default the model's) and ``label_probabilities`` (one per label,
    in ``model.classes`` order), from a multi-label model's featurizer stage and
    per-label classifiers; lazy, and a stream works too. ``predictions`` and
    ``prediction`` are not there: an image has a set of labels, not a ranking."""
    from .multilabel import check_threshold, transform
    from .partitioning import check_partitions
    cut = model.threshold if threshold is None else check_threshold(threshold)
    df = images_frame(images, "predict on")
    image_set = images if isinstance(images, ImageSet) else None
    image_column(df)  # one clear error for a frame without images
    df, how = _spread(df, image_set, check_partitions(partitions), df.sparkSession)
    out = transform(model, df, cut)
    out = out.drop(*[c for c in (CONTENT_COL, IMAGE_COL, FEATURES_COL) if c in out.columns])
    featurizer = model.pipeline_model.stages[0] if model.has_featurizer else None
    return Predictions(out, model.model_name or "multi-label model",
                       featurizer.getWeights() if featurizer is not None else "",
                       len(model.classes), model.untrained,
                       stats={"partitioning": how, "threshold": cut,
                              **({"images": image_set.num_images} if image_set else {})},
                       classes=list(model.classes), threshold=cut)


def resolve_classifier(model: str, weights: Optional[str], preprocess: Optional[str] = None,
                       unsafe: bool = False, spark: Any = None,
                       precision: str = defaults.PRECISION) -> Any:
    """Resolve a full classifier: a registry model with its ImageNet head, or a user
    model file run to its final output (not cut at the penultimate layer), at
    *precision*."""
    import dataclasses

    from .models import is_model_name
    from .weights import resolve_spec
    resolved = resolve_spec(str(model), "none" if weights is None else str(weights), None,
                            preprocess, include_top=True, unsafe=bool(unsafe), spark=spark)
    if not is_model_name(str(model)) and resolved.spec.layer is not None:
        resolved.spec = dataclasses.replace(resolved.spec, layer=None)
    return precisions.with_precision(resolved, precision)


__all__ = ["predict", "label_sets", "preview_rows", "read_rows", "resolve_classifier", "image_udf",
           "imagenet_classes",
           "decode_scores", "top_k_indices", "class_names"]
