"""Batch inference inside a Python worker: the per-worker model cache and batch runner.

Everything here runs where the data is (a Spark Python worker, or any process):

- :class:`ModelSpec` — a small, hashable, picklable description of a model to run
  (which network, which shipped weights/model file, where to cut, how to preprocess).
  The driver builds it once (:mod:`sparkdl_magics.weights`); it travels in the UDF's
  closure (a few hundred bytes — never the weights themselves).
- :func:`get_model` — builds the Keras model for a spec once per Python process and
  keeps it (a small LRU keyed by the spec, precision included), so every batch and
  every task a reused worker runs shares one model. TensorFlow's thread pools are sized
  to the task's cores before the first model is built; the model runs at the spec's
  ``precision`` (:mod:`sparkdl_magics.precision`; ``auto`` is decided here, per worker),
  in the spec's ``engine`` (:mod:`sparkdl_magics.engines`: Keras, or converted to OpenVINO).
- :func:`predict_images` — numpy uint8 RGB batch in, float32 features out (the model's
  own ``preprocess_input`` applied).
- :func:`run_decoded` — decode (compressed bytes or Spark image structs) and infer in
  chunks of ``batch_size``, decoding the next chunk in a background thread while the
  model runs on the current one; a row that fails to decode yields ``None`` and a
  reason instead of failing the task.
- :class:`BatchRunner` — the one loop every batch UDF runs (features, predictions,
  augmentation, tensors; through them the SQL function and streaming): model from the
  cache, then per Arrow batch *adapter* (items + decoder) -> :func:`run_decoded` ->
  *formatter*. :meth:`BatchRunner.udf` makes it a Spark pandas UDF. Before TensorFlow
  starts in a worker, the runner pins it to the task's GPU (:mod:`sparkdl_magics.devices`).

Pure numpy/Pillow at import time; Keras/TensorFlow are imported on first use.
"""
from __future__ import annotations

import collections
import os
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import devices, engines, imaging
from . import precision as precisions
from .errors import OptionError
from .tfimport import import_keras

#: How many models one worker keeps alive (switching models evicts the oldest).
MAX_CACHED_MODELS = 2


# --------------------------------------------------------------------------- specs

@dataclass(frozen=True)
class ShippedFile:
    """A file the driver made available to executors (``spark.addArtifacts``).

    ``name`` is unique (content-keyed) in the session's SparkFiles; ``driver_path`` is
    the staged copy on the driver, used when the worker shares the driver's filesystem
    and SparkFiles has no copy (e.g. a model run in the driver process itself).
    ``archive``: a zipped directory (SavedModel), unpacked once per worker.
    """

    name: str
    driver_path: str
    archive: bool = False

    def local_path(self) -> str:
        path = _sparkfiles_path(self.name)
        if path is None:
            if not os.path.exists(self.driver_path):
                raise FileNotFoundError(
                    f"{self.name} was not shipped to this worker (SparkFiles) and "
                    f"{self.driver_path} does not exist here")
            path = self.driver_path
        return _unpacked(path) if self.archive else path


def _sparkfiles_path(name: str) -> Optional[str]:
    try:
        from pyspark import SparkFiles
        path = SparkFiles.get(name)
    # Broad on purpose: without Spark (ImportError), without a SparkContext in this
    # process (AssertionError), with its JVM gone (py4j's errors) or on a worker with no
    # SparkFiles root (TypeError), the answer is the same: no shipped copy here.
    except Exception:
        return None
    return path if os.path.exists(path) else None


_unpack_lock = threading.Lock()


def _unpacked(zip_path: str) -> str:
    target = zip_path[: -len(".zip")] if zip_path.endswith(".zip") else zip_path + ".d"
    with _unpack_lock:
        if not os.path.isdir(target):
            tmp = f"{target}.tmp{os.getpid()}"
            with zipfile.ZipFile(zip_path) as archive:
                archive.extractall(tmp)
            try:
                os.rename(tmp, target)
            except OSError:  # another worker won the race; use theirs
                pass
    return target


@dataclass(frozen=True)
class ModelSpec:
    """What to run. Hashable: it is the per-worker cache key.

    ``model``: a registry name (``ResNet50``) — or ``""`` with ``model_file`` set for a
    user model. ``weights_file``: weights loaded into the registry architecture (Keras
    cache file, user file, or the seeded initial weights for ``weights='none'``).
    ``layer``: user models are cut at this layer's output (None: the model's output).
    ``preprocess``: ``"model"`` (the registry model's own ``preprocess_input``), or an
    ``imagenet_utils`` mode for user models: ``none`` (0..255), ``unit`` (0..1), ``tf``
    (-1..1), ``caffe``, ``torch``. ``include_top``: the full classifier (top-K
    prediction) instead of pooled features. ``precision``: float32, bfloat16, float16
    or auto (decided on each worker); models at different precisions are cached apart.
    ``engine``: keras, openvino or auto (:mod:`sparkdl_magics.engines`); cached apart too.
    """

    model: str = ""
    weights_file: Optional[ShippedFile] = None
    model_file: Optional[ShippedFile] = None
    layer: Optional[str] = None
    input_size: Tuple[int, int] = (224, 224)  # (width, height)
    preprocess: str = "model"
    include_top: bool = False
    safe_mode: bool = True
    pooling: str = "avg"
    precision: str = precisions.FLOAT32
    engine: str = engines.KERAS

    @property
    def label(self) -> str:
        return self.model or (self.model_file.name if self.model_file else "?")


# --------------------------------------------------------------------------- the cache

class LoadedModel:
    """A built Keras model plus its preprocessing: uint8 RGB batches in, features out.

    ``precision``: the number type the model really runs in (``auto`` decided).
    ``engine``: what runs it (``keras``, or ``openvino`` with *runner* its batch function)."""

    def __init__(self, spec: ModelSpec, model: Any, preprocess: Callable[[np.ndarray], Any],
                 precision: str = precisions.FLOAT32, engine: str = engines.KERAS,
                 runner: Optional[Callable[[np.ndarray], np.ndarray]] = None):
        self.spec = spec
        self.model = model
        self.preprocess = preprocess
        self.precision = precision
        self.engine = engine
        self._runner = runner
        self._lock = threading.Lock()
        self._functions: dict = {}

    @property
    def input_size(self) -> Tuple[int, int]:
        return self.spec.input_size

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) uint8 RGB -> (n, d) float32."""
        if len(images) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        out = self.run(self.preprocess(np.asarray(images, dtype=np.float32)))
        if out.ndim > 2:  # an unpooled map (user layer): average over space
            out = out.reshape(out.shape[0], -1, out.shape[-1]).mean(axis=1)
        return out

    def run(self, x: np.ndarray) -> np.ndarray:
        """The model's raw output (float32 numpy) for a batch that is ready to go in."""
        x = np.asarray(x)
        with self._lock:  # one model, one caller at a time (Keras models are not re-entrant)
            if self._runner is not None:
                return self._runner(x)
            key = (x.shape[1:], x.dtype.str)
            function = self._functions.get(key)
            if function is None:
                function = self._functions[key] = batch_function(self.model, x)
            out = _first_output(function(x))
        return np.asarray(out, dtype=np.float32)


def batch_function(model: Any, example: np.ndarray) -> Callable[[np.ndarray], Any]:
    """A callable running *model* on batches shaped like *example*, of any batch size.

    Keras' ``predict_on_batch`` compiles with XLA on CPU, once per batch *shape*: the
    short last chunk of every partition (and every new partition size) cost a fresh
    compile of seconds. With TensorFlow we trace one graph whose batch dimension is
    open, without XLA: same steady speed on CPU (measured: ResNet50 23.6 vs 23.8
    images/s on 2 threads), no recompiles. Other backends keep ``predict_on_batch``.
    """
    keras = import_keras()
    if keras.backend.backend() != "tensorflow":
        return model.predict_on_batch if hasattr(model, "predict_on_batch") else model
    import tensorflow as tf
    spec = tf.TensorSpec((None,) + tuple(example.shape[1:]), tf.as_dtype(example.dtype))
    if isinstance(model, keras.Model):
        return tf.function(lambda x: model(x, training=False), input_signature=[spec],
                           jit_compile=False)
    return tf.function(lambda x: model(x), input_signature=[spec], jit_compile=False)


def _first_output(out: Any) -> Any:
    """One array from what a model returns (a dict or list of outputs: the first)."""
    if isinstance(out, dict):
        out = next(iter(out.values())) if len(out) == 1 else out[sorted(out)[0]]
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out.numpy() if hasattr(out, "numpy") else out


_cache: "collections.OrderedDict[ModelSpec, LoadedModel]" = collections.OrderedDict()
_cache_lock = threading.Lock()
_threads_set = False
#: How many times this process built a model (tests read it to check reuse).
build_count = 0


def get_model(spec: ModelSpec, threads: Optional[int] = None) -> LoadedModel:
    """The model for *spec*, built on first use in this process and then reused."""
    global build_count
    with _cache_lock:
        loaded = _cache.get(spec)
        if loaded is not None:
            _cache.move_to_end(spec)
            return loaded
        if threads:
            set_tf_threads(threads)
        loaded = build(spec, threads)
        build_count += 1
        _cache[spec] = loaded
        while len(_cache) > MAX_CACHED_MODELS:
            _cache.popitem(last=False)
        return loaded


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
        _derived.clear()


#: Models built from a cached one (:attr:`BatchRunner.derive`), keyed by (spec, derive).
_derived: "collections.OrderedDict[Tuple[ModelSpec, Any], LoadedModel]" = collections.OrderedDict()


def get_derived(base: LoadedModel, derive: Callable[[LoadedModel], LoadedModel]) -> LoadedModel:
    """``derive(base)`` (e.g. a heatmap model sharing the backbone), built once per
    process and reused like :func:`get_model`; *derive* is hashable (part of the key)."""
    key = (base.spec, derive)
    with _cache_lock:
        loaded = _derived.get(key)
        if loaded is not None:
            _derived.move_to_end(key)
            return loaded
        loaded = _derived[key] = derive(base)
        while len(_derived) > MAX_CACHED_MODELS:
            _derived.popitem(last=False)
        return loaded


def set_tf_threads(threads: int) -> None:
    """Size TensorFlow's pools to the cores a task owns (once, before TF starts)."""
    global _threads_set
    if _threads_set:
        return
    _threads_set = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import_keras()
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except ImportError:  # a Keras backend without TensorFlow: nothing to size here
        pass
    except RuntimeError:  # TF already initialised in this process (e.g. the driver): keep it
        pass


def build(spec: ModelSpec, threads: Optional[int] = None) -> LoadedModel:
    """Build the model a spec describes, at its precision, in its engine (no caching;
    see :func:`get_model`). *threads*: the task's cores (OpenVINO's threads)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    loaded = _build_float32(spec)
    wanted = precisions.resolve(spec.precision)
    if engines.wants_openvino(spec, wanted):
        converted = _build_openvino(spec, loaded, wanted, threads)
        if converted is not None:
            return converted
    model, ran = precisions.apply(loaded.model, wanted)
    if ran != wanted and spec.precision != precisions.AUTO:
        raise OptionError(
            f"option 'precision': {spec.label} cannot run at {wanted} (only Keras functional "
            "or sequential models can; a SavedModel folder or subclassed model runs at float32)")
    return LoadedModel(spec, model, loaded.preprocess, ran)


def _build_openvino(spec: ModelSpec, loaded: LoadedModel, wanted: str,
                    threads: Optional[int]) -> Optional[LoadedModel]:
    """*loaded* (float32 Keras) converted to OpenVINO; None where ``auto`` falls back to
    Keras. ``precision: auto`` that picks float16 (a GPU) runs float32 here."""
    if wanted not in (precisions.FLOAT32, precisions.BFLOAT16) and \
            spec.precision == precisions.AUTO:
        wanted = precisions.FLOAT32
    # Broad on purpose: a converter failing on one model (any of TensorFlow's or
    # OpenVINO's error types) means "not this engine": auto runs Keras, openvino says so.
    try:
        compiled = engines.compile_model(loaded.model, wanted, threads)
    except Exception as exc:
        if spec.engine == engines.AUTO:
            return None
        if isinstance(exc, OptionError):
            raise
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        raise OptionError(f"option 'engine': {spec.label} cannot run in openvino "
                          f"({type(exc).__name__}: {reason}); use engine: keras") from None
    return LoadedModel(spec, compiled, loaded.preprocess, engines.ran_precision(compiled),
                       engines.OPENVINO, engines.batch_runner(compiled))


def _build_float32(spec: ModelSpec) -> LoadedModel:
    if spec.model:
        from .models import get_model_info
        info = get_model_info(spec.model)
        w, h = spec.input_size
        model = info.constructor()(
            include_top=spec.include_top, weights=None, input_shape=(h, w, 3),
            pooling=None if spec.include_top else spec.pooling)
        if spec.weights_file is not None:
            model.load_weights(spec.weights_file.local_path())
        preprocess = info.preprocess() if spec.preprocess == "model" else \
            preprocess_function(spec.preprocess)
        return LoadedModel(spec, model, preprocess)
    if spec.model_file is None:
        raise ValueError("a ModelSpec needs a model name or a model file")
    model = load_user_model(spec.model_file.local_path(), spec.layer, spec.safe_mode)
    return LoadedModel(spec, model, preprocess_function(spec.preprocess))


def load_user_model(path: str, layer: Optional[str], safe_mode: bool = True) -> Any:
    """A user's ``.keras`` / ``.h5`` model (cut at *layer*), or a SavedModel directory."""
    keras = import_keras()
    if os.path.isdir(path):
        return keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    model = keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    if layer:
        model = keras.Model(model.inputs, model.get_layer(layer).output)
    return model


def preprocess_function(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    """Preprocessing for user models: ``none``, ``unit``, or an imagenet_utils mode."""
    if mode == "none":
        return lambda x: x
    if mode == "unit":
        return lambda x: x / np.float32(255.0)
    from keras.applications import imagenet_utils

    def apply(x: np.ndarray) -> np.ndarray:
        return imagenet_utils.preprocess_input(x, mode=mode)
    return apply


# --------------------------------------------------------------------------- batches

def predict_images(spec: ModelSpec, images: np.ndarray, threads: Optional[int] = None) -> np.ndarray:
    """Features (or class scores with ``include_top``) for a uint8 RGB batch."""
    return get_model(spec, threads).predict(images)


#: (item, (width, height)) -> one model input row; None: nothing to run for this item
#: (a null output, no error). Raise :class:`~sparkdl_magics.imaging.InvalidImage` (or
#: anything) for an item that cannot be read: a null output and the reason.
Decoder = Callable[[Any, Tuple[int, int]], Optional[np.ndarray]]


def decode_bytes(item: Any, size: Tuple[int, int]) -> np.ndarray:
    """Compressed bytes -> (h, w, 3) uint8 RGB at *size* (shared decode rules)."""
    return imaging.decode_array(item, size)


def decode_struct(item: Any, size: Tuple[int, int]) -> np.ndarray:
    """A Spark image-source struct (dict/Row/tuple, BGR) -> resized RGB array."""
    if item is None:
        raise imaging.InvalidImage("no image (null)")
    get = item.get if isinstance(item, dict) else (lambda k: getattr(item, k))
    rgb = imaging.struct_to_rgb(int(get("height")), int(get("width")), int(get("nChannels")),
                                int(get("mode")), get("data"))
    return imaging.resize_array(rgb, size)


def batch_items(batch: Any) -> Tuple[List[Any], Any]:
    """A pandas UDF batch as (items, decoder): a Series of bytes, or the DataFrame of
    fields an image-struct column arrives as (one dict per row, None for a null struct)."""
    import pandas as pd
    if isinstance(batch, pd.DataFrame):
        cols = list(batch.columns)
        nulls = batch.isna().all(axis=1).tolist()
        items = [None if null else dict(zip(cols, values))
                 for null, values in zip(nulls, zip(*(batch[c] for c in cols)))]
        return items, decode_struct
    return batch.tolist(), decode_bytes


def run_decoded(model: LoadedModel, items: Sequence[Any], batch_size: int,
                decoder: Decoder = decode_bytes, raw: bool = False, decode_threads: int = 1
                ) -> Tuple[List[Optional[np.ndarray]], List[Optional[str]]]:
    """Decode *items* and run *model* on them, ``batch_size`` items at a time.

    Returns one output row (or None) and one error reason (or None) per item. The next
    chunk is decoded in a background thread while the model runs (Pillow and
    TensorFlow both release the GIL), so decoding costs little wall time. ``raw``: the
    decoded rows go into the model as they are (:meth:`LoadedModel.run`, for tensors)
    instead of as images (:meth:`LoadedModel.predict`: preprocessing, spatial pooling).
    ``decode_threads``: threads decoding one chunk (the CPUs the task owns: a fast
    model, e.g. on a GPU, otherwise waits for one decoding thread).
    """
    n = len(items)
    outputs: List[Optional[np.ndarray]] = [None] * n
    errors: List[Optional[str]] = [None] * n
    if n == 0:
        return outputs, errors
    size = model.input_size
    step = max(int(batch_size), 1)
    starts = list(range(0, n, step))
    infer = model.run if raw else model.predict

    def decode_one(i: int) -> Optional[np.ndarray]:
        try:
            return decoder(items[i], size)
        except imaging.InvalidImage as exc:
            errors[i] = str(exc)
        # Broad on purpose: a decoder reads one user file (Pillow, numpy, a malformed
        # struct raise many types); whatever fails is that file's, never the task's.
        except Exception as exc:
            errors[i] = f"cannot decode ({type(exc).__name__}: {str(exc)[:120]})"
        return None

    threads = max(int(decode_threads), 1)
    decoders = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sparkdl-decode") \
        if threads > 1 else None

    def decode_chunk(start: int) -> Tuple[List[int], Optional[np.ndarray]]:
        indices = range(start, min(start + step, n))
        decoded = decoders.map(decode_one, indices) if decoders else map(decode_one, indices)
        arrays, rows = [], []
        for i, array in zip(indices, decoded):
            if array is not None:
                arrays.append(array)
                rows.append(i)
        return rows, (np.stack(arrays) if arrays else None)

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparkdl-chunks") as pool:
            pending = pool.submit(decode_chunk, starts[0])
            for k in range(len(starts)):
                rows, batch = pending.result()
                if k + 1 < len(starts):
                    pending = pool.submit(decode_chunk, starts[k + 1])
                if batch is None:
                    continue
                out = infer(batch)
                for j, i in enumerate(rows):
                    outputs[i] = out[j]
                del batch, out
    finally:
        if decoders is not None:
            decoders.shutdown()
    return outputs, errors


# --------------------------------------------------------------------------- the batch runner

#: The struct field a reporting :class:`BatchRunner` adds: the type its task's model ran in.
PRECISION_FIELD = "precision"
#: The struct field a :class:`BatchRunner` with ``report_engine`` adds: the engine that ran.
ENGINE_FIELD = "engine"
#: Per Arrow batch: (batch, model) -> (items, decoder) for :func:`run_decoded`.
Adapter = Callable[[Any, LoadedModel], Tuple[Sequence[Any], Decoder]]
#: Per Arrow batch: (items, outputs, errors) -> the pandas Series/DataFrame the UDF yields.
Formatter = Callable[[Sequence[Any], List[Optional[np.ndarray]], List[Optional[str]]], Any]


def image_batch(batch: Any, model: LoadedModel) -> Tuple[List[Any], Decoder]:
    """The adapter for an image column: bytes or image structs (see :func:`batch_items`)."""
    return batch_items(batch)


@dataclass(frozen=True)
class BatchRunner:
    """The one batch loop of every UDF: cached model, then per Arrow batch
    ``adapter`` (items + decoder) -> :func:`run_decoded` -> ``formatter``.

    Built on the driver, pickled into the UDF: keep ``adapter`` and ``formatter``
    module-level functions (or partials/closures over small values); the spec is a
    few hundred bytes. ``raw``: see :func:`run_decoded`. ``derive``: a hashable
    callable building the model actually run from the cached one (:func:`get_derived`).
    ``report_precision``: each formatted frame (a struct's fields: a DataFrame) gets a
    ``precision`` field, the number type this task's model really runs in (``auto``
    decided, a fallback to float32 seen), and :meth:`udf` declares it: what a result
    reports comes from the tasks that made it (:func:`sparkdl_magics.precision.report`).
    ``report_engine``: likewise an ``engine`` field, the engine that ran (``keras`` or
    ``openvino``: :mod:`sparkdl_magics.engines`).
    """

    spec: ModelSpec
    batch_size: int
    formatter: Formatter
    adapter: Adapter = image_batch
    threads: int = 1
    raw: bool = False
    derive: Optional[Callable[[LoadedModel], LoadedModel]] = None
    report_precision: bool = False
    report_engine: bool = False

    def __call__(self, batches: Iterable[Any]) -> Iterator[Any]:
        gpus = devices.pin_task_gpus()  # before TensorFlow starts in this worker
        model = get_model(self.spec, self.threads)
        reported = {}
        if self.report_precision:
            reported[PRECISION_FIELD] = model.precision
        if self.report_engine:
            reported[ENGINE_FIELD] = model.engine
        if self.derive is not None:
            model = get_derived(model, self.derive)
        batch_size = devices.device_batch_size(self.batch_size, bool(gpus))
        decode_threads = devices.task_cpus(fallback=self.threads)
        for batch in batches:
            items, decoder = self.adapter(batch, model)
            outputs, errors = run_decoded(model, items, batch_size, decoder, self.raw,
                                          decode_threads)
            frame = self.formatter(items, outputs, errors)
            yield frame.assign(**reported) if reported else frame

    def udf(self, return_type: str) -> Any:
        """This runner as a Spark scalar-iterator pandas UDF returning *return_type*
        (a struct's fields; with ``report_precision`` / ``report_engine`` a ``precision
        string`` / ``engine string`` field more).

        A bytes column arrives as Series batches, a struct column as DataFrame batches
        of its fields; the adapter tells them apart.
        """
        import pandas as pd
        from pyspark.sql.functions import pandas_udf
        runner = self
        if self.report_precision:
            return_type = f"{return_type}, {PRECISION_FIELD} string"
        if self.report_engine:
            return_type = f"{return_type}, {ENGINE_FIELD} string"

        def apply(batches):  # type hints set below: pandas is not imported at module level
            return runner(batches)
        apply.__annotations__ = {"batches": Iterator[pd.Series], "return": Iterator[pd.Series]}
        return pandas_udf(apply, return_type)


def check_batch_size(value: Any) -> int:
    """The ``batch_size`` of every API entry point, checked once (a whole number >= 1)."""
    return check_positive_int("batch_size", value)


def check_positive_int(name: str, value: Any) -> int:
    """Option *name* as a whole number of at least 1, or a one-line :class:`OptionError`."""
    from .options import check_number
    return check_number(name, value, int, lambda n: n >= 1, "expected a whole number",
                        "must be at least 1")


__all__ = ["ShippedFile", "ModelSpec", "LoadedModel", "get_model", "clear_cache", "build",
           "load_user_model", "preprocess_function", "get_derived", "predict_images",
           "decode_bytes",
           "decode_struct", "batch_items", "run_decoded", "BatchRunner", "image_batch",
           "PRECISION_FIELD", "ENGINE_FIELD",
           "check_batch_size", "check_positive_int", "set_tf_threads", "MAX_CACHED_MODELS"]
