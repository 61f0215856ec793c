"""The MLlib classifiers %%fit offers, in one table.

Each row names a ``pyspark.ml.classification`` estimator and the facts training needs
about it: whether it only handles two classes (then it is wrapped in ``OneVsRest`` for
more), whether it gives class probabilities (log loss, confidence of mistakes), whether
it needs non-negative features (naive Bayes), and which params we fill in ourselves
(the MLP's input and output layer sizes). Spark is imported only when an estimator is
built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from . import defaults
from .errors import DataError, OptionError, did_you_mean, unknown_choice

DEFAULT = defaults.CLASSIFIER

#: Params the pipeline sets itself (column names, MLP layers): not user-settable.
RESERVED = ("featuresCol", "labelCol", "predictionCol", "probabilityCol",
            "rawPredictionCol", "weightCol", "layers", "classifier")


@dataclass(frozen=True)
class ClassifierInfo:
    name: str
    estimator: str  # class name in pyspark.ml.classification
    summary: str
    binary_only: bool = False  # multi-class problems wrap it in OneVsRest
    probabilities: bool = True  # has a probability column (binary or multi-class)
    non_negative: bool = False  # features must be >= 0
    extra_params: Dict[str, str] = None  # our own params (name -> help), e.g. MLP 'hidden'

    def estimator_class(self) -> type:
        from pyspark.ml import classification
        return getattr(classification, self.estimator)

    def has_probabilities(self, num_classes: int) -> bool:
        return self.probabilities and not (self.binary_only and num_classes > 2)

    def param_names(self) -> List[str]:
        """Names a user may set (the estimator's Params, minus the reserved ones)."""
        est = self.estimator_class()()
        names = [p.name for p in est.params if p.name not in RESERVED]
        return sorted(names + list(self.extra_params or {}))


CLASSIFIERS: Dict[str, ClassifierInfo] = {c.name: c for c in (
    ClassifierInfo("logistic_regression", "LogisticRegression",
                   "multinomial logistic regression (elastic net); objective history shown"),
    ClassifierInfo("random_forest", "RandomForestClassifier", "random forest of decision trees"),
    ClassifierInfo("gbt", "GBTClassifier",
                   "gradient-boosted trees (binary; one-vs-rest for more classes)",
                   binary_only=True),
    ClassifierInfo("linear_svc", "LinearSVC",
                   "linear support vector machine (binary; one-vs-rest for more classes)",
                   binary_only=True, probabilities=False),
    ClassifierInfo("mlp", "MultilayerPerceptronClassifier",
                   "multilayer perceptron; input and output sizes filled in",
                   extra_params={"hidden": "hidden layer sizes, e.g. 64 or [[128, 64]] "
                                           "(a plain list makes a grid) [default: 64]"}),
    ClassifierInfo("naive_bayes", "NaiveBayes",
                   "naive Bayes (multinomial by default; needs non-negative features)",
                   non_negative=True),
    ClassifierInfo("fm", "FMClassifier",
                   "factorization machine (binary; one-vs-rest for more classes)",
                   binary_only=True),
)}

#: Default hidden layer sizes of the MLP (between the feature and class layers).
MLP_HIDDEN = [64]


def lookup(name: str) -> ClassifierInfo:
    key = str(name).strip().lower().replace("-", "_")
    if key not in CLASSIFIERS:
        raise unknown_choice("classifier", name, list(CLASSIFIERS))
    return CLASSIFIERS[key]


def check_params(info: ClassifierInfo, params: Dict[str, Any]) -> None:
    """Every key must be a real Param of the estimator (did-you-mean otherwise)."""
    valid = info.param_names()
    for key in params:
        if key in RESERVED:
            raise OptionError(f"option '{key}' is set by %%fit itself and cannot be given")
        if key not in valid:
            raise OptionError(
                f"unknown option {key!r} for classifier '{info.name}'"
                f"{did_you_mean(key, valid)} (its params: {', '.join(valid)})")


def hidden_layers(value: Any) -> List[int]:
    """One MLP architecture: an int or a list of ints (hidden layer sizes)."""
    sizes = value if isinstance(value, (list, tuple)) else [value]
    try:
        out = [int(v) for v in sizes]
    except (TypeError, ValueError):
        raise OptionError(f"option 'hidden': expected layer sizes, got {value!r}") from None
    if any(v < 1 for v in out):
        raise OptionError(f"option 'hidden': layer sizes must be positive, got {value!r}")
    return out


def build(info: ClassifierInfo, num_classes: int, num_features: int,
          fixed: Dict[str, Any], seed: Optional[int]) -> Any:
    """The estimator (OneVsRest-wrapped when needed) with the fixed params set.

    Returns ``(estimator, inner)``: *inner* is the classifier that owns the user's
    params (the same object unless wrapped).
    """
    from pyspark.ml.classification import OneVsRest
    cls = info.estimator_class()
    inner = cls(featuresCol="features", labelCol="label")
    if seed is not None and inner.hasParam("seed"):
        inner._set(seed=int(seed))
    if info.name == "mlp":
        hidden = hidden_layers(fixed.get("hidden", MLP_HIDDEN))
        inner._set(layers=[num_features, *hidden, num_classes])
    for key, value in fixed.items():
        if key == "hidden":
            continue
        set_param(inner, key, value)
    if info.binary_only and num_classes > 2:
        return OneVsRest(classifier=inner, featuresCol="features", labelCol="label"), inner
    return inner, inner


def set_param(est: Any, key: str, value: Any) -> None:
    param = est.getParam(key)
    est._set(**{key: convert_param(param, value)})


def convert_param(param: Any, value: Any) -> Any:
    """A value through the Param's own type converter, as a one-line OptionError."""
    try:
        return param.typeConverter(value)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"option '{param.name}': {exc} (got {value!r})") from None


def check_features(info: ClassifierInfo, df: Any, features_col: str = "features") -> None:
    """Naive Bayes needs non-negative features: one small aggregate to check."""
    if not info.non_negative:
        return
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F
    row = df.select(F.min(F.array_min(vector_to_array(features_col))).alias("m")).first()
    low = row["m"] if row is not None else None
    if low is not None and low < 0:
        raise DataError(
            f"classifier 'naive_bayes' needs non-negative features, but the smallest value "
            f"is {low:.4g} (use a model whose features are >= 0, e.g. after ReLU/pooling, "
            "or another classifier)")
