"""%%evaluate: metrics, confusion matrix and mistakes of fitted models .

Parse → ``sparkdl_magics.evaluation.evaluate`` → store → show. Several model names
compare them side by side in one table.
"""
from __future__ import annotations

from typing import Any

from .. import defaults
from ..options import TRACK, MagicCall, MagicSpec, Option, as_bool, as_int, as_str
from ..results import FittedModel, MultiLabelModel
from .common import THRESHOLD
from .runner import Context

MAX_MODELS = 6

SPEC = MagicSpec(
    name="evaluate",
    summary="Evaluate fitted models (from %%fit) on their test split or other labelled "
            "images: accuracy, weighted F1/precision/recall, per-class table, confusion "
            "matrix, ROC/PR for two classes, log loss, the most confident mistakes; for "
            "multi-label models per-label ROC AUC / average precision, micro and macro F1, "
            "subset accuracy, Hamming loss and the images with the most wrong labels. "
            "Several models are compared in one table.",
    positional=("model",) + tuple(f"model{i}" for i in range(2, MAX_MODELS + 1)),
    min_positional=1,
    output=True,
    options=(
        Option("data", None, "a FeatureSet or ImageSet variable to evaluate on "
               "(default: the test split the model was trained with)", as_str),
        Option("top_errors", defaults.TOP_ERRORS, "how many misclassified images to show", as_int(minimum=0),
               nullable=False),
        THRESHOLD,
        Option("explain", False, "add an 'explain' toggle to the mistakes gallery: the "
               "heatmap of each mistake's predicted class (see %%explain)", as_bool,
               nullable=False),
        TRACK,
    ),
    usage="Examples:\n  %%evaluate clf\n  %%evaluate clf_inception clf_resnet -> comparison\n"
          "  %%evaluate clf --data other_images",
)


def run(call: MagicCall, ctx: Context) -> Any:
    from ..evaluation import evaluate
    names = call.positional
    models = {n: ctx.lookup(n, (FittedModel, MultiLabelModel), "a fitted model from %%fit")
              for n in names}
    data_name = call.options["data"]
    data = ctx.lookup(data_name, what="a FeatureSet or ImageSet") if data_name else None
    top = call.options["top_errors"]
    with ctx.progress_scope("evaluate"):
        if len(models) == 1:
            result = evaluate(models[names[0]], data, top_errors=top, name=names[0],
                              threshold=call.options.get("threshold"),
                              track=call.options.get("track"))
        else:
            result = evaluate(models, data, top_errors=top)
        if call.options["explain"] and len(models) == 1 and isinstance(
                models[names[0]], FittedModel):
            from ..explanation import explain_mistakes
            explain_mistakes(result, models[names[0]])
    if call.output:
        ctx.store(call.output, result)
    ctx.announce_run(result)
    return result
