"""``head: clf``: start the new head from a logistic regression fitted on the same
backbone's features (``%%featurize`` + ``%%fit``), so fine-tuning starts where the
linear probe ends (LP-FT: Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained
Features").

MLlib returns the regression's coefficients in the original feature space (its
``standardization`` is internal to training), so the head's softmax layer takes them
as they are: ``probabilities = softmax(features @ W.T + b)``, in the fine-tuning's class
order. A binomial regression (two classes) is the softmax of ``[0, w.x + b]``.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from ..errors import OptionError
from ..results import FineTunedModel, FittedModel


def is_probe(head: Any) -> bool:
    """Whether ``head`` names a fitted model (rather than hidden layer sizes)."""
    return isinstance(head, FittedModel) and not isinstance(head, FineTunedModel)


def probe_weights(clf: Any, classes: List[str], model: str, weights: Any, layer: Any,
                  preprocess: Any, resolved: Any, spark: Any) -> Dict[str, Any]:
    """``{"kernel": features x classes, "bias": classes}`` of *clf*, after checking that
    its features came from the backbone being fine-tuned and that it knows these classes."""
    from pyspark.ml.classification import LogisticRegressionModel
    stages = clf.pipeline_model.stages
    lr = stages[-2] if len(stages) >= 2 else None
    if not isinstance(lr, LogisticRegressionModel):
        raise OptionError("option 'head': a fitted model to start from must be a logistic "
                          f"regression from %%fit (got {clf.classifier})")
    _check_same_backbone(clf, resolved, spark)
    missing = [c for c in classes if c not in clf.classes]
    if missing:
        raise OptionError(f"option 'head': the fitted model does not know class(es) "
                          f"{', '.join(missing)} (it knows {', '.join(clf.classes)})")
    w = np.asarray(lr.coefficientMatrix.toArray(), np.float64)
    b = np.asarray(lr.interceptVector.toArray(), np.float64)
    if w.shape[0] == 1 and len(clf.classes) == 2:  # binomial: logit of class 1
        w, b = np.vstack([np.zeros_like(w), w]), np.concatenate([[0.0], b])
    order = [clf.classes.index(c) for c in classes]
    return {"kernel": w[order].T.tolist(), "bias": b[order].tolist(),
            "features": int(w.shape[1])}


def _check_same_backbone(clf: Any, resolved: Any, spark: Any) -> None:
    """The regression's featurizer stage must be the backbone being fine-tuned (model,
    weights, layer, preprocessing): else its coefficients mean nothing here."""
    from ..featurizer import DeepImageFeaturizer
    from ..weights import resolve_spec
    featurizer = clf.pipeline_model.stages[0]
    if not isinstance(featurizer, DeepImageFeaturizer):
        raise OptionError("option 'head': the fitted model has no featurizer stage (fit it "
                          "on %%featurize features of the same backbone)")
    theirs = resolve_spec(featurizer.getOrDefault("modelName"),
                          None if featurizer.getOrDefault("weights") == "none"
                          else featurizer.getOrDefault("weights"),
                          featurizer.getOrDefault("layer") or None,
                          featurizer.getOrDefault("preprocess") or None,
                          unsafe=bool(featurizer.getOrDefault("unsafe")), spark=spark).spec
    ours = resolved.spec
    if _identity(theirs) != _identity(ours):
        raise OptionError(f"option 'head': the fitted model's features came from "
                          f"{_describe(theirs)}, not from the backbone being fine-tuned "
                          f"({_describe(ours)})")


def _identity(spec: Any) -> tuple:
    def path(shipped: Any) -> str:
        return shipped.name if shipped is not None else ""  # content-keyed
    return (spec.model, path(spec.weights_file), path(spec.model_file), spec.layer or "",
            spec.preprocess)


def _describe(spec: Any) -> str:
    name = spec.model or (spec.model_file.driver_path if spec.model_file else "?")
    return name + (f" at layer {spec.layer}" if spec.layer else "")


__all__ = ["is_probe", "probe_weights"]
