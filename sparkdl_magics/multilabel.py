"""Multi-label tasks: one binary classifier per label, and their metrics.

An image set loaded with ``multi_label: keep`` carries each image's label set
(``labels``, array<string>); ``%%featurize`` keeps that column. :func:`fit` then trains
one MLlib ``LogisticRegression`` per label on the same features (label *i* present or
not) and puts them in one ``PipelineModel`` (``[featurizer] → one model per label``),
saveable and loadable with Spark alone: each model writes its probability vector to
``_p<i>``. :func:`transform` turns those into ``label_probabilities`` (array<double>,
class order) and ``predicted_labels`` (the labels whose probability is at least the
threshold, default 0.5).

:func:`evaluate` computes, from the model's own predictions, per-label ROC AUC and
average precision, micro and macro F1, subset accuracy and Hamming loss, with
scikit-learn's definitions. Choice: it aggregates in Spark rather than collecting the
probability matrix. One ``posexplode`` of (truth, probability) per image and label
gives, in one job each, the per-label confusion counts and the positives/negatives at
each distinct (label, score) pair (from which the ROC and precision-recall curves
follow exactly, as scikit-learn computes them: ties in a score form one step); one
per-image count of wrong labels gives subset accuracy, Hamming loss and the images
with the most wrong labels (a ``limit``). Only those aggregates reach the driver: at
most one row per distinct score and label, never the images.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from . import defaults
from .errors import DataError, OptionError
from .frames import evaluation_frame, model_input_frame
from .loading.previews import image_thumbnails
from .mllib import drop_training_summaries
from .partitioning import canonical_layout
from .results import (FEATURES_COL, LABEL_PROBABILITIES_COL, LABELS_COL, PATH_COL,
                      PREDICTED_LABELS_COL, FeatureSet, MultiLabelEvaluation,
                      MultiLabelModel)

#: The classifiers a multi-label fit trains per label (binary, with probabilities).
CLASSIFIERS = ("logistic_regression",)
#: The logistic-regression params a multi-label fit passes on.
PARAMS = ("maxIter", "regParam", "elasticNetParam", "tol", "fitIntercept", "standardization",
          "aggregationDepth")


def _prob_col(i: int) -> str:
    return f"_p{i}"


def is_multi_label(features: Any) -> bool:
    """Whether a FeatureSet (or DataFrame) carries label sets (``multi_label: keep``)."""
    frame = features.train if isinstance(features, FeatureSet) else features
    return frame is not None and LABELS_COL in frame.columns


def _truth(classes: List[str]) -> Any:
    """The multi-hot truth in *classes* order, from the ``labels`` column."""
    from pyspark.sql import functions as F
    return F.array(*[F.when(F.array_contains(LABELS_COL, c), 1.0).otherwise(0.0)
                     for c in classes])


# --------------------------------------------------------------------------- fit

def fit(features: FeatureSet, classifier: str = defaults.CLASSIFIER, *,
        folds: Optional[int] = None, validation: Optional[float] = None,
        seed: Optional[int] = defaults.SEED, threshold: float = defaults.MULTI_LABEL_THRESHOLD,
        **params: Any) -> MultiLabelModel:
    """One binary logistic regression per label of ``features.classes``, in one pipeline.

    ``params`` are logistic-regression params (``maxIter``, ``regParam``, ...), the same
    for every label. Grids and tuning (``folds``, ``validation``, list values) are not
    supported for label sets yet: an :class:`OptionError` says so.
    """
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import functions as F
    if classifier not in CLASSIFIERS:
        raise OptionError(f"option 'classifier': a multi-label fit trains one binary "
                          f"classifier per label; valid: {', '.join(CLASSIFIERS)} "
                          f"(got {classifier!r})")
    if folds is not None or validation is not None or any(
            isinstance(v, (list, tuple)) for v in params.values()):
        raise OptionError("options 'folds', 'validation' and grids (list values) are not "
                          "supported for a multi-label fit yet: give single values")
    unknown = sorted(k for k in params if k not in PARAMS)
    if unknown:
        raise OptionError(f"unknown option {unknown[0]!r} for a multi-label "
                          f"logistic_regression (valid: {', '.join(PARAMS)})")
    threshold = check_threshold(threshold)
    classes = list(features.classes)
    if not classes:
        raise DataError("the features have no labels to learn (classes is empty)")
    train = features.train
    if features.feature_col != FEATURES_COL:
        train = train.withColumnRenamed(features.feature_col, FEATURES_COL)
    ys = [F.element_at(_truth(classes), i + 1).alias(f"_y{i}") for i in range(len(classes))]
    train = canonical_layout(train.select(FEATURES_COL, *ys),
                             [FEATURES_COL] + [f"_y{i}" for i in range(len(classes))])
    sums = train.agg(F.count("*").alias("n"),
                     *[F.sum(f"_y{i}").alias(f"s{i}") for i in range(len(classes))]).first()
    n = int(sums["n"])
    if n == 0:
        raise DataError("the training split is empty: nothing to fit")
    positives = [int(sums[f"s{i}"] or 0) for i in range(len(classes))]
    notes = [f"label {c!r} is {'never' if p == 0 else 'always'} present in the training "
             "split: its classifier can only predict that"
             for c, p in zip(classes, positives) if p in (0, n)]
    first = train.select(FEATURES_COL).first()[0]
    models = []
    for i in range(len(classes)):
        lr = LogisticRegression(featuresCol=FEATURES_COL, labelCol=f"_y{i}",
                                probabilityCol=_prob_col(i), rawPredictionCol=f"_r{i}",
                                predictionCol=f"_c{i}", family="binomial", **params)
        model = lr.fit(train)
        drop_training_summaries(model)
        # only the probability is kept: the other outputs would repeat it per label
        model.setRawPredictionCol("").setPredictionCol("")
        models.append(model)
    stages = ([features.featurizer] if features.featurizer is not None else []) + models
    return MultiLabelModel(
        pipeline_model=PipelineModel(stages=stages), classes=classes, threshold=threshold,
        classifier=classifier, params=dict(params), notes=notes, features=features,
        num_features=int(first.size), positives=dict(zip(classes, positives)),
        model_name=features.model_name, train_count=n, untrained=features.untrained)


def check_threshold(threshold: Any) -> float:
    from .options import check_number
    return check_number("threshold", threshold, float, lambda v: 0.0 < v < 1.0,
                        "expected a probability in (0, 1)")


# --------------------------------------------------------------------------- predict

def transform(model: MultiLabelModel, df: Any, threshold: Optional[float] = None) -> Any:
    """*df* with ``label_probabilities`` (one per class, class order) and
    ``predicted_labels`` (those at or above the threshold); lazy. From the ``features``
    column when present, else from raw images through the featurizer stage."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F
    cut = model.threshold if threshold is None else check_threshold(threshold)
    k = len(model.classes)
    stages = list(model.pipeline_model.stages)
    if FEATURES_COL in df.columns:
        stages = stages[-k:]
    elif not model.has_featurizer:
        raise DataError("this model has no featurizer stage (it was fit on precomputed "
                        f"features), so it needs a DataFrame with a '{FEATURES_COL}' column")
    out = PipelineModel(stages=stages).transform(df)
    probs = F.array(*[vector_to_array(_prob_col(i))[1] for i in range(k)])
    out = out.withColumn(LABEL_PROBABILITIES_COL, probs).drop(*[_prob_col(i) for i in range(k)])
    names = F.array(*[F.lit(c) for c in model.classes])
    chosen = F.filter(F.arrays_zip(names.alias("n"), F.col(LABEL_PROBABILITIES_COL).alias("p")),
                      lambda x: x["p"] >= F.lit(cut))
    return out.withColumn(PREDICTED_LABELS_COL, F.transform(chosen, lambda x: x["n"]))


def predict(model: MultiLabelModel, images: Any, threshold: Optional[float] = None) -> Any:
    """Label probabilities and label sets for new images (an ImageSet, a FeatureSet's
    test split, or a DataFrame of images or of features)."""
    return transform(model, model_input_frame(images), threshold)


# --------------------------------------------------------------------------- evaluate

def evaluate(model: MultiLabelModel, data: Any = None, *, threshold: Optional[float] = None,
             top_errors: int = defaults.TOP_ERRORS, name: str = "") -> MultiLabelEvaluation:
    """Multi-label metrics of *model* on *data* (default: the test split it was
    trained with); see the module docstring for what is computed and how."""
    import pandas as pd
    from pyspark.sql import functions as F
    cut = model.threshold if threshold is None else check_threshold(threshold)
    df = _data_frame(model, data)
    classes = list(model.classes)
    k = len(classes)
    pred = transform(model, df, cut).withColumn("_y", _truth(classes))
    pairs = pred.select(F.posexplode(F.arrays_zip(F.col("_y").alias("y"),
                                                  F.col(LABEL_PROBABILITIES_COL).alias("p")))
                        .alias("i", "z")).select("i", F.col("z.y").alias("y"),
                                                  F.col("z.p").alias("p"))
    hit = (F.col("p") >= F.lit(cut)).cast("double")
    counts = {int(r["i"]): r for r in pairs.groupBy("i").agg(
        F.sum(F.col("y") * hit).alias("tp"), F.sum((1 - F.col("y")) * hit).alias("fp"),
        F.sum(F.col("y") * (1 - hit)).alias("fn"), F.count("*").alias("n")).collect()}
    if not counts:
        raise DataError("the evaluation data is empty (the test split has no images?): "
                        "nothing to evaluate")
    scores = pairs.groupBy("i", "p").agg(F.sum("y").alias("pos"),
                                         F.sum(1 - F.col("y")).alias("neg")).collect()
    curves = _curves(scores, k)
    tp = np.array([counts[i]["tp"] for i in range(k)], dtype=float)
    fp = np.array([counts[i]["fp"] for i in range(k)], dtype=float)
    fn = np.array([counts[i]["fn"] for i in range(k)], dtype=float)
    n = int(counts[0]["n"])
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    auc = np.array([curves[i][2] for i in range(k)], dtype=float)
    ap = np.array([curves[i][3] for i in range(k)], dtype=float)
    wrong = F.aggregate(F.zip_with("_y", LABEL_PROBABILITIES_COL,
                                   lambda y, p: F.when((p >= F.lit(cut)).cast("double") != y, 1)
                                   .otherwise(0)), F.lit(0), lambda a, x: a + x)
    scored = pred.withColumn("_wrong", wrong)
    row = scored.agg(F.sum("_wrong").alias("wrong"),
                     F.sum(F.when(F.col("_wrong") == 0, 1).otherwise(0)).alias("exact")).first()
    micro_denominator = 2 * tp.sum() + fp.sum() + fn.sum()
    metrics: Dict[str, Any] = {
        "subset_accuracy": float(row["exact"]) / n,
        "hamming_loss": float(row["wrong"]) / (n * k),
        "f1_micro": float(2 * tp.sum() / micro_denominator) if micro_denominator else 0.0,
        "f1_macro": float(f1.mean()),
        "roc_auc_macro": _nanmean(auc),
        "average_precision_macro": _nanmean(ap),
        "threshold": cut,
        "count": n,
    }
    notes = []
    undefined = [c for c, a in zip(classes, auc) if a != a]
    if undefined:
        notes.append(f"label(s) {', '.join(undefined)} are present in all or none of these "
                     "images: their ROC AUC and average precision are undefined (NaN) and "
                     "left out of the macro means")
    per_label = pd.DataFrame({
        "label": classes, "support": (tp + fn).astype(int),
        "predicted": (tp + fp).astype(int), "precision": precision, "recall": recall,
        "f1": f1, "roc_auc": auc, "average_precision": ap})
    errors = _most_wrong(scored, model, df, top_errors) if top_errors else None
    return MultiLabelEvaluation(
        metrics=metrics, per_label=per_label, predictions=pred.drop("_y"), classes=classes,
        roc={c: curves[i][0] for i, c in enumerate(classes) if curves[i][0] is not None},
        pr={c: curves[i][1] for i, c in enumerate(classes) if curves[i][1] is not None},
        errors=errors, notes=notes + list(model.notes), name=name, untrained=model.untrained)


def _nanmean(values: np.ndarray) -> float:
    ok = values[~np.isnan(values)]
    return float(ok.mean()) if len(ok) else float("nan")


def _data_frame(model: MultiLabelModel, data: Any) -> Any:
    df = evaluation_frame(data, model.features)
    if LABELS_COL not in df.columns:
        raise DataError(f"the data has no '{LABELS_COL}' column (label sets): load the images "
                        "with multi_label: keep to evaluate a multi-label model")
    return df


def _curves(rows: List[Any], k: int) -> List[tuple]:
    """Per label: (ROC frame, PR frame, ROC AUC, average precision), scikit-learn's
    definitions, from the positives and negatives at each distinct score."""
    import pandas as pd
    by_label: Dict[int, List[Any]] = {i: [] for i in range(k)}
    for r in rows:
        by_label[int(r["i"])].append((float(r["p"]), float(r["pos"]), float(r["neg"])))
    out = []
    for i in range(k):
        items = sorted(by_label[i], key=lambda t: -t[0])
        pos = np.array([t[1] for t in items])
        neg = np.array([t[2] for t in items])
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            out.append((None, None, float("nan"), float("nan")))
            continue
        tps, fps = np.cumsum(pos), np.cumsum(neg)
        tpr = np.concatenate([[0.0], tps / n_pos])
        fpr = np.concatenate([[0.0], fps / n_neg])
        trapezoid = getattr(np, "trapezoid", None) or np.trapz
        auc = float(trapezoid(tpr, fpr))
        precision = tps / (tps + fps)
        recall = tps / n_pos
        ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
        thresholds = np.array([t[0] for t in items])
        out.append((pd.DataFrame({"threshold": np.concatenate([[np.inf], thresholds]),
                                  "fpr": fpr, "tpr": tpr}),
                    pd.DataFrame({"threshold": thresholds, "recall": recall,
                                  "precision": precision}), auc, ap))
    return out


def _most_wrong(scored: Any, model: MultiLabelModel, source: Any, limit: int) -> Any:
    """The images with the most wrong labels (ties: the path), with thumbnails."""
    import pandas as pd
    from pyspark.sql import functions as F
    cols = [F.col(LABELS_COL), F.col(PREDICTED_LABELS_COL), F.col("_wrong")]
    order = [F.col("_wrong").desc()]
    if PATH_COL in scored.columns:
        cols.insert(0, F.col(PATH_COL))
        order.append(F.col(PATH_COL))
    rows = scored.filter(F.col("_wrong") > 0).select(*cols).orderBy(*order).limit(limit).collect()
    table = pd.DataFrame({
        "path": [r[PATH_COL] if PATH_COL in r.asDict() else None for r in rows],
        "true": [" | ".join(r[LABELS_COL]) or "(none)" for r in rows],
        "predicted": [" | ".join(r[PREDICTED_LABELS_COL]) or "(none)" for r in rows],
        "wrong_labels": [int(r["_wrong"]) for r in rows],
    })
    features = model.features
    images = features.images if features is not None else None
    table["thumbnail"] = image_thumbnails(list(table["path"]), source, images)
    return table


__all__ = ["fit", "transform", "predict", "evaluate", "is_multi_label", "CLASSIFIERS"]
