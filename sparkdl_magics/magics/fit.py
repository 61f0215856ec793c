"""%%fit: train an MLlib classifier on features from %%featurize.

Parse → ``sparkdl_magics.training.fit`` → store → show. Classifier params (maxIter,
regParam, numTrees, ...) pass through the body and are checked against the chosen
estimator's own Params; a list value makes a grid.
"""
from __future__ import annotations

from typing import Any

from .. import defaults
from ..classifiers import CLASSIFIERS
from ..options import (TRACK, MagicCall, MagicSpec, Option, as_choice, as_float, as_int,
                       kwargs_for)
from ..training import METRICS
from .runner import Context

SPEC = MagicSpec(
    name="fit",
    summary="Train a Spark MLlib classifier on the features of %%featurize, optionally "
            "tuning a grid of params with cross-validation.",
    positional=("features",),
    min_positional=1,
    output=True,
    options=(
        Option("classifier", defaults.CLASSIFIER, "the MLlib classifier", as_choice(*CLASSIFIERS),
               nullable=False),
        Option("folds", None, "k-fold cross-validation over the grid", as_int(minimum=2)),
        Option("validation", None, "tune on one held-out fraction of the training split "
               "(TrainValidationSplit) instead of folds",
               as_float(minimum=0.0, maximum=1.0, exclusive_min=True)),
        Option("metric", defaults.METRIC, "what tuning maximises (log_loss is minimised)",
               as_choice(*METRICS), nullable=False),
        Option("parallelism", 1, "grid points fitted at once", as_int(minimum=1),
               nullable=False),
        Option("seed", defaults.SEED, "random seed (folds, forests, MLP weights)", as_int()),
        TRACK,
    ),
    passthrough="Images loaded with multi_label: keep (label sets) train one binary "
                "logistic_regression per label (threshold: the probability at which a "
                "label is predicted, default 0.5; no grids yet).\n"
                "Any other key is a param of the chosen classifier (e.g. maxIter, regParam, "
                "elasticNetParam for logistic_regression; numTrees, maxDepth for "
                "random_forest; hidden: [64] for mlp). A list value makes a grid: "
                "regParam: [0.01, 0.1].\nClassifiers: "
                + "; ".join(f"{c.name} ({c.summary})" for c in CLASSIFIERS.values()),
    usage="Example:\n  %%fit flowers_features -> clf\n  classifier: logistic_regression\n"
          "  maxIter: 20\n  regParam: [0.01, 0.1]\n  folds: 3\n"
          "The output defaults to <features>_model (flowers_features -> flowers_model).",
)


def run(call: MagicCall, ctx: Context) -> Any:
    from ..training import fit
    features = ctx.lookup(call.positional[0], what="features from %%featurize")
    kwargs = kwargs_for(call, ("classifier", "folds", "validation", "metric", "parallelism",
                               "seed", "track"))
    with ctx.progress_scope("fit"):
        model = fit(features, **kwargs, **call.extra)
    ctx.store(call.output or default_output(call.positional[0]), model)
    ctx.announce_run(model)
    return model


def default_output(features_name: str) -> str:
    """``flowers_features`` -> ``flowers_model`` (a name -> was not given)."""
    base = features_name[: -len("_features")] if features_name.endswith("_features") else features_name
    return f"{base}_model"
