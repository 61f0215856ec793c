"""Register a model as a Spark SQL function: ``SELECT classify(content) FROM images``.

``register_sql_function("classify", model="ResNet50")`` resolves the model once on the
driver, ships its weights (Spark Connect too) and registers one batched pandas UDF with
``spark.udf.register``. The function takes an image column — compressed bytes
(``binaryFile``'s ``content``) or a Spark image-source struct (``image``) — and
returns, by ``output``:

- ``label`` (default): the top-1 class name (``string``);
- ``labels``: the top-K classes, ``array<struct<class_id, wnid, label, probability>>``;
- ``probabilities``: every class score (``array<float>``);
- ``features``: pooled CNN features (``array<float>``; the headless model, as
  ``%%featurize`` computes them).

An image that cannot be decoded gives NULL. ``precision`` (float32, bfloat16, float16,
auto) is the number type the model runs in on the workers; a fitted model runs at its
featurizer's precision unless one is given.

``model`` may also be a fitted model from ``%%fit`` (a logistic regression on features
from ``%%featurize``): the function then returns its class names (``label``), or class
probabilities in the order of ``fitted.classes`` (``probabilities``). A multi-label
model (``multi_label: keep``) returns each image's label set (``labels``, the default:
``array<string>``, the labels whose probability is at least ``threshold``, default the
model's) or one probability per label in the order of ``model.classes``
(``probabilities``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import defaults
from . import engines
from . import precision as precisions
from .errors import OptionError, unknown_choice
from .inference import check_batch_size, check_positive_int
from .prediction import OUTPUT_TYPES, image_udf, resolve_classifier
from .results import FineTunedModel, FittedModel, MultiLabelModel
from .session import get_spark, task_cores
from .weights import resolve_spec

SQL_OUTPUTS = ("label", "labels", "probabilities", "features")


@dataclass
class SqlFunction:
    """What was registered: the name, its output, and the UDF (usable from Python too)."""

    name: str
    output: str
    model_name: str
    weights: str
    return_type: str
    udf: Any
    precision: str = defaults.PRECISION
    engine: str = defaults.ENGINE

    def __call__(self, *cols: Any) -> Any:
        return self.udf(*cols)


def register_sql_function(name: str = "classify", model: Any = defaults.MODEL,
                          weights: Optional[str] = defaults.WEIGHTS, output: str = "label",
                          top_k: int = defaults.TOP_K, batch_size: int = defaults.BATCH_SIZE,
                          labels: Optional[Sequence[str]] = None,
                          layer: Optional[str] = None, preprocess: Optional[str] = None,
                          unsafe: bool = False, precision: Optional[str] = None,
                          threshold: Optional[float] = None, spark: Any = None,
                          engine: Optional[str] = None) -> SqlFunction:
    """Register *model* as the SQL function *name* in *spark* (the active session).

    *precision*: float32, bfloat16, float16 or auto; None: a fitted model's own
    (its featurizer's), else :data:`defaults.PRECISION`. *engine* likewise: keras,
    openvino or auto (:mod:`sparkdl_magics.engines`); None: a fitted model's own, else
    :data:`defaults.ENGINE`. *threshold*: a multi-label model's cut for its label sets
    (default: the model's)."""
    name = str(name).strip()
    if not name.isidentifier():
        raise OptionError(f"option 'name': {name!r} is not a valid SQL function name")
    if str(output).lower() not in SQL_OUTPUTS:
        raise unknown_choice("output", output, SQL_OUTPUTS)
    output = str(output).lower()
    top_k = check_positive_int("top_k", top_k)
    batch_size = check_batch_size(batch_size)
    precision = None if precision is None else precisions.check(precision)
    if engine is not None:
        engine = engines.check_request(engine, precision or defaults.PRECISION)
    spark = spark or get_spark()
    if isinstance(model, FineTunedModel):  # its Keras file is the whole classifier
        model, labels, preprocess = model.model_file, list(model.classes), model.preprocess
    if isinstance(model, FittedModel):
        return _register_fitted(name, model, output, top_k, batch_size, spark,
                                (precision, engine))
    if isinstance(model, MultiLabelModel):
        return _register_label_sets(name, model, output, batch_size, spark,
                                    (precision, engine), threshold)
    precision = precision or defaults.PRECISION
    if output == "features":
        resolved = resolve_spec(str(model), "none" if weights is None else str(weights),
                                layer, preprocess, unsafe=bool(unsafe), spark=spark)
    else:
        if layer:
            raise OptionError("option 'layer': only with output: features")
        resolved = resolve_classifier(model, weights, preprocess, unsafe, spark)
    resolved = _run_as(resolved, (precision, engine or defaults.ENGINE))
    # SQL users get the top-K array itself ("topk"), not the (array, error) pair
    udf = image_udf(resolved.spec, batch_size, "topk" if output == "labels" else output,
                    top_k, labels, task_cores(spark))
    registered = spark.udf.register(name, udf)
    rtype = OUTPUT_TYPES["topk" if output == "labels" else output]
    return _registered(name, output, resolved, rtype, registered)


def _run_as(resolved: Any, choice: Tuple[Optional[str], Optional[str]]) -> Any:
    """*resolved* at the (precision, engine) asked for; None keeps its own."""
    precision, engine = choice
    if precision is not None:
        resolved = precisions.with_precision(resolved, precision)
    return resolved if engine is None else engines.with_engine(resolved, engine)


def _registered(name: str, output: str, resolved: Any, return_type: str, udf: Any
                ) -> SqlFunction:
    return SqlFunction(name, output, resolved.model_name, resolved.weights, return_type, udf,
                       resolved.spec.precision, resolved.spec.engine)


@dataclass(frozen=True)
class LinearHead:
    """A fitted logistic regression as numpy, applied to features on the workers.

    ``weights`` is (classes x features) for multinomial models, (1 x features) for
    binomial ones (two classes, sigmoid), as MLlib's ``coefficientMatrix``.
    """

    weights: np.ndarray
    intercepts: np.ndarray

    def __call__(self, features: np.ndarray) -> np.ndarray:
        logits = self.weights @ np.asarray(features, dtype=np.float64) + self.intercepts
        if len(logits) == 1:  # binomial: P(class 1) = sigmoid
            p1 = 1.0 / (1.0 + np.exp(-logits[0]))
            return np.array([1.0 - p1, p1], dtype=np.float32)
        shifted = np.exp(logits - logits.max())
        return (shifted / shifted.sum()).astype(np.float32)


def linear_head(classifier: Any) -> LinearHead:
    """The :class:`LinearHead` of a fitted MLlib LogisticRegressionModel."""
    return LinearHead(np.asarray(classifier.coefficientMatrix.toArray(), dtype=np.float64),
                      np.asarray(classifier.interceptVector.toArray(), dtype=np.float64))


@dataclass(frozen=True)
class LabelHeads:
    """One fitted binary logistic regression per label, as numpy: P(label i) each, in
    float64 (the label set is cut at the threshold as MLlib's doubles are).

    ``weights`` is (labels x features), one row per label's ``coefficients``."""

    weights: np.ndarray
    intercepts: np.ndarray

    def __call__(self, features: np.ndarray) -> np.ndarray:
        logits = self.weights @ np.asarray(features, dtype=np.float64) + self.intercepts
        return 1.0 / (1.0 + np.exp(-logits))


def label_heads(model: MultiLabelModel) -> LabelHeads:
    """The :class:`LabelHeads` of a multi-label model's per-label classifiers."""
    per_label = model.pipeline_model.stages[-len(model.classes):]
    return LabelHeads(np.stack([np.asarray(m.coefficients.toArray(), dtype=np.float64)
                                for m in per_label]),
                      np.array([float(m.intercept) for m in per_label]))


FITTED_OUTPUTS = ("label", "probabilities")
#: What a multi-label model's SQL function returns (``label``, the default, means ``labels``).
LABEL_SET_OUTPUTS = ("labels", "probabilities")


def _register_fitted(name: str, fitted: FittedModel, output: str, top_k: int, batch_size: int,
                     spark: Any, choice: Tuple[Optional[str], Optional[str]]) -> SqlFunction:
    """A SQL function for a fitted pipeline: featurizer on the workers, then its LR head."""
    if output not in FITTED_OUTPUTS:
        raise unknown_choice("output for a fitted model", output, FITTED_OUTPUTS)
    if not fitted.has_featurizer:
        raise OptionError("option 'model': this fitted model has no featurizer stage (its "
                          "features did not come from %%featurize), so SQL cannot feed it images")
    if fitted.classifier != "logistic_regression":
        raise OptionError(
            f"option 'model': a SQL function needs a logistic_regression model (this one is "
            f"{fitted.classifier}); for other classifiers use fitted.transform(df) and query "
            "the result as a view")
    resolved = _run_as(fitted.pipeline_model.stages[0].resolve(spark), choice)
    udf = image_udf(resolved.spec, batch_size, output, top_k, list(fitted.classes),
                    task_cores(spark), head=linear_head(fitted.classifier_model))
    return _registered(name, output, resolved, OUTPUT_TYPES[output], spark.udf.register(name, udf))


def _register_label_sets(name: str, model: MultiLabelModel, output: str, batch_size: int,
                         spark: Any, choice: Tuple[Optional[str], Optional[str]],
                         threshold: Optional[float]) -> SqlFunction:
    """A SQL function for a multi-label model: featurizer on the workers, then one
    sigmoid per label; the label set, or the probabilities."""
    from .multilabel import check_threshold
    output = "labels" if output == "label" else output
    if output not in LABEL_SET_OUTPUTS:
        raise unknown_choice("output for a multi-label model", output, LABEL_SET_OUTPUTS)
    if not model.has_featurizer:
        raise OptionError("option 'model': this multi-label model has no featurizer stage "
                          "(its features did not come from %%featurize), so SQL cannot feed "
                          "it images")
    cut = model.threshold if threshold is None else check_threshold(threshold)
    resolved = _run_as(model.pipeline_model.stages[0].resolve(spark), choice)
    kind = "label_set" if output == "labels" else "probabilities"
    udf = image_udf(resolved.spec, batch_size, kind, 1, list(model.classes), task_cores(spark),
                    head=label_heads(model), threshold=cut)
    return _registered(name, output, resolved, OUTPUT_TYPES[kind], spark.udf.register(name, udf))


__all__ = ["register_sql_function", "SqlFunction", "SQL_OUTPUTS", "LinearHead", "LabelHeads",
           "LABEL_SET_OUTPUTS"]
