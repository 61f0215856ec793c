"""The automatic warm-up of a linear head: a converged logistic regression on the frozen
backbone's features, fitted inside the training job (LP-FT without a ``%%fit`` first).

A head trained for a few epochs of Adam never catches up with a converged linear probe,
so the warm-up *is* one: features standardised, a multinomial logistic regression
(L-BFGS, run to convergence) for each strength of a small L2 grid, the strength chosen by
the validation images' log loss, then refitted on the training and validation images
together (as ``%%fit`` would see them). The coefficients come back in the original
feature space, as :mod:`.probe` gives them from MLlib, so the head is one softmax layer
that predicts what the regression does.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import numpy as np

#: Inverse L2 strengths (scikit-learn's ``C``) tried on standardised features.
C_GRID: Tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
#: The logit of a class the training images do not have (probability ~e-30 of the rest).
ABSENT_CLASS_BIAS = -30.0


def fit_linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                     y_val: np.ndarray, num_classes: int, seed: int,
                     grid: Sequence[float] = C_GRID) -> Dict[str, Any]:
    """``{"kernel": features x classes, "bias": classes, "C", "val_loss", "val_accuracy"}``
    (validation figures of the chosen strength, before the refit on all images)."""
    from sklearn.preprocessing import StandardScaler
    x_all = np.concatenate([x_train, x_val]).astype(np.float64)
    y_all = np.concatenate([y_train, y_val])
    scaler = StandardScaler().fit(x_all)
    scaler.scale_[scaler.scale_ == 0] = 1.0  # a constant feature: zero coefficient
    chosen: Dict[str, Any] = {"C": 1.0, "val_loss": None, "val_accuracy": None}
    if len(y_val) and len(np.unique(y_train)) > 1:
        z_train, z_val = scaler.transform(x_train), scaler.transform(x_val)
        for c in grid:
            clf = _regression(z_train, y_train, c, seed)
            probs = _probabilities(clf, z_val, num_classes)
            p = np.clip(probs[np.arange(len(y_val)), y_val], 1e-12, 1.0)
            loss = float(-np.log(p).mean())
            if chosen["val_loss"] is None or loss < chosen["val_loss"] - 1e-9:
                chosen = {"C": c, "val_loss": loss,
                          "val_accuracy": float((probs.argmax(axis=1) == y_val).mean())}
    clf = _regression(scaler.transform(x_all), y_all, chosen["C"], seed)
    kernel, bias = _original_space(clf, scaler, num_classes)
    return {"kernel": kernel, "bias": bias, **chosen}


def _regression(x: np.ndarray, y: np.ndarray, c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=c, max_iter=2000, tol=1e-6, random_state=seed).fit(x, y)


def _probabilities(clf: Any, x: np.ndarray, num_classes: int) -> np.ndarray:
    """Probabilities over all *num_classes* (absent classes get none)."""
    probs = np.zeros((len(x), num_classes))
    probs[:, clf.classes_] = clf.predict_proba(x)
    return probs


def _original_space(clf: Any, scaler: Any, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of ``softmax(x @ kernel + bias)`` on unstandardised features."""
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: the logit of classes_[1] against classes_[0]
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
    w = coef / scaler.scale_
    b = intercept - w @ scaler.mean_
    kernel = np.zeros((w.shape[1], num_classes))
    bias = np.full(num_classes, ABSENT_CLASS_BIAS)
    kernel[:, clf.classes_] = w.T
    bias[clf.classes_] = b
    return kernel, bias


__all__ = ["fit_linear_probe", "C_GRID"]
