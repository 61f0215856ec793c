"""%%featurize: pooled CNN features for every split of an image set (issue 4).

Parse → ``sparkdl_magics.featurizer.featurize`` → store → show. The options are the
function's keyword arguments, one declaration each.
"""
from __future__ import annotations

from typing import Any

from ..options import MagicCall, MagicSpec, Option, as_bool, as_int, as_str, kwargs_for
from .runner import Context

SPEC = MagicSpec(
    name="featurize",
    summary="Turn every image of an image set (from %%dlload) into a pooled feature vector "
            "with a pretrained Keras CNN, distributed on Spark; the result feeds %%fit.",
    positional=("images",),
    min_positional=1,
    output=True,
    options=(
        Option("model", "InceptionV3", "a model from %dlmodels, or a .keras/.h5 model file "
               "or SavedModel folder", as_str, nullable=False),
        Option("weights", "imagenet", "imagenet (Keras' cache), none (untrained), auto (imagenet "
               "when available, else untrained with a warning), or a local weights file", as_str),
        Option("layer", None, "user model files: the layer to cut at [default: the "
               "penultimate/pooled output]", as_str),
        Option("preprocess", None, "user model files: none, unit (0..1), tf (-1..1), caffe "
               "or torch", as_str),
        Option("batch_size", 32, "images per model call in each Spark task",
               as_int(minimum=1), nullable=False),
        Option("cache", "memory", "memory (memory-and-disk), none, or a folder to write the "
               "features to as Parquet", as_str),
        Option("unsafe", False, "user model files: allow Python code (Lambda layers); only "
               "for files you trust", as_bool),
    ),
    usage="Example:\n  %%featurize flowers -> flowers_features\n  model: ResNet50\n"
          "  weights: imagenet\n  batch_size: 32\n"
          "The output defaults to <images>_features.",
)


def run(call: MagicCall, ctx: Context) -> Any:
    from ..featurizer import featurize
    name = call.positional[0]
    images = ctx.lookup(name, what="an image set from %%dlload or a DataFrame of images")
    kwargs = kwargs_for(call, ("model", "weights", "layer", "preprocess", "batch_size",
                               "cache", "unsafe"))
    with ctx.progress_scope("featurize"):
        features = featurize(images, **kwargs)
    ctx.store(call.output or f"{name}_features", features)
    return features
