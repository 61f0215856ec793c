"""%%explain: class heatmaps of a fitted or fine-tuned model's predictions (where it looked).

Parse → ``sparkdl_magics.explanation.explain`` → store → show.
"""
from __future__ import annotations

from typing import Any

from .. import defaults
from ..explanation import METHODS
from ..options import MagicCall, MagicSpec, Option, as_any, as_choice, as_float, as_int, as_str
from .common import BATCH_SIZE
from .runner import Context

SPEC = MagicSpec(
    name="explain",
    summary="Class heatmaps (CAM / Grad-CAM / occlusion) of a fitted or fine-tuned model's "
            "predictions: "
            "for a few images, mistakes first, the image, where the model found the "
            "evidence for a class, and its predicted and true labels.",
    positional=("model",),
    min_positional=1,
    output=True,
    options=(
        Option("images", None, "an image set, a split of one (flowers.test), or a list of "
               "image paths (none: the test split the model was trained on)", as_any),
        Option("n", defaults.EXPLAIN_IMAGES, "how many images (mistakes first when labels "
               "are known)", as_int(minimum=1), nullable=False),
        Option("class", "predicted", "whose evidence to draw: predicted, true or a class "
               "name", as_str, nullable=False),
        Option("method", "auto", "auto (linear classifiers: cam where exact, else gradcam; "
               "others: occlusion; a fine-tuned model: gradcam), cam, gradcam, occlusion",
               as_choice(*METHODS), nullable=False),
        Option("grid", None, "occlusion: patch positions per side, 2 to 16 (none: "
               f"{defaults.OCCLUSION_GRID}; each image costs grid x grid + 1 backbone "
               "passes)", as_int()),
        Option("alpha", defaults.EXPLAIN_ALPHA, "the heatmap's opacity over the image",
               as_float(minimum=0.0, maximum=1.0), nullable=False),
        BATCH_SIZE,
    ),
    usage="Example:\n  %%explain clf -> heat\n  images: flowers.test\n  n: 12\n"
          "  class: predicted\nheat.rows has one row per image; heat.heatmap(i) is image "
          "i's heatmap at its size (floats in [0, 1]).",
)


def run(call: MagicCall, ctx: Context) -> Any:
    from ..explanation import explain
    from ..results import FittedModel
    name = call.positional[0]
    model = ctx.lookup(name, FittedModel, "a fitted model from %%fit or %%finetune")
    images = _images(ctx, call.options["images"])
    with ctx.progress_scope("explain"):
        result = explain(model, images, n=call.options["n"], cls=call.options["class"],
                         method=call.options["method"], alpha=call.options["alpha"],
                         batch_size=call.options["batch_size"], grid=call.options["grid"])
    ctx.store(call.output or f"{name}_explained", result)
    return result


def _images(ctx: Context, value: Any) -> Any:
    """A variable (``flowers``), a split of one (``flowers.test``) or image paths."""
    if value is None or isinstance(value, (list, tuple)):
        return value
    text = str(value).strip()
    base, _, split = text.partition(".")
    if base.isidentifier() and (not split or split.isidentifier()):
        images = ctx.lookup(base, what="an image set, a DataFrame of images or image paths")
        if split:
            frame = getattr(images, split, None)
            if frame is None:
                from ..errors import OptionError
                raise OptionError(f"option 'images': {base!r} has no split {split!r}")
            return frame
        return images
    return [text]
