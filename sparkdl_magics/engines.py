"""Which inference engine runs a model on the workers: Keras (TensorFlow) or OpenVINO.

``engine`` is one of :data:`ENGINES`. ``keras`` (the default) runs the Keras model as
built (:mod:`sparkdl_magics.inference`). ``openvino`` converts that float32 Keras model
once per Python worker (exported as a SavedModel into a temporary folder,
``openvino.convert_model``, compiled for the CPU with ``INFERENCE_NUM_THREADS`` = the
task's cores) and runs it there; the model's own ``preprocess_input`` still runs in
numpy before it, and the features are the same float32 ``(n, d)`` array. Measured on a
2-core AVX512-BF16 CPU, model only: MobileNetV3Small 506.9 images/s at OpenVINO float32
against 221.2 for Keras at bfloat16 (per-image cosine 1.0 to TensorFlow float32),
ResNet50 158 at OpenVINO bfloat16 against 128 (``benchmarks/engines.py``).

Precision: OpenVINO's CPU plugin is asked for f32 (``float32``) or bf16 (``bfloat16``);
what it really runs in is read back from the compiled model and reported (a CPU without
bfloat16 runs f32). ``float16`` is refused with ``engine: openvino`` (its CPU plugin has
no float16 kernels on most CPUs); under ``auto`` a float16 model stays in Keras.

``auto`` converts registry models (``keras.applications`` by name) when the package is
importable on the worker, and otherwise, or if converting fails, runs Keras: each task
says which engine it ran, and ``featurize``'s ``stats['engine']`` reports it. OpenVINO
is an optional extra (``pip install 'sparkdl_magics[openvino]'``), imported only here,
and only on first use.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .errors import OptionError, unknown_choice

KERAS, OPENVINO, AUTO = "keras", "openvino", "auto"
#: Accepted values of the ``engine`` option.
ENGINES = (KERAS, OPENVINO, AUTO)
#: What ``engine: openvino`` says when the package is missing.
NOT_INSTALLED = ("option 'engine': openvino is not installed "
                 "(pip install 'sparkdl_magics[openvino]')")
#: OpenVINO's inference precision hint for each precision it runs.
_HINTS = {"float32": "f32", "bfloat16": "bf16"}


def check(value: Any) -> str:
    """The canonical engine for *value* (case-insensitive), or a one-line OptionError."""
    text = "" if value is None else str(value).strip().lower()
    if text not in ENGINES:
        raise unknown_choice("engine", value, ENGINES)
    return text


def openvino_installed() -> bool:
    """Whether ``import openvino`` can work here (nothing is imported)."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):  # a broken or blocked entry in sys.modules
        return False


def check_request(engine: str, precision: str) -> str:
    """*engine* checked on the driver, before any Spark job: ``openvino`` needs the
    package and a precision it runs (float32, bfloat16 or auto)."""
    engine = check(engine)
    if engine == OPENVINO:
        if not openvino_installed():
            raise OptionError(NOT_INSTALLED)
        if precision == "float16":
            raise OptionError("option 'engine': openvino runs float32 or bfloat16 only "
                              "(got precision float16; use engine: keras for float16)")
    return engine


def with_engine(resolved: Any, engine: str) -> Any:
    """A copy of a resolved model choice whose spec runs in *engine* (the spec is the
    workers' model-cache key: Keras and OpenVINO models of one spec are cached apart)."""
    engine = check(engine)
    if resolved.spec.engine == engine:
        return resolved
    return dataclasses.replace(resolved, spec=dataclasses.replace(resolved.spec, engine=engine))


def describe(requested: str, ran: Sequence[str] = ()) -> str:
    """What a result says: ``openvino``, or ``auto -> openvino`` (tasks that decided
    differently: ``auto -> keras, openvino``); nothing ran: the request."""
    ran = sorted(set(r for r in ran if r))
    if requested == AUTO and ran:
        return f"auto -> {', '.join(ran)}"
    return ", ".join(ran) if ran else requested


# --------------------------------------------------------------------------- on the worker

def wants_openvino(spec: Any, precision: str) -> bool:
    """Whether a spec's model is converted: always for ``openvino``; for ``auto``, a
    registry model at float32/bfloat16 with the package importable here."""
    if spec.engine == OPENVINO:
        return True
    return (spec.engine == AUTO and bool(spec.model) and precision in _HINTS
            and openvino_installed())


def compile_model(keras_model: Any, precision: str, threads: Optional[int]) -> Any:
    """*keras_model* (float32) as an OpenVINO model compiled for this CPU at *precision*
    on *threads* threads (None: OpenVINO's choice)."""
    if precision not in _HINTS:
        raise OptionError(f"option 'engine': openvino runs float32 or bfloat16 only "
                          f"(got precision {precision})")
    try:
        import openvino as ov
    except ImportError:
        raise OptionError(NOT_INSTALLED) from None
    # no CPU pinning: every Spark task's worker would pin its threads to the same first
    # cores (measured: two local[2] tasks ran ResNet50 at 0.77x Keras' rate pinned)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": _HINTS[precision],
              "ENABLE_CPU_PINNING": False}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    with tempfile.TemporaryDirectory(prefix="sparkdl-openvino-") as folder:
        path = os.path.join(folder, "model")
        keras_model.export(path, format="tf_saved_model", verbose=False)
        # compiled inside the folder's lifetime: the compiled model owns its weights
        return ov.Core().compile_model(ov.convert_model(path), "CPU", config)


def ran_precision(compiled: Any) -> str:
    """The precision the compiled model really runs in (read back, not assumed)."""
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    return "bfloat16" if name.lower() in ("bf16", "bfloat16") else "float32"


def batch_runner(compiled: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A function running *compiled* on one batch (float32 in, first output float32 out);
    callers serialise calls (one infer request)."""
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        out = request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.array(out, dtype=np.float32)  # a copy: the request reuses its buffer
    return run


__all__ = ["ENGINES", "KERAS", "OPENVINO", "AUTO", "NOT_INSTALLED", "check",
           "openvino_installed", "check_request", "with_engine", "describe",
           "wants_openvino", "compile_model", "ran_precision", "batch_runner"]
