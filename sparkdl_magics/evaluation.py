"""How good a fitted model is (what %%evaluate calls).

Everything is computed by Spark and only small aggregates reach the driver: one
``groupBy(label, prediction).count()`` gives the confusion matrix, from which accuracy,
weighted and per-class precision / recall / F1 follow exactly (the same definitions as
Spark's ``MulticlassClassificationEvaluator`` and scikit-learn); one aggregate gives the
log loss; for two classes, score counts per distinct score give ROC and PR curves; the
most confidently misclassified rows are a ``limit``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import defaults
from .errors import DataError, OptionError
from .frames import evaluation_frame
from .loading.previews import image_thumbnails
from .partitioning import canonical_layout
from .results import (CLASS_INDEX_COL, LABEL_COL, LABEL_NAME_COL, PATH_COL, PROBABILITIES_COL,
                      Comparison, Evaluation, FineTunedModel, FittedModel, MultiLabelModel)
from .training import transform

#: Log loss clips probabilities to [EPS, 1 - EPS] (Spark uses 1e-15).
EPS = 1e-15
#: Above this many distinct scores, ROC/PR curves use this many score bins.
MAX_CURVE_POINTS = 2000


def evaluate(model: Union[FittedModel, Sequence[FittedModel], Dict[str, FittedModel]],
             data: Any = None, *, top_errors: int = defaults.TOP_ERRORS, spark: Any = None,
             name: str = "", threshold: Optional[float] = None,
             track: Optional[bool] = None) -> Any:
    """Evaluate *model* on *data* (default: the test split it was trained with).

    *data* may be a FeatureSet (its test split), an ImageSet (its test split, else all
    of it; needs a model with a featurizer stage) or a labelled DataFrame. A list or
    dict of models gives a :class:`Comparison`. A :class:`MultiLabelModel` gives a
    :class:`MultiLabelEvaluation` (:func:`sparkdl_magics.multilabel.evaluate`;
    *threshold*: the probability at which a label is predicted, default the model's).
    """
    if isinstance(model, MultiLabelModel):
        from .multilabel import evaluate as evaluate_label_sets
        return evaluate_label_sets(model, data, threshold=threshold, top_errors=top_errors,
                                   name=name)
    if threshold is not None:
        raise OptionError("option 'threshold' is for multi-label models (one probability "
                          "per label); this model predicts one class")
    if isinstance(model, dict) or isinstance(model, (list, tuple)):
        models = model if isinstance(model, dict) else {
            f"model {i + 1}": m for i, m in enumerate(model)}
        if not models:
            raise OptionError("no models to evaluate")
        if any(isinstance(m, MultiLabelModel) for m in models.values()):
            raise OptionError("multi-label models are evaluated one at a time (no comparison "
                              "table yet)")
        evals = {n: evaluate(m, data, top_errors=top_errors, name=n)
                 for n, m in models.items()}
        return Comparison(evals, comparison_table(evals, models))
    if not isinstance(model, FittedModel):
        raise DataError(f"expected a fitted model (from %%fit), got a {type(model).__name__}")
    df, notes = _data_frame(model, data)
    predictions = transform(model, df)
    counts = _confusion_counts(predictions, len(model.classes))
    total = int(counts.sum())
    if total == 0:
        raise DataError("the evaluation data is empty (the test split has no images?): "
                        "nothing to evaluate")
    metrics, per_class = _from_confusion(counts, model.classes)
    missing = [c for c, s in zip(model.classes, per_class["support"]) if s == 0]
    if missing:
        notes.append(f"class(es) {', '.join(missing)} have no images in this data: their "
                     "recall and F1 are shown as 0 and weigh nothing in the weighted means")
    has_prob = PROBABILITIES_COL in predictions.columns
    if has_prob:
        metrics["log_loss"] = _log_loss(predictions)
    roc = pr = None
    if len(model.classes) == 2:
        roc, pr, auc, ap = _binary_curves(predictions, has_prob)
        if roc is not None:
            metrics["auc"] = auc
            metrics["pr_auc"] = ap
        else:
            notes.append("ROC/PR curves need both classes in the data")
    errors = _errors(predictions, model, df, has_prob, top_errors) if top_errors else None
    confusion = _confusion_frame(counts, model.classes)
    result = Evaluation(metrics=metrics, per_class=per_class, confusion=confusion,
                        predictions=predictions, classes=list(model.classes), roc=roc, pr=pr,
                        errors=errors, notes=notes, name=name, untrained=model.untrained)
    from .tracking import log_evaluation
    log_evaluation(model, result, own_data=data is None, track=track)
    return result


# --------------------------------------------------------------------------- data


def _data_frame(model: FittedModel, data: Any) -> tuple:
    trained_on = model.images if isinstance(model, FineTunedModel) else model.features
    df = evaluation_frame(data, trained_on)
    return _align_labels(df, model.classes), []


def _align_labels(df: Any, classes: List[str]) -> Any:
    """Labels as the model's class indices (by class name when the data has names)."""
    from pyspark.sql import functions as F
    if LABEL_NAME_COL in df.columns:
        names = [r[0] for r in df.select(LABEL_NAME_COL).distinct().collect()]
        unknown = sorted(str(n) for n in names if n not in classes)
        if unknown:
            raise DataError(f"the data has class(es) the model was not trained on: "
                            f"{', '.join(unknown)} (model classes: {', '.join(classes)})")
        mapping = F.create_map(*[x for i, c in enumerate(classes)
                                 for x in (F.lit(c), F.lit(float(i)))])
        return df.withColumn(LABEL_COL, mapping[F.col(LABEL_NAME_COL)])
    if LABEL_COL not in df.columns:
        raise DataError(f"the data has no '{LABEL_COL}' or '{LABEL_NAME_COL}' column: "
                        "evaluation needs labelled images")
    return df.withColumn(LABEL_COL, F.col(LABEL_COL).cast("double"))


# --------------------------------------------------------------------------- metrics

def _confusion_counts(predictions: Any, k: int) -> np.ndarray:
    rows = predictions.groupBy(LABEL_COL, CLASS_INDEX_COL).count().collect()
    counts = np.zeros((k, k), dtype=np.int64)
    for r in rows:
        counts[int(r[LABEL_COL]), int(r[CLASS_INDEX_COL])] += int(r["count"])
    return counts


def _from_confusion(counts: np.ndarray, classes: List[str]) -> tuple:
    import pandas as pd
    total = counts.sum()
    tp = np.diag(counts).astype(float)
    support = counts.sum(axis=1).astype(float)
    predicted = counts.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    weights = support / total
    metrics = {
        "accuracy": float(tp.sum() / total),
        "f1": float((weights * f1).sum()),
        "precision": float((weights * precision).sum()),
        "recall": float((weights * recall).sum()),
        "count": int(total),
    }
    per_class = pd.DataFrame({"class": classes, "precision": precision, "recall": recall,
                              "f1": f1, "support": support.astype(int)})
    return metrics, per_class


def _confusion_frame(counts: np.ndarray, classes: List[str]) -> Any:
    import pandas as pd
    frame = pd.DataFrame(counts, index=pd.Index(classes, name="true"),
                         columns=pd.Index(classes, name="predicted"))
    return frame


def _prob_array() -> Any:
    from pyspark.ml.functions import vector_to_array
    return vector_to_array(PROBABILITIES_COL)


def _log_loss(predictions: Any) -> float:
    """Mean of -log p(true class), clipped, with rows renormalised (as scikit-learn)."""
    from pyspark.sql import functions as F
    probs = _prob_array()
    p_true = F.element_at(probs, (F.col(LABEL_COL) + 1).cast("int"))
    p_sum = F.aggregate(probs, F.lit(0.0), lambda acc, x: acc + x)
    p = F.least(F.greatest(p_true / p_sum, F.lit(EPS)), F.lit(1 - EPS))
    losses = canonical_layout(predictions.select((-F.log(p)).alias("ll")), ["ll"])
    return float(losses.select(F.avg("ll").alias("ll")).first()["ll"])


def _binary_curves(predictions: Any, has_prob: bool) -> tuple:
    """ROC and PR curves from per-score positive/negative counts (exact up to
    MAX_CURVE_POINTS distinct scores, binned above); AUC by trapezoids, PR AUC as
    average precision (scikit-learn's definitions)."""
    import pandas as pd
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F
    col = PROBABILITIES_COL if has_prob else "rawPrediction"
    if col not in predictions.columns:
        return None, None, None, None
    score = F.element_at(vector_to_array(col), 2).alias("score")
    scored = predictions.select(score, F.col(LABEL_COL).alias("y"))
    distinct = scored.select("score").distinct().limit(MAX_CURVE_POINTS + 1).count()
    if distinct > MAX_CURVE_POINTS:
        lo_hi = scored.agg(F.min("score"), F.max("score")).first()
        lo, hi = float(lo_hi[0]), float(lo_hi[1])
        width = (hi - lo) / MAX_CURVE_POINTS or 1.0
        scored = scored.withColumn(
            "score", F.lit(lo) + F.floor((F.col("score") - lo) / width) * width)
    rows = (scored.groupBy("score")
            .agg(F.sum(F.when(F.col("y") == 1.0, 1).otherwise(0)).alias("pos"),
                 F.sum(F.when(F.col("y") == 1.0, 0).otherwise(1)).alias("neg"))
            .collect())
    rows.sort(key=lambda r: -r["score"])
    pos = np.array([r["pos"] for r in rows], dtype=float)
    neg = np.array([r["neg"] for r in rows], dtype=float)
    thresholds = np.array([r["score"] for r in rows], dtype=float)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return None, None, None, None
    tps, fps = np.cumsum(pos), np.cumsum(neg)
    tpr = np.concatenate([[0.0], tps / n_pos])
    fpr = np.concatenate([[0.0], fps / n_neg])
    auc = float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))
    precision = tps / (tps + fps)
    recall = tps / n_pos
    ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
    roc = pd.DataFrame({"threshold": np.concatenate([[np.inf], thresholds]),
                        "fpr": fpr, "tpr": tpr})
    pr = pd.DataFrame({"threshold": thresholds, "recall": recall, "precision": precision})
    return roc, pr, auc, ap


def _errors(predictions: Any, model: FittedModel, source: Any, has_prob: bool,
            limit: int) -> Any:
    """The most confidently wrong predictions, with thumbnails when images are at hand."""
    import pandas as pd
    from pyspark.sql import functions as F
    wrong = predictions.filter(F.col(LABEL_COL) != F.col(CLASS_INDEX_COL))
    cols = [F.col(LABEL_COL), F.col(CLASS_INDEX_COL)]
    if PATH_COL in predictions.columns:
        cols.append(F.col(PATH_COL))
    if has_prob:
        conf = F.element_at(_prob_array(), (F.col(CLASS_INDEX_COL) + 1).cast("int"))
        wrong = wrong.select(*cols, conf.alias("probability")).orderBy(
            F.col("probability").desc())
    else:
        wrong = wrong.select(*cols, F.lit(None).cast("double").alias("probability"))
    rows = wrong.limit(limit).collect()
    classes = model.classes
    table = pd.DataFrame({
        "path": [r[PATH_COL] if PATH_COL in r.asDict() else None for r in rows],
        "true": [classes[int(r[LABEL_COL])] for r in rows],
        "predicted": [classes[int(r[CLASS_INDEX_COL])] for r in rows],
        "probability": [r["probability"] for r in rows],
    })
    table["thumbnail"] = image_thumbnails(list(table["path"]), source, _source_images(model))
    return table


def _source_images(model: FittedModel) -> Any:
    """The ImageSet the model's features came from (for thumbnails), when known."""
    features = model.features
    return features.images if features is not None else None


def comparison_table(evals: Dict[str, Evaluation], models: Dict[str, FittedModel]) -> Any:
    import pandas as pd
    rows = []
    for name, ev in evals.items():
        m = models[name]
        row = {"model": name, "classifier": m.classifier, "features": m.model_name or ""}
        row.update({k: ev.metrics.get(k) for k in
                    ("accuracy", "f1", "precision", "recall", "log_loss", "auc", "pr_auc",
                     "count")})
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.dropna(axis=1, how="all")


__all__ = ["evaluate", "Evaluation", "Comparison"]
