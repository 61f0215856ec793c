"""Reduced-precision inference: which number type a model runs in, and how it is applied.

``precision`` is one of :data:`PRECISIONS`. ``float32`` is the default; ``bfloat16`` and
``float16`` run the model's convolutions and matrix products in that type; ``auto``
takes the fastest type the worker's hardware runs natively (:func:`choose`): bfloat16
on CPUs with AVX512-BF16 or AMX and on GPUs of compute capability 8.0 or more, float16
on older GPUs, else float32. ``auto`` is decided on each worker from its own facts
(:func:`local_facts`), so a saved pipeline re-decides on the cluster it is loaded on.

How (:func:`apply`): the built float32 model is cloned with a Keras dtype policy per
layer — the reduced type for every layer (weights stored in it too: no per-call weight
casts) except the normalisation layers and the output layers, which stay float32. A
BatchNormalization right after a linear Conv2D is folded into that convolution's
weights and bias (computed in float32, rounded once): inference then runs one fused
convolution instead of a convolution, two casts and a float32 normalisation.
Measured on a 2-core AVX512-BF16 CPU (oneDNN's ``avx512_core_bf16`` kernels),
ResNet50, one thread, CPU time per image: float32 39 ms, per-layer bfloat16 with
float32 BatchNorm 27.5 ms, with BatchNorm folded 24 ms (cosine vs float32 0.999995);
Keras' ``mixed_bfloat16`` everywhere is slower (every weight cast per call, BatchNorm
upcast), pure ``bfloat16`` everywhere loses the features (BatchNorm in bfloat16:
cosine 0.38). Features always come out float32. Those cosines are of untrained weights,
whose BatchNorms are the identity; with trained-like statistics (``tests/trained_like.py``:
BatchNorm means and variances of real inputs) bfloat16 ResNet50 features are within
cosine 0.997-0.998 of float32's (16 photo-like images), 0.9968 without the folding: the
difference is bfloat16's rounding, not the folding's.

Models that cannot be cloned layer by layer (subclassed models, SavedModel folders)
run in float32, and :func:`apply` says so. What a result reports is what ran
(:func:`report`): each task says the type its model ran in on a side column, and the job
that computes the result reads it (``featurize``: the job counting the features;
``predict``: the rows it shows), so there is no separate job asking the workers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Optional, Sequence, Tuple

from .errors import OptionError, unknown_choice

FLOAT32, BFLOAT16, FLOAT16, AUTO = "float32", "bfloat16", "float16", "auto"
#: Accepted values of the ``precision`` option.
PRECISIONS: Tuple[str, ...] = (FLOAT32, BFLOAT16, FLOAT16, AUTO)
_ALIASES = {"fp32": FLOAT32, "bf16": BFLOAT16, "fp16": FLOAT16, "half": FLOAT16}

#: CPU flags (``/proc/cpuinfo``) that mean native bfloat16 matrix arithmetic.
BF16_CPU_FLAGS: FrozenSet[str] = frozenset({"avx512_bf16", "amx_bf16"})
#: The first GPU compute capability with native bfloat16 (Ampere).
BF16_GPU_CAPABILITY = (8, 0)

#: Layer classes kept in float32 at reduced precision: their statistics need the range.
_FLOAT32_LAYERS = ("BatchNormalization", "LayerNormalization", "GroupNormalization",
                   "UnitNormalization", "Normalization", "Rescaling", "Softmax")


def check(value: Any) -> str:
    """The canonical precision for *value* (case-insensitive; fp32/bf16/fp16 too), or a
    one-line :class:`~sparkdl_magics.errors.OptionError`."""
    text = "" if value is None else str(value).strip().lower()
    text = _ALIASES.get(text, text)
    if text not in PRECISIONS:
        raise unknown_choice("precision", value, PRECISIONS)
    return text


@dataclass(frozen=True)
class HardwareFacts:
    """What decides ``auto``: the CPU's flags and the compute capability of each GPU
    the worker may use (empty: none)."""

    cpu_flags: FrozenSet[str] = frozenset()
    gpu_capabilities: Tuple[Tuple[int, int], ...] = ()


def choose(facts: HardwareFacts) -> str:
    """The precision ``auto`` picks for *facts* (pure: no hardware is read here).

    A GPU decides when there is one (the model runs there): bfloat16 from compute
    capability 8.0, float16 below. Without a GPU: bfloat16 on CPUs with AVX512-BF16 or
    AMX-BF16, else float32 (emulated bfloat16 is slower than float32).
    """
    if facts.gpu_capabilities:
        slowest = min(tuple(c) for c in facts.gpu_capabilities)
        return BFLOAT16 if slowest >= BF16_GPU_CAPABILITY else FLOAT16
    return BFLOAT16 if facts.cpu_flags & BF16_CPU_FLAGS else FLOAT32


def resolve(precision: str, facts: Optional[HardwareFacts] = None) -> str:
    """*precision* made concrete: ``auto`` decided from *facts* (default: this process's
    :func:`local_facts`), anything else as it is."""
    precision = check(precision)
    if precision != AUTO:
        return precision
    return choose(facts if facts is not None else local_facts())


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> FrozenSet[str]:
    """The CPU's feature flags from *cpuinfo* (empty where there is no such file)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def local_facts() -> HardwareFacts:
    """This process's facts: CPU flags, and the GPUs TensorFlow sees (it is imported
    here: call after :func:`sparkdl_magics.devices.pin_task_gpus`)."""
    from .tfimport import import_keras
    capabilities = []
    try:
        import_keras()
        import tensorflow as tf
        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            capability = details.get("compute_capability")
            if capability:
                capabilities.append(tuple(int(v) for v in capability))
    except ImportError:  # a Keras backend without TensorFlow: CPU facts only
        pass
    return HardwareFacts(cpu_flags(), tuple(capabilities))


# --------------------------------------------------------------------------- applying it

def layer_dtype(layer: Any, precision: str, outputs: Sequence[Any] = ()) -> str:
    """The dtype policy name one layer gets at *precision* (see the module doc)."""
    if precision == FLOAT32 or type(layer).__name__ in _FLOAT32_LAYERS or layer in outputs:
        return FLOAT32
    return precision


def apply(model: Any, precision: str) -> Tuple[Any, str]:
    """(*model* at *precision*, the precision it really runs at).

    *precision* is concrete (see :func:`resolve`). Float32 returns the model as it is.
    Otherwise the model is cloned with a per-layer dtype policy and its weights copied
    (cast to the layer's type); a model Keras cannot clone layer by layer stays float32.
    """
    if precision == FLOAT32:
        return model, FLOAT32
    from .tfimport import import_keras
    keras = import_keras()
    if not isinstance(model, (keras.Sequential, keras.Model)) or not _clonable(model, keras):
        return model, FLOAT32
    outputs = _output_layers(model)
    sequential = isinstance(model, keras.Sequential)  # no call_function there: no folding
    folds = {} if sequential else _foldable(model, keras)
    folded_norms = {id(norm) for norm in folds.values()}

    def clone_layer(layer: Any) -> Any:
        if id(layer) in folded_norms:
            return keras.layers.Identity(name=layer.name, dtype=precision)
        config = layer.get_config()
        if id(layer) in folds:
            config["use_bias"] = True
        if "dtype" in config:  # a layer (a bare op, e.g. ``x + y``, follows its inputs)
            config["dtype"] = layer_dtype(layer, precision, outputs)
        return layer.__class__.from_config(config)

    def call_layer(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(layer, keras.layers.Identity):  # a folded norm's call took `mask`
            return layer(*args)
        return layer(*args, **kwargs)

    clone = keras.models.clone_model(model, clone_function=clone_layer, recursive=True,
                                     **({} if sequential else {"call_function": call_layer}))
    by_name = {layer.name: layer for layer in clone.layers}
    for layer in model.layers:
        if not layer.weights or id(layer) in folded_norms:
            continue
        weights = _folded(layer, folds[id(layer)]) if id(layer) in folds \
            else layer.get_weights()
        by_name[layer.name].set_weights(weights)
    return clone, precision


def _foldable(model: Any, keras: Any) -> Dict[int, Any]:
    """{id(conv): norm} for each BatchNormalization (last axis) whose only input is a
    linear channels-last Conv2D used by nothing else (ResNet's conv -> bn -> relu)."""
    pairs: Dict[int, Any] = {}
    for norm in model.layers:
        if type(norm).__name__ != "BatchNormalization" or len(norm._inbound_nodes) != 1:
            continue
        axis = norm.axis if isinstance(norm.axis, int) else (norm.axis[0] if len(norm.axis) == 1
                                                             else None)
        inputs = norm._inbound_nodes[0].input_tensors
        if axis not in (-1, 3) or len(inputs) != 1:
            continue
        conv = inputs[0]._keras_history[0]
        config = conv.get_config() if type(conv).__name__ == "Conv2D" else {}
        if (config.get("activation") == "linear" and config.get("data_format") == "channels_last"
                and len(conv._inbound_nodes) == 1 and len(conv._outbound_nodes) == 1):
            pairs[id(conv)] = norm
    return pairs


def _folded(conv: Any, norm: Any) -> list:
    """The conv's [kernel, bias] with *norm* applied (inference: moving statistics)."""
    import numpy as np
    kernel = np.asarray(conv.kernel, dtype=np.float64)
    bias = np.asarray(conv.bias, dtype=np.float64) if conv.use_bias else 0.0
    variance = np.asarray(norm.moving_variance, dtype=np.float64)
    scale = 1.0 / np.sqrt(variance + norm.epsilon)
    if norm.scale:
        scale = scale * np.asarray(norm.gamma, dtype=np.float64)
    shift = np.asarray(norm.beta, dtype=np.float64) if norm.center else 0.0
    new_bias = (bias - np.asarray(norm.moving_mean, dtype=np.float64)) * scale + shift
    return [(kernel * scale).astype(np.float32), new_bias.astype(np.float32)]


def _clonable(model: Any, keras: Any) -> bool:
    """Functional and Sequential models (also nested ones) can be rebuilt layer by layer;
    subclassed models cannot."""
    from keras.src.models.functional import Functional
    return isinstance(model, (Functional, keras.Sequential))


def _output_layers(model: Any) -> Tuple[Any, ...]:
    """The layers producing *model*'s outputs (kept float32: a classifier's softmax)."""
    try:
        return tuple(t._keras_history[0] for t in model.outputs)
    except (AttributeError, TypeError, ValueError):
        return ()


def describe(requested: str, ran: Sequence[str] = ()) -> str:
    """What a result says: ``bfloat16``, or ``auto -> bfloat16`` (several workers that
    decided differently: ``auto -> bfloat16, float32``). *ran*: what the tasks report
    they ran (empty: nothing ran, the request is said); where that is not what was
    requested, it is what is said."""
    ran = sorted(set(ran))
    if requested == AUTO and ran:
        return f"auto -> {', '.join(ran)}"
    if ran and ran != [requested]:
        return ", ".join(ran)
    return requested


def with_precision(resolved: Any, precision: str) -> Any:
    """A copy of a resolved model choice (:class:`sparkdl_magics.weights.Resolved`) whose
    spec runs at *precision* (the spec is the workers' model-cache key)."""
    import dataclasses
    precision = check(precision)
    if resolved.spec.precision == precision:
        return resolved
    shipped = resolved.spec.model_file
    if precision in (BFLOAT16, FLOAT16) and shipped is not None and shipped.archive:
        raise OptionError(f"option 'precision': a SavedModel folder runs at float32 only "
                          f"(got {precision}; valid here: float32, auto)")
    return dataclasses.replace(resolved, spec=dataclasses.replace(resolved.spec,
                                                                  precision=precision))


#: The precision each named model last ran at in this session (what ``%dlmodels`` shows).
last_run: Dict[str, str] = {}


def note_run(model_name: str, described: str) -> None:
    """Remember that *model_name* ran at *described* (see :func:`describe`)."""
    last_run[str(model_name)] = described


def report(model_name: str, requested: str, ran: Sequence[str]) -> str:
    """What a result says it ran in (:func:`describe`), remembered for ``%dlmodels``.

    *ran*: the values of the side column the result's tasks filled (a
    :class:`~sparkdl_magics.inference.BatchRunner` with ``report_precision``), read by
    the job that computed the result: what the tasks used, never a separate probe."""
    described = describe(requested, ran)
    note_run(model_name, described)
    return described


__all__ = ["PRECISIONS", "FLOAT32", "BFLOAT16", "FLOAT16", "AUTO", "HardwareFacts", "check",
           "choose", "resolve", "cpu_flags", "local_facts", "layer_dtype", "apply", "describe",
           "note_run", "report", "last_run", "with_precision"]
