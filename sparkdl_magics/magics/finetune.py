"""%%finetune: train a new head (and the top of the backbone) on the cluster.

Parse → ``sparkdl_magics.finetuning.finetune`` → store → show. Epochs are shown as
they finish (see :class:`sparkdl_magics.display.finetune.EpochView`) inside the cell's
progress scope, so an interrupt cancels the barrier stage.
"""
from __future__ import annotations

from typing import Any, Callable

from .. import defaults
from ..errors import OptionError
from ..options import (TRACK, MagicCall, MagicSpec, Option, as_float, as_int, as_str,
                       kwargs_for)
from .common import PREPROCESS, UNSAFE, lookup_images
from .featurize import _checked_augment
from .runner import Context


def _checked(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A library check run when the cell is parsed; its value passed on as written."""
    def convert(value: Any) -> Any:
        try:
            check(value)
        except OptionError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1].rsplit(" (got", 1)[0]) from None
        return value
    return convert


def _unfreeze(value: Any) -> Any:
    from ..finetuning.network import check_unfreeze
    return check_unfreeze(value)


def _head(value: Any) -> Any:
    """Hidden sizes / a mapping, or the name of a %%fit result (looked up when run)."""
    if isinstance(value, str) and value.isidentifier():
        return value
    from ..finetuning.network import check_head
    return check_head(value)


def _head_epochs(value: Any) -> Any:
    from ..finetuning.options import check_head_epochs
    return check_head_epochs(value, True)


def _batchnorm(value: Any) -> Any:
    from ..finetuning.options import check_batchnorm
    return check_batchnorm(value)


def _learning_rate(value: Any) -> Any:
    from ..finetuning import check_learning_rate
    return check_learning_rate(value)


SPEC = MagicSpec(
    name="finetune",
    summary="Fine-tune a Keras CNN on the train split of an image set: a new head, and "
            "optionally the top backbone layers, trained data-parallel by Spark tasks in "
            "one barrier stage (TensorFlow MultiWorkerMirroredStrategy). The result "
            "evaluates, predicts and saves like a %%fit model.",
    positional=("images",),
    min_positional=1,
    output=True,
    options=(
        Option("model", defaults.FINETUNE_MODEL, "the backbone: a model from %dlmodels, or "
               "a .keras/.h5 model file", as_str, nullable=False),
        Option("weights", defaults.WEIGHTS, "imagenet, none (untrained), auto, or a local "
               "weights file", as_str),
        Option("layer", None, "user model files: the layer whose output the head reads "
               "(none: the penultimate/pooled output)", as_str),
        PREPROCESS,
        UNSAFE,
        Option("unfreeze", 0, "0: train the head only; N: also the top N backbone layers with "
               "weights (BatchNormalization stays frozen, in inference mode); all",
               _checked(_unfreeze)),
        Option("head", [], "hidden layer sizes of the new head, e.g. [256]; or "
               "{hidden: [256], dropout: 0.3}; or a %%fit logistic regression on this "
               "backbone's features (e.g. clf): the head starts as it", _checked(_head)),
        Option("head_epochs", "auto", "auto: when backbone layers train (and head is not a "
               "fitted model), first fit the head on the frozen backbone's features (a linear "
               "head: a logistic regression, its L2 strength chosen on validation; hidden "
               "layers: epochs until the validation loss stops improving); 0: no warm-up; "
               "N: at most N epochs of the head alone",
               _checked(_head_epochs)),
        Option("batchnorm", "frozen", "frozen: BatchNormalization keeps the backbone's "
               "statistics (inference mode), even with unfreeze: all; adapt: re-estimate "
               "them on the training images first (untrained weights, a far domain)",
               _checked(_batchnorm)),
        Option("epochs", defaults.FINETUNE_EPOCHS, "passes over the train split",
               as_int(minimum=1), nullable=False),
        Option("batch_size", defaults.FINETUNE_BATCH_SIZE, "images per step per worker",
               as_int(minimum=1), nullable=False),
        Option("learning_rate", defaults.FINETUNE_LEARNING_RATE, "the head's (Adam); "
               "[head, backbone] sets the unfrozen layers' too (else a tenth of the head's)",
               _checked(_learning_rate)),
        Option("augment", None, "seeded flips/rotations drawn anew each epoch: true, or "
               "e.g. 'flip, rotate=15'", _checked_augment),
        Option("workers", None, "Spark tasks training together (none: every task slot)",
               as_int(minimum=1)),
        Option("validation", None, "hold out this fraction of the train split for "
               "per-epoch validation and early stopping (the best epoch is kept, epoch 0 "
               "= before fine-tuning; with a warm-up or a fitted head: "
               f"{defaults.FINETUNE_VALIDATION})",
               as_float(minimum=0.0, maximum=1.0, exclusive_min=True)),
        Option("patience", None, "with validation: epochs without a better validation loss "
               f"before stopping (none: {defaults.FINETUNE_PATIENCE})", as_int(minimum=1)),
        Option("image_size", None, "registry models: train at this size (e.g. 96 or [96, 96]) "
               "instead of the model's own"),
        Option("seed", defaults.SEED, "random seed (head initialisation, order, augmentation, "
               "validation split)", as_int()),
        TRACK,
    ),
    usage="Example:\n  %%finetune flowers -> flowers_ft\n  model: MobileNetV3Small\n"
          "  unfreeze: 20\n  head: [128]\n  epochs: 5\n  augment: flip, rotate=10\n"
          "The output defaults to <images>_finetuned; %evaluate it, or compare: "
          "%evaluate flowers_ft flowers_model.",
)


def run(call: MagicCall, ctx: Context) -> Any:
    from ..display.finetune import EpochView
    from ..finetuning import finetune
    from ..progress import resolve_mode
    name = call.positional[0]
    images = lookup_images(ctx, name)
    kwargs = kwargs_for(call, ("model", "weights", "layer", "preprocess", "unsafe", "unfreeze",
                               "head", "head_epochs", "batchnorm", "epochs", "batch_size",
                               "learning_rate", "augment", "workers", "validation",
                               "patience", "image_size", "seed", "track"))
    if isinstance(kwargs.get("head"), str):  # the name of a %%fit result
        from ..results import FittedModel
        kwargs["head"] = ctx.lookup(kwargs["head"], FittedModel,
                                    "a %%fit logistic regression, or hidden layer sizes")
    view = EpochView(resolve_mode(), call.options["epochs"])
    with ctx.progress_scope("finetune"):
        model = finetune(images, on_epoch=view, **kwargs)
    ctx.store(call.output or f"{name}_finetuned", model)
    ctx.announce_run(model)
    return model
