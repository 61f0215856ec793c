"""sparkdl_magics: transfer learning on images with Spark and Keras, from notebook cells.

``%load_ext sparkdl_magics`` registers the magics. Importing the package is cheap:
Spark, TensorFlow and Keras are imported only when a magic or API function needs them.
Every magic is one call into the public API below, with the same option names.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY = {
    "get_spark": "sparkdl_magics.session",
    "attach": "sparkdl_magics.session",
    "SparkDLError": "sparkdl_magics.errors",
    "OptionError": "sparkdl_magics.errors",
    "DataError": "sparkdl_magics.errors",
    # results (plain data)
    "ImageSet": "sparkdl_magics.results",
    "FeatureSet": "sparkdl_magics.results",
    "Predictions": "sparkdl_magics.results",
    "FittedModel": "sparkdl_magics.results",
    "Evaluation": "sparkdl_magics.results",
    "Comparison": "sparkdl_magics.results",
    "Explanation": "sparkdl_magics.results",
    # stages
    "load_images": "sparkdl_magics.loading",
    "featurize": "sparkdl_magics.featurizer",
    "DeepImageFeaturizer": "sparkdl_magics.featurizer",
    "list_models": "sparkdl_magics.models",
    "predict": "sparkdl_magics.prediction",
    "register_sql_function": "sparkdl_magics.sql",
    "read_image_stream": "sparkdl_magics.streaming",
    "unstreamed_files": "sparkdl_magics.streaming",
    "featurize_stream": "sparkdl_magics.streaming",
    "run_available_now": "sparkdl_magics.streaming",
    "apply_keras_model": "sparkdl_magics.tensors",
    "fit": "sparkdl_magics.training",
    "finetune": "sparkdl_magics.finetuning",
    "FineTunedModel": "sparkdl_magics.results",
    "evaluate": "sparkdl_magics.evaluation",
    "explain": "sparkdl_magics.explanation",
    "save_model": "sparkdl_magics.persist",
    "load_model": "sparkdl_magics.persist",
    # the widget app
    "App": "sparkdl_magics.app",
}

#: The last exception a magic shortened to one line (for inspection after the fact).
last_error: Any = None


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sparkdl_magics' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + list(_LAZY))


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext sparkdl_magics``."""
    from .magics import SparkDLMagics
    ipython.register_magics(SparkDLMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Called by ``%unload_ext`` / ``%reload_ext``: remove every magic we registered."""
    from .magics import SparkDLMagics
    registry = ipython.magics_manager.magics
    for kind, names in SparkDLMagics.magics.items():
        for name in names:
            registry[kind].pop(name, None)
    ipython.magics_manager.registry.pop("SparkDLMagics", None)
