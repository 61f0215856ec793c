"""The named-model registry: one table of the pretrained CNNs the featurizer knows.

Each row keeps a model's facts side by side, as ``keras.applications`` does: the
constructor, the input size, the exact ``preprocess_input`` it expects, the pooled
feature size, and the ImageNet weights files in Keras' cache (``~/.keras/models``,
or ``$KERAS_HOME/models``). Nothing here imports Keras at module load; the
constructor and preprocessing function are looked up by name when needed.
"""
from __future__ import annotations

from .tfimport import import_keras

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from .errors import unknown_choice

_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class ModelInfo:
    """One row of the registry."""

    name: str                 # keras.applications constructor name
    module: str               # keras.applications.<module> (holds preprocess_input)
    size: int                 # input height = width, in pixels
    features: int             # length of the pooled feature vector
    params_m: float           # parameters (millions) of the headless model
    weights_notop: str        # ImageNet weights file (no classifier head), Keras cache name
    weights_top: str          # ImageNet weights file with the 1000-class head
    url_base: str             # where Keras downloads them from
    url_notop: str = ""       # download name when it differs from the cache name
    family: str = ""

    @property
    def input_size(self) -> Tuple[int, int]:
        """(width, height) for image resizing."""
        return (self.size, self.size)

    def constructor(self) -> Callable[..., Any]:
        keras = import_keras()
        return getattr(keras.applications, self.name)

    def preprocess(self) -> Callable[[Any], Any]:
        """The model's own ``keras.applications.<module>.preprocess_input``."""
        keras = import_keras()
        return getattr(keras.applications, self.module).preprocess_input

    def weights_url(self, include_top: bool = False) -> str:
        name = self.weights_top if include_top else (self.url_notop or self.weights_notop)
        return self.url_base + name

    def weights_file(self, include_top: bool = False) -> str:
        return self.weights_top if include_top else self.weights_notop


def _r(name, module, size, features, params_m, notop, top, base, url_notop="", family=""):
    return ModelInfo(name, module, size, features, params_m, notop, top, base, url_notop, family)


_TF = "_weights_tf_dim_ordering_tf_kernels"

#: The registry. Feature size is that of the global-average-pooled last conv block.
MODELS: Tuple[ModelInfo, ...] = (
    #  name              module            size feat  params  no-top weights file / with-top file / base URL
    _r("InceptionV3", "inception_v3", 299, 2048, 21.8, f"inception_v3{_TF}_notop.h5",
       f"inception_v3{_TF}.h5", _GCS + "inception_v3/", family="classic"),
    _r("Xception", "xception", 299, 2048, 20.9, f"xception{_TF}_notop.h5",
       f"xception{_TF}.h5", _GCS + "xception/", family="classic"),
    _r("ResNet50", "resnet50", 224, 2048, 23.6, f"resnet50{_TF}_notop.h5",
       f"resnet50{_TF}.h5", _GCS + "resnet/", family="classic"),
    _r("VGG16", "vgg16", 224, 512, 14.7, f"vgg16{_TF}_notop.h5",
       f"vgg16{_TF}.h5", _GCS + "vgg16/", family="classic"),
    _r("VGG19", "vgg19", 224, 512, 20.0, f"vgg19{_TF}_notop.h5",
       f"vgg19{_TF}.h5", _GCS + "vgg19/", family="classic"),
    _r("ResNet101", "resnet", 224, 2048, 42.7, f"resnet101{_TF}_notop.h5",
       f"resnet101{_TF}.h5", _GCS + "resnet/", family="resnet"),
    _r("ResNet50V2", "resnet_v2", 224, 2048, 23.6, f"resnet50v2{_TF}_notop.h5",
       f"resnet50v2{_TF}.h5", _GCS + "resnet/", family="resnet"),
    _r("MobileNetV2", "mobilenet_v2", 224, 1280, 2.3,
       "mobilenet_v2" + _TF + "_1.0_224_no_top.h5", "mobilenet_v2" + _TF + "_1.0_224.h5",
       _GCS + "mobilenet_v2/", family="mobile"),
    _r("MobileNetV3Small", "mobilenet_v3", 224, 576, 0.9,
       "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
       "weights_mobilenet_v3_small_224_1.0_float.h5", _GCS + "mobilenet_v3/", family="mobile"),
    _r("MobileNetV3Large", "mobilenet_v3", 224, 960, 3.0,
       "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
       "weights_mobilenet_v3_large_224_1.0_float.h5", _GCS + "mobilenet_v3/", family="mobile"),
    _r("EfficientNetB0", "efficientnet", 224, 1280, 4.0, "efficientnetb0_notop.h5",
       "efficientnetb0.h5", "https://storage.googleapis.com/keras-applications/",
       family="efficientnet"),
    _r("EfficientNetB3", "efficientnet", 300, 1536, 10.8, "efficientnetb3_notop.h5",
       "efficientnetb3.h5", "https://storage.googleapis.com/keras-applications/",
       family="efficientnet"),
    _r("EfficientNetV2B0", "efficientnet_v2", 224, 1280, 5.9, "efficientnetv2-b0_notop.h5",
       "efficientnetv2-b0.h5", _GCS + "efficientnet_v2/", family="efficientnet"),
    _r("EfficientNetV2S", "efficientnet_v2", 384, 1280, 20.3, "efficientnetv2-s_notop.h5",
       "efficientnetv2-s.h5", _GCS + "efficientnet_v2/", family="efficientnet"),
    _r("DenseNet121", "densenet", 224, 1024, 7.0, f"densenet121{_TF}_notop.h5",
       f"densenet121{_TF}.h5", _GCS + "densenet/", family="densenet"),
    _r("ConvNeXtTiny", "convnext", 224, 768, 27.8, "convnext_tiny_notop.h5",
       "convnext_tiny.h5", _GCS + "convnext/", family="convnext"),
    _r("NASNetMobile", "nasnet", 224, 1056, 4.3, "nasnet_mobile_no_top.h5",
       "nasnet_mobile.h5", _GCS + "nasnet/", url_notop="NASNet-mobile-no-top.h5",
       family="nasnet"),
)

_BY_LOWER: Dict[str, ModelInfo] = {m.name.lower(): m for m in MODELS}

#: Names accepted for ``model``.
MODEL_NAMES: Tuple[str, ...] = tuple(m.name for m in MODELS)


def get_model_info(name: str) -> ModelInfo:
    """The registry row for *name* (case-insensitive), or a one-line error."""
    info = _BY_LOWER.get(str(name).strip().lower())
    if info is None:
        raise unknown_choice("model", name, MODEL_NAMES)
    return info


def is_model_name(name: str) -> bool:
    return str(name).strip().lower() in _BY_LOWER


def keras_cache_dir() -> str:
    """Keras' weights cache (``$KERAS_HOME/models`` or ``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def cached_weights_path(info: ModelInfo, include_top: bool = False) -> Optional[str]:
    """The ImageNet weights file in Keras' cache, or None when it is not there."""
    path = os.path.join(keras_cache_dir(), info.weights_file(include_top))
    return path if os.path.isfile(path) else None


def list_models() -> Any:
    """The registry as a pandas DataFrame (what ``%dlmodels`` shows); ``precision``: the
    number type each model last ran at in this session ('' when it has not run)."""
    import pandas as pd

    from .precision import last_run
    rows = []
    for m in MODELS:
        local = cached_weights_path(m)
        rows.append({
            "model": m.name,
            "input_size": f"{m.size}x{m.size}",
            "feature_dim": m.features,
            "params_m": m.params_m,
            "size_mb": round(m.params_m * 4, 1),
            "preprocess": f"keras.applications.{m.module}.preprocess_input",
            "family": m.family,
            "weights_local": local is not None,
            "weights_file": m.weights_notop,
            "precision": last_run.get(m.name, ""),
        })
    return pd.DataFrame(rows)


__all__ = ["ModelInfo", "MODELS", "MODEL_NAMES", "get_model_info", "is_model_name",
           "keras_cache_dir", "cached_weights_path", "list_models"]
