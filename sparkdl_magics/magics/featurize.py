"""%%featurize: pooled CNN features for every split of an image set.

Parse → ``sparkdl_magics.featurizer.featurize`` → store → show. The options are the
function's keyword arguments, one declaration each.
"""
from __future__ import annotations

from typing import Any

from .. import defaults
from ..errors import OptionError
from ..options import MagicCall, MagicSpec, Option, as_int, as_str, kwargs_for
from .common import (BATCH_SIZE, ENGINE, PARTITIONS, PRECISION, PREPROCESS, UNSAFE,
                     lookup_images)
from .runner import Context


def _checked_augment(value: Any) -> Any:
    """Check the augment option when the cell is parsed, not after loading a model."""
    from ..augment import parse_augment
    try:
        parse_augment(value)
    except OptionError as exc:
        raise ValueError(str(exc).removeprefix("option 'augment': ")) from None
    return value


SPEC = MagicSpec(
    name="featurize",
    summary="Turn every image of an image set (from %%dlload) into a pooled feature vector "
            "with a pretrained Keras CNN, distributed on Spark; the result feeds %%fit.",
    positional=("images",),
    min_positional=1,
    output=True,
    options=(
        Option("model", defaults.MODEL, "a model from %dlmodels, or a .keras/.h5 model file "
               "or SavedModel folder", as_str, nullable=False),
        Option("weights", defaults.WEIGHTS, "imagenet (Keras' cache), none (untrained), auto (imagenet "
               "when available, else untrained with a warning), or a local weights file", as_str),
        Option("layer", None, "user model files: the layer to cut at [default: the "
               "penultimate/pooled output]", as_str),
        PREPROCESS,
        BATCH_SIZE,
        PRECISION,
        ENGINE,
        PARTITIONS,
        Option("cache", "memory", "memory (memory-and-disk), none, or a folder to write the "
               "features to as Parquet", as_str),
        UNSAFE,
        Option("augment", None, "add augmented copies of the train split: true, a number of "
               "copies, or e.g. 'flip, rotate=15, copies=2'", _checked_augment),
        Option("seed", defaults.SEED, "random seed of the augmentation", as_int()),
    ),
    usage="Example:\n  %%featurize flowers -> flowers_features\n  model: ResNet50\n"
          "  weights: imagenet\n  batch_size: 32\n"
          "The output defaults to <images>_features.",
)


def run(call: MagicCall, ctx: Context) -> Any:
    from ..featurizer import featurize
    name = call.positional[0]
    images = lookup_images(ctx, name)
    kwargs = kwargs_for(call, ("model", "weights", "layer", "preprocess", "batch_size",
                               "cache", "unsafe", "augment", "seed", "partitions",
                               "precision", "engine"))
    with ctx.progress_scope("featurize"):
        features = featurize(images, **kwargs)
    ctx.store(call.output or f"{name}_features", features)
    return features
