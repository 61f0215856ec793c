"""%%predict: top-K ImageNet labels per image with a full pretrained model .

Parse → ``sparkdl_magics.prediction.predict`` → store → show. No training: the model's
own 1000-class head is applied, class names come from the package.
"""
from __future__ import annotations

from typing import Any

from .. import defaults
from ..options import MagicCall, MagicSpec, Option, as_int, as_list_of, as_str, kwargs_for
from ..results import FineTunedModel, MultiLabelModel
from .common import (BATCH_SIZE, ENGINE, PARTITIONS, PRECISION, PREPROCESS, THRESHOLD, UNSAFE,
                     lookup_images)
from .runner import Context

SPEC = MagicSpec(
    name="predict",
    summary="Top-K ImageNet labels with probabilities for every image, with a full "
            "pretrained Keras model (no training), distributed on Spark.",
    positional=("images",),
    min_positional=1,
    output=True,
    options=(
        Option("model", defaults.MODEL, "a model from %dlmodels (run with its ImageNet "
               "head), a .keras/.h5 classifier file, or the name of a %%finetune result or "
               "of a multi-label %%fit result (label sets)", as_str, nullable=False),
        Option("weights", defaults.WEIGHTS, "imagenet (Keras' cache), none (untrained), or a "
               "weights file of the full model", as_str),
        Option("top_k", defaults.TOP_K, "how many classes to return per image", as_int(minimum=1),
               nullable=False),
        BATCH_SIZE,
        PRECISION,
        ENGINE,
        PARTITIONS,
        Option("labels", None, "user model files: class names, in output order [default: "
               "ImageNet names for 1000 outputs, else the index]", as_list_of(as_str)),
        PREPROCESS,
        UNSAFE,
        THRESHOLD,
        Option("show", 20, "rows to show", as_int(minimum=0), nullable=False),
    ),
    usage="Example:\n  %%predict photos -> preds\n  model: ResNet50\n  top_k: 3\n"
          "The output defaults to <images>_predictions; preds.df has one row per image "
          "(prediction, probability, predictions = top-K [label, probability]).",
)


def run(call: MagicCall, ctx: Context) -> Any:
    from ..prediction import predict
    name = call.positional[0]
    images = lookup_images(ctx, name)
    kwargs = kwargs_for(call, ("model", "weights", "top_k", "batch_size", "labels",
                               "preprocess", "unsafe", "partitions", "precision", "threshold",
                               "engine"))
    named = ctx.shell.user_ns.get(str(kwargs.get("model")))
    if isinstance(named, (FineTunedModel, MultiLabelModel)):  # a %%finetune / %%fit result
        kwargs["model"] = named
    with ctx.progress_scope("predict"):
        result = predict(images, **kwargs)
        result.show = call.options["show"]
        if result.show and not result.is_streaming:
            result.preview()  # computed here, under the progress bar
    ctx.store(call.output or f"{name}_predictions", result)
    return result
