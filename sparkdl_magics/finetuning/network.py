"""The network being fine-tuned: a backbone (registry model or user file) + a new head.

Built the same way on the driver (to check the options before any task starts) and in
every training worker. The backbone is called with ``training=False``, so its
BatchNormalization layers stay in inference mode while its top layers train (the usual
Keras fine-tuning rule: unfrozen BN statistics wreck the pretrained features on small
batches): ``unfreeze: all`` trains every convolution and dense layer, and BatchNorm's
gamma/beta and moving statistics stay as the backbone file has them. That is right for
trained weights on images like theirs; for untrained weights (whose statistics are the
identity) or a far domain, ``batchnorm: adapt`` re-estimates the moving statistics on
the training images before training starts (:func:`adapt_batchnorm`).

The head: ``head_norm`` (a per-example LayerNormalization: an untrained backbone's
features are ~1e-10), ``hidden`` Dense layers, dropout, the softmax. A head started from
a fitted logistic regression (``probe``) has no normalisation and no hidden layer: its
softmax layer *is* the regression (its coefficients and intercepts), so the network
predicts what the regression does before any step. The saved model takes images preprocessed by one of the batch runner's
``preprocess`` modes, so it is served like any user model file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import numpy as np

from ..errors import OptionError

#: ``unfreeze: all``
ALL = -1
#: The head's output layer: what the served model is cut at (class probabilities).
OUTPUT_LAYER = "probabilities"
#: The batch runner's preprocess modes, in the order a registry model is matched.
SERVING_MODES = ("none", "unit", "tf", "caffe", "torch")


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to build the network, as plain values (travels as JSON)."""

    num_classes: int
    input_size: Tuple[int, int]  # (width, height)
    model: str = ""  # registry name, or "" for a user model file
    weights_path: str = ""  # registry weights file (local to where it is built)
    model_path: str = ""  # user model file
    layer: Optional[str] = None  # user model: where its features are
    safe_mode: bool = True
    preprocess: str = "none"  # one of SERVING_MODES
    hidden: Tuple[int, ...] = ()
    dropout: float = 0.2
    unfreeze: int = 0  # top N backbone layers with weights (BatchNorm not counted); ALL
    head_norm: bool = True  # False for a head started from a logistic regression

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkSpec":
        data = dict(data)
        data["input_size"] = tuple(data["input_size"])
        data["hidden"] = tuple(data["hidden"])
        return cls(**data)


@dataclass
class Network:
    """A built network and which variables each optimizer trains."""

    model: Any
    head_variables: List[Any]
    backbone_variables: List[Any]
    unfrozen: List[str] = field(default_factory=list)  # backbone layer names training
    tunable: int = 0  # backbone layers with weights (what unfreeze counts)
    features: Any = None  # images -> the pooled backbone features the head reads
    head_layers: List[Any] = field(default_factory=list)  # features -> probabilities, in order
    backbone: Any = None

    def head(self, features: Any, training: bool = False) -> Any:
        """The head alone on precomputed features (the frozen-backbone warm-up)."""
        x = features
        for layer in self.head_layers:
            x = layer(x, training=training)
        return x

    def set_probe(self, kernel: Any, bias: Any) -> None:
        """Start the softmax layer from a logistic regression (features x classes)."""
        out = self.head_layers[-1]
        out.set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])


def build(spec: NetworkSpec) -> Network:
    """Backbone + head; only the head and the top ``unfreeze`` layers are trainable."""
    from ..inference import load_user_model
    from ..tfimport import import_keras
    keras = import_keras()
    w, h = spec.input_size
    if spec.model:
        from ..models import get_model_info
        backbone = get_model_info(spec.model).constructor()(
            include_top=False, weights=None, input_shape=(h, w, 3), pooling="avg")
        if spec.weights_path:
            backbone.load_weights(spec.weights_path)
    else:
        backbone = load_user_model(spec.model_path, spec.layer, spec.safe_mode)
    inputs = keras.Input((h, w, 3), name="image")
    x = backbone(inputs, training=False)  # BatchNormalization stays in inference mode
    if len(x.shape) > 2:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    features = keras.Model(inputs, x, name="features")
    # The head sees features at unit scale whatever the backbone gives: an untrained
    # backbone's pooled features are ~1e-10 (BatchNormalization in inference mode with
    # initial statistics), where an unnormalised head learns nothing; per example, so no
    # statistics to synchronise between workers.
    head = []
    if spec.head_norm:
        head.append(keras.layers.LayerNormalization(epsilon=1e-30, name="head_norm"))
    for i, units in enumerate(spec.hidden):
        head.append(keras.layers.Dense(int(units), activation="relu", name=f"head_dense_{i}"))
    if spec.dropout:
        head.append(keras.layers.Dropout(float(spec.dropout), name="head_dropout"))
    head.append(keras.layers.Dense(spec.num_classes, activation="softmax", name=OUTPUT_LAYER))
    for layer in head:
        x = layer(x)
    model = keras.Model(inputs, x, name="finetuned")
    unfrozen, tunable = _unfreeze(backbone, spec.unfreeze)
    head_vars = [v for layer in head for v in layer.trainable_variables]
    backbone_vars = list(backbone.trainable_variables)
    return Network(model, head_vars, backbone_vars, unfrozen, tunable, features=features,
                   head_layers=head, backbone=backbone)


def adapt_batchnorm(backbone: Any, batches: Any, reduce: Any = None) -> int:
    """Re-estimate every BatchNormalization layer's moving mean and variance on *batches*
    (preprocessed images), layer by layer from the input up: each layer's statistics are
    the mean and variance of its input over all the batches, with the layers below it
    already re-estimated. Returns how many layers were set. *batches* is a callable
    giving the batches anew; *reduce* sums a float64 vector over the workers (their
    images differ, their statistics must not)."""
    from ..tfimport import import_keras
    keras = import_keras()
    layers = [lay for lay in backbone.layers if isinstance(lay, keras.layers.BatchNormalization)]
    for layer in layers:
        probe = keras.Model(backbone.inputs, layer.input)
        total, squares, count = 0.0, 0.0, 0
        for x in batches():
            a = np.asarray(probe(x, training=False), np.float64)
            axes = tuple(i for i in range(a.ndim) if i != (layer.axis if layer.axis >= 0
                                                             else a.ndim + layer.axis))
            total = total + a.sum(axis=axes)
            squares = squares + (a * a).sum(axis=axes)
            count += int(np.prod([a.shape[i] for i in axes]))
        channels = int(layer.moving_mean.shape[0])
        sums = np.concatenate([np.broadcast_to(total, channels), np.broadcast_to(squares, channels),
                               [count]]).astype(np.float64)
        if reduce is not None:
            sums = np.asarray(reduce(sums), np.float64)
        total, squares, count = sums[:channels], sums[channels:2 * channels], sums[-1]
        if not count:
            continue
        mean = total / count
        var = np.maximum(squares / count - mean * mean, 0.0)
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(var.astype(np.float32))
    return len(layers)


def _unfreeze(backbone: Any, top: int) -> Tuple[List[str], int]:
    """Make the top *top* layers with weights trainable (all: ALL), BatchNorm never."""
    from ..tfimport import import_keras
    keras = import_keras()
    tunable = [layer for layer in backbone.layers if layer.weights
               and not isinstance(layer, keras.layers.BatchNormalization)]
    chosen = tunable if top == ALL else (tunable[len(tunable) - top:] if top else [])
    if top != ALL and top > len(tunable):
        raise OptionError(f"option 'unfreeze': the backbone has {len(tunable)} layers with "
                          f"weights (BatchNormalization not counted); got {top} (use "
                          f"{len(tunable)} or all)")
    backbone.trainable = True
    keep = {id(layer) for layer in chosen}
    for layer in backbone.layers:
        layer.trainable = id(layer) in keep
    return [layer.name for layer in chosen], len(tunable)


def check_unfreeze(value: Any) -> int:
    """``unfreeze``: 0 (head only), a number of top layers, or ``all``."""
    if isinstance(value, str) and value.strip().lower() == "all":
        return ALL
    if isinstance(value, bool):
        raise OptionError(f"option 'unfreeze': expected 0, a number of layers or all "
                          f"(got {value!r})")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise OptionError(f"option 'unfreeze': expected 0, a number of layers or all "
                          f"(got {value!r})") from None
    if number < 0:
        raise OptionError(f"option 'unfreeze': must be 0 or more (got {value!r})")
    return number


def check_head(value: Any) -> Tuple[Tuple[int, ...], Optional[float]]:
    """``head``: hidden units (``[256]``, ``[]``) or a dict ``{hidden: [256], dropout: 0.3}``."""
    dropout = None
    if isinstance(value, dict):
        unknown = set(value) - {"hidden", "dropout"}
        if unknown:
            raise OptionError(f"option 'head': unknown key(s) {', '.join(sorted(unknown))} "
                              "(valid: hidden, dropout)")
        dropout = value.get("dropout")
        value = value.get("hidden", [])
    if value is None:
        value = []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise OptionError(f"option 'head': expected a list of hidden layer sizes such as "
                          f"[256] (or []) (got {value!r})")
    if dropout is not None and not 0.0 <= float(dropout) < 1.0:
        raise OptionError(f"option 'head': dropout must be in [0, 1) (got {dropout!r})")
    return tuple(int(v) for v in value), None if dropout is None else float(dropout)


def serving_preprocess(model: str, preprocess: Optional[str]) -> str:
    """The batch runner's preprocess mode equal to a registry model's ``preprocess_input``
    (checked on a probe batch), or the user model's own mode."""
    from ..inference import preprocess_function
    if not model:
        mode = (preprocess or "none").strip().lower()
        if mode not in SERVING_MODES:
            from ..errors import unknown_choice
            raise unknown_choice("preprocess", preprocess, SERVING_MODES)
        return mode
    from ..models import get_model_info
    probe = np.random.default_rng(0).uniform(0, 255, (1, 4, 4, 3)).astype(np.float32)
    want = np.asarray(get_model_info(model).preprocess()(probe.copy()), dtype=np.float32)
    for mode in SERVING_MODES:
        got = np.asarray(preprocess_function(mode)(probe.copy()), dtype=np.float32)
        if got.shape == want.shape and np.allclose(got, want, atol=1e-4):
            return mode
    raise OptionError(f"option 'model': {model}'s preprocessing matches none of the "
                      f"served modes ({', '.join(SERVING_MODES)}); it cannot be fine-tuned yet")


__all__ = ["NetworkSpec", "Network", "build", "check_unfreeze", "check_head",
           "serving_preprocess", "ALL", "OUTPUT_LAYER"]
