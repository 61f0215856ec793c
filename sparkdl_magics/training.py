"""Training an MLlib classifier on a FeatureSet (what %%fit calls).

``fit(features, "logistic_regression", regParam=[0.01, 0.1], folds=3)`` builds the
estimator from :mod:`sparkdl_magics.classifiers`, turns list-valued params into a
``ParamGridBuilder`` grid, tunes it with ``CrossValidator`` (``folds``) or
``TrainValidationSplit`` (``validation``) on the chosen metric, and returns a
:class:`FittedModel` whose ``pipeline_model`` is a plain ``pyspark.ml.PipelineModel``:
``[featurizer] → classifier → IndexToString`` so it predicts class names from raw
images and loads back with ``PipelineModel.load`` alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from . import classifiers as registry
from . import defaults
from .errors import DataError, OptionError, unknown_choice
from .frames import model_input_frame
from .mllib import drop_training_summaries
from .results import (CLASS_INDEX_COL, FEATURES_COL, LABEL_COL, LABELS_COL, PREDICTION_NAME_COL,
                      FeatureSet, FittedModel, ImageSet)

#: metric option -> (evaluator kind, Spark metricName, larger is better)
METRICS: Dict[str, Tuple[str, str, bool]] = {
    "f1": ("multiclass", "f1", True),
    "accuracy": ("multiclass", "accuracy", True),
    "precision": ("multiclass", "weightedPrecision", True),
    "recall": ("multiclass", "weightedRecall", True),
    "log_loss": ("multiclass", "logLoss", False),
    "auc": ("binary", "areaUnderROC", True),
    "pr_auc": ("binary", "areaUnderPR", True),
}


def transform(model: FittedModel, df: Any) -> Any:
    """Predictions for *df*: from its ``features`` column when present, else from raw
    images through the model's featurizer stage (lazy)."""
    from pyspark.ml import PipelineModel
    if FEATURES_COL in df.columns:
        return PipelineModel(stages=list(model.pipeline_model.stages[-2:])).transform(df)
    if not model.has_featurizer:
        raise DataError(
            "this model has no featurizer stage (it was fit on precomputed features), so "
            f"it needs a DataFrame with a '{FEATURES_COL}' column")
    return model.pipeline_model.transform(df)


def predict_classes(model: FittedModel, images: Any) -> Any:
    """Class names for new images: an ImageSet, a FeatureSet (its test split, else
    train) or a DataFrame of raw images or of features (``prediction_name``)."""
    return transform(model, model_input_frame(images))


def fit(features: Any, classifier: str = defaults.CLASSIFIER, *, folds: Optional[int] = None,
        validation: Optional[float] = None, parallelism: int = 1,
        metric: str = defaults.METRIC, seed: Optional[int] = defaults.SEED, spark: Any = None,
        track: Optional[bool] = None, **params: Any) -> Any:
    """Train *classifier* on ``features.train``; see the module docstring.

    Features with label sets (images loaded with ``multi_label: keep``) train one
    binary logistic regression per label instead (:func:`sparkdl_magics.multilabel.fit`,
    a :class:`~sparkdl_magics.results.MultiLabelModel`; ``threshold=`` sets its cut).
    A list as a param value (``regParam=[0.01, 0.1]``) makes a grid; ``folds=k`` tunes
    it with k-fold cross-validation, ``validation=f`` with one train/validation split
    holding out the fraction f. A grid without either uses 3-fold cross-validation.
    ``track``: log the fit to MLflow (default: where a tracking URI is set; see
    :mod:`sparkdl_magics.tracking`).
    """
    if isinstance(features, FeatureSet) and features.train is not None \
            and LABELS_COL in features.train.columns:  # label sets: see multilabel
        from .multilabel import fit as fit_label_sets
        return fit_label_sets(features, classifier, folds=folds, validation=validation,
                              seed=seed, **params)
    plan = _plan(features, classifier, params, metric, folds, validation)
    estimator, inner = registry.build(plan.info, plan.num_classes, plan.num_features,
                                      plan.fixed, seed)
    param_maps, grid_keys = _param_maps(inner, plan.grid_values, plan.num_classes,
                                        plan.num_features)
    if param_maps and plan.folds is None and plan.validation is None:
        plan.folds = defaults.FOLDS
        plan.notes.append(f"a grid was given without 'folds' or 'validation': "
                          f"using {defaults.FOLDS}-fold cross-validation")
    train = _training_frame(plan.features, plan.train_count)
    if plan.folds is None and plan.validation is None:
        model, grid, tuning = estimator.fit(train), None, ""
    else:
        model, grid, tuning = _tune(plan, estimator, train, param_maps, grid_keys,
                                    parallelism, seed)
    fitted = _fitted_model(plan, model, _chosen_params(inner, plan.fixed, grid), grid, tuning)
    from .tracking import log_fit
    log_fit(fitted, track)
    return fitted


@dataclass
class _Plan:
    """What fit() checked and decided before training: the inputs, as data."""

    features: FeatureSet
    info: registry.ClassifierInfo
    metric: str
    folds: Optional[int]
    validation: Optional[float]
    fixed: Dict[str, Any]
    grid_values: Dict[str, List[Any]]
    notes: List[str]
    train_count: int
    num_features: int

    @property
    def num_classes(self) -> int:
        return len(self.features.classes)


def _plan(features: Any, classifier: str, params: Dict[str, Any], metric: str,
          folds: Any, validation: Any) -> _Plan:
    """Every check before training, options first, then the training data (Spark jobs)."""
    features = _check_featureset(features)
    info = registry.lookup(classifier)
    registry.check_params(info, params)
    metric = _check_metric(metric)
    folds, validation = _check_tuning(folds, validation)
    fixed, grid_values = _split_grid(info, params)
    present = _class_counts(features.train)
    notes = _check_classes(features.classes, present)
    num_features = _num_features(features.train, features.feature_col)
    registry.check_features(info, features.train, features.feature_col)
    _check_metric_fits(metric, info, len(features.classes))
    return _Plan(features=features, info=info, metric=metric, folds=folds,
                 validation=validation, fixed=fixed, grid_values=grid_values, notes=notes,
                 train_count=int(sum(present.values())), num_features=num_features)


def _training_frame(features: FeatureSet, rows: Optional[int] = None) -> Any:
    """The training split as (label, features) under the column names MLlib expects, in
    a layout its values decide (:func:`~sparkdl_magics.partitioning.canonical_layout`):
    the same images and seed give the same model wherever the images are."""
    from .partitioning import canonical_layout
    train = features.train
    if train.columns and features.feature_col != FEATURES_COL:
        train = train.withColumnRenamed(features.feature_col, FEATURES_COL)
    return canonical_layout(train, [LABEL_COL, FEATURES_COL], rows)


def _tune(plan: _Plan, estimator: Any, train: Any, param_maps: List[Dict[Any, Any]],
          grid_keys: List[str], parallelism: int, seed: Optional[int]) -> Tuple[Any, Any, str]:
    """Cross-validation or one train/validation split: (best model, grid table, tuning)."""
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder, TrainValidationSplit
    maps = param_maps or ParamGridBuilder().build()
    common = dict(estimator=estimator, estimatorParamMaps=maps,
                  evaluator=_evaluator(plan.metric), parallelism=parallelism, seed=seed)
    if plan.folds is not None:
        tuned = CrossValidator(numFolds=plan.folds, **common).fit(train)
        scores = list(tuned.avgMetrics)
        tuning = f"{plan.folds}-fold cross-validation"
    else:
        tuned = TrainValidationSplit(trainRatio=1.0 - plan.validation, **common).fit(train)
        scores = list(tuned.validationMetrics)
        tuning = f"train/validation split holding out {plan.validation:g}"
    grid = _grid_table(maps, grid_keys, scores, plan.metric, plan.folds, tuned)
    return tuned.bestModel, grid, f"{tuning}, optimising {plan.metric}"


def _fitted_model(plan: _Plan, model: Any, chosen: Dict[str, Any], grid: Any,
                  tuning: str) -> FittedModel:
    """``[featurizer] → classifier → IndexToString`` as a PipelineModel, with its facts."""
    from pyspark.ml import PipelineModel
    features = plan.features
    history = _objective_history(model)
    drop_training_summaries(model)
    stages = ([features.featurizer] if features.featurizer is not None else []) + [
        model, _index_to_string(features.classes)]
    return FittedModel(
        pipeline_model=PipelineModel(stages=stages), classes=list(features.classes),
        classifier=plan.info.name, metric=plan.metric, params=chosen, grid=grid,
        tuning=tuning, notes=plan.notes, objective_history=history, features=features,
        num_features=plan.num_features,
        has_probabilities=plan.info.has_probabilities(plan.num_classes),
        model_name=features.model_name, train_count=plan.train_count,
        untrained=features.untrained)


# --------------------------------------------------------------------------- checks

def _check_featureset(features: Any) -> FeatureSet:
    if isinstance(features, FeatureSet):
        if features.train is None:
            raise DataError("the FeatureSet has no training split")
        return features
    kind = type(features).__name__
    if isinstance(features, ImageSet):
        raise DataError("these are images without features: run %%featurize first "
                        "(or sparkdl_magics.featurize) and fit on its result")
    raise DataError(f"expected features from %%featurize (a FeatureSet), got a {kind}")


def _check_metric(metric: str) -> str:
    key = str(metric).strip().lower()
    if key not in METRICS:
        raise unknown_choice("metric", metric, list(METRICS))
    return key


def _check_tuning(folds: Any, validation: Any) -> Tuple[Optional[int], Optional[float]]:
    if folds is not None and validation is not None:
        raise OptionError("give either 'folds' (cross-validation) or 'validation' "
                          "(one held-out fraction), not both")
    if folds is not None and (isinstance(folds, bool) or int(folds) < 2):
        raise OptionError(f"option 'folds': must be at least 2 (got {folds!r})")
    if validation is not None and not 0.0 < float(validation) < 1.0:
        raise OptionError(f"option 'validation': must be between 0 and 1 (got {validation!r})")
    return (None if folds is None else int(folds),
            None if validation is None else float(validation))


def _check_classes(classes: List[str], present: Dict[float, int]) -> List[str]:
    """At least two classes with training rows; a note for each class without any."""
    if not present:
        raise DataError("the training split is empty: nothing to fit "
                        "(check the split fraction and that images were loaded)")
    if len(classes) < 2 or len(present) < 2:
        only = classes[int(next(iter(present)))] if present else "?"
        raise DataError(
            f"only one class ({only!r}) in the training split: a classifier needs at "
            "least two classes")
    missing = [c for i, c in enumerate(classes) if float(i) not in present]
    if not missing:
        return []
    return [f"no training images for class(es) {', '.join(missing)}: "
            "the model can never predict them"]


def _check_metric_fits(metric: str, info: registry.ClassifierInfo, num_classes: int) -> None:
    kind, _, _ = METRICS[metric]
    if kind == "binary" and num_classes != 2:
        raise OptionError(f"option 'metric': {metric!r} is for two classes; this data has "
                          f"{num_classes} (use f1, accuracy, precision, recall or log_loss)")
    if metric == "log_loss" and not info.has_probabilities(num_classes):
        raise OptionError(f"option 'metric': classifier '{info.name}' gives no probabilities"
                          + (" for more than two classes" if info.binary_only else "")
                          + ", so log_loss cannot be computed")


def _split_grid(info: registry.ClassifierInfo,
                params: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, List[Any]]]:
    """Scalar params are fixed; list values are grids (MLP 'hidden': see classifiers)."""
    fixed: Dict[str, Any] = {}
    grid: Dict[str, List[Any]] = {}
    for key, value in params.items():
        if value is None:
            continue
        if key == "hidden" and isinstance(value, (list, tuple)) and value and \
                all(isinstance(v, (list, tuple)) for v in value):
            # [[128, 64], [32]]: a grid over architectures (one item: fixed)
            if len(value) == 1:
                fixed[key] = list(value[0])
            else:
                grid[key] = [list(v) for v in value]
        elif isinstance(value, (list, tuple)):
            if not value:
                raise OptionError(f"option '{key}': the list of values is empty")
            if len(value) == 1:
                fixed[key] = value[0]
            else:
                grid[key] = list(value)
        else:
            fixed[key] = value
    return fixed, grid


def _class_counts(train: Any) -> Dict[float, int]:
    rows = train.groupBy(LABEL_COL).count().collect()
    return {float(r[LABEL_COL]): int(r["count"]) for r in rows if r[LABEL_COL] is not None}


def _num_features(train: Any, col: str) -> int:
    row = train.select(col).first()
    if row is None or row[0] is None:
        raise DataError("the training split has no feature vectors: run %%featurize first")
    return int(row[0].size)


def _param_maps(inner: Any, grid: Dict[str, List[Any]], num_classes: int,
                num_features: int) -> Tuple[List[Dict[Any, Any]], List[str]]:
    if not grid:
        return [], []
    from pyspark.ml.tuning import ParamGridBuilder
    builder = ParamGridBuilder()
    for key, values in grid.items():
        if key == "hidden":
            layers = [[num_features, *registry.hidden_layers(v), num_classes] for v in values]
            builder.addGrid(inner.getParam("layers"), layers)
        else:
            param = inner.getParam(key)
            builder.addGrid(param, [registry.convert_param(param, v) for v in values])
    return builder.build(), list(grid)


def _evaluator(metric: str) -> Any:
    kind, name, _ = METRICS[metric]
    if kind == "binary":
        from pyspark.ml.evaluation import BinaryClassificationEvaluator
        return BinaryClassificationEvaluator(metricName=name, labelCol=LABEL_COL)
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    return MulticlassClassificationEvaluator(metricName=name, labelCol=LABEL_COL)


def _param_value(key: str, value: Any) -> Any:
    if key == "layers":
        return list(value)[1:-1]  # shown as the hidden sizes
    return value


def _grid_table(maps: List[Dict[Any, Any]], keys: List[str], scores: List[float],
                metric: str, folds: Optional[int], tuned: Any) -> Any:
    import pandas as pd
    rows = []
    for param_map in maps:
        by_name = {p.name: v for p, v in param_map.items()}
        row = {}
        for key in keys:
            name = "layers" if key == "hidden" else key
            row[key] = _param_value(name, by_name.get(name))
        rows.append(row)
    table = pd.DataFrame(rows, columns=keys) if keys else pd.DataFrame(index=range(len(maps)))
    table[metric] = scores
    if folds is not None:
        std = getattr(tuned, "stdMetrics", None)
        if std:
            table[f"{metric}_std"] = list(std)
    larger = METRICS[metric][2]
    best = max(range(len(scores)), key=lambda i: scores[i] if larger else -scores[i])
    table["chosen"] = [i == best for i in range(len(scores))]
    return table


def _chosen_params(inner: Any, fixed: Dict[str, Any], grid: Any) -> Dict[str, Any]:
    chosen = dict(fixed)
    if grid is not None and len(grid.columns):
        row = grid[grid["chosen"]].iloc[0]
        for key in grid.columns:
            if key in ("chosen",) or key.endswith("_std") or key in METRICS:
                continue
            value = row[key]
            chosen[key] = value.item() if hasattr(value, "item") else value
    return chosen


def _index_to_string(classes: List[str]) -> Any:
    from pyspark.ml.feature import IndexToString
    return IndexToString(inputCol=CLASS_INDEX_COL, outputCol=PREDICTION_NAME_COL,
                         labels=list(classes))


def _objective_history(model: Any) -> Optional[List[float]]:
    try:
        if getattr(model, "hasSummary", False):
            history = model.summary.objectiveHistory
            return [float(v) for v in history] if history else None
    # Broad on purpose: the history is an optional extra of a model already trained,
    # read through Py4J, Spark Connect or plain Python (RuntimeError: no summary), each
    # failing its own way; none of them should fail the fit.
    except Exception:
        return None
    return None


__all__ = ["fit", "transform", "predict_classes", "METRICS"]
