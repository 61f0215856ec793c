"""Driver side: resolve a model + weights choice once, and ship the files to executors.

``resolve_spec(model, weights, layer, ..., spark)`` checks the user's choice, finds the
weights (Keras' cache for ``imagenet`` — downloading it once here when the network
allows —, a local weights file, seeded initial weights for ``none``, ``auto`` for
ImageNet when it can be had and else the untrained fallback with a warning, or a user
model file), ships what executors need with ``spark.addArtifacts(..., file=True)`` (Spark
Connect and classic alike; ``SparkContext.addFile`` only on old classic sessions) and
returns the small :class:`~sparkdl_magics.inference.ModelSpec` the workers build from.
Executors never download anything.
"""
from __future__ import annotations

from .tfimport import import_keras

import contextlib
import hashlib
import os
import re
import shutil
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Set, Tuple

from .errors import EnvironmentProblem, OptionError, did_you_mean
from .inference import ModelSpec, ShippedFile
from .scratch import scratch_dir
from .models import cached_weights_path, get_model_info, is_model_name, keras_cache_dir

MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")
PREPROCESS_MODES = ("none", "unit", "tf", "caffe", "torch")
#: Seed for the initial weights of ``weights='none'`` (same on every executor).
UNTRAINED_SEED = 0


@dataclass
class Resolved:
    """A resolved model choice: the spec for workers plus what to tell the user."""

    spec: ModelSpec
    model_name: str
    weights: str              # "imagenet", "none", or a file name
    feature_dim: int
    untrained: bool = False


# --------------------------------------------------------------------------- resolving

def resolve_spec(model: str = "InceptionV3", weights: Optional[str] = "imagenet",
                 layer: Optional[str] = None, preprocess: Optional[str] = None,
                 include_top: bool = False, unsafe: bool = False,
                 spark: Any = None) -> Resolved:
    """Check a model/weights choice, ship its files, and return the worker spec."""
    model = str(model or "").strip()
    if not model:
        raise OptionError("option 'model': give a model name (see %dlmodels) or a model file")
    model, weights = _fetched(model), _fetched(weights)
    if is_model_name(model):
        return _resolve_named(model, weights, layer, preprocess, include_top, spark)
    if _looks_like_path(model):
        return _resolve_user_model(model, layer, preprocess or "none", unsafe, spark)
    from .models import MODEL_NAMES
    raise OptionError(
        f"unknown model {model!r}{did_you_mean(model, MODEL_NAMES)} (valid: "
        f"{', '.join(MODEL_NAMES)}, or a .keras/.h5 file or SavedModel directory)")


def _fetched(choice: Any) -> Any:
    """A model or weights file in a bucket (``s3://…/m.keras``), copied once to the
    driver's staging folder, from where it ships like a local file."""
    from .storage import fetch_file, is_remote_url
    if not is_remote_url(choice):
        return choice
    folder = tempfile.mkdtemp(prefix="fetched-", dir=_staging_dir())
    return fetch_file(str(choice).strip(), folder)


def _looks_like_path(text: str) -> bool:
    return (os.sep in text or text.endswith(MODEL_FILE_SUFFIXES) or os.path.exists(text)
            or text.startswith("~"))


def _resolve_named(model: str, weights: Optional[str], layer: Optional[str],
                   preprocess: Optional[str], include_top: bool, spark: Any) -> Resolved:
    info = get_model_info(model)
    if layer:
        raise OptionError(f"option 'layer': only for user model files; {info.name} gives "
                          f"its pooled {info.features}-dim features")
    if preprocess not in (None, "model"):
        raise OptionError(f"option 'preprocess': {info.name} always uses "
                          f"keras.applications.{info.module}.preprocess_input")
    choice = "none" if weights is None else str(weights).strip()
    untrained = False
    if choice.lower() == "imagenet":
        path, label = imagenet_weights(info, include_top), "imagenet"
    elif choice.lower() == "auto":  # ImageNet if it can be had, else the untrained fallback
        try:
            path, label = imagenet_weights(info, include_top), "imagenet"
        except EnvironmentProblem as exc:
            import warnings
            # warn_explicit with no source line: one line in a notebook cell, not our code;
            # short: no URL or cache path (weights: imagenet gives those, in its error)
            reason = getattr(exc, "reason", None)
            if reason:  # "[Errno -2] Name or service not known": the words say it
                reason = re.sub(r"^\[Errno -?\d+\] ", "", reason)
            why = f"({reason})" if reason else str(exc)
            # (the model is named on the cell's own lines: the warning fits one line)
            warnings.warn_explicit(f"weights: auto -> UNTRAINED: no ImageNet weights {why}",
                                   UntrainedFallback, filename="sparkdl_magics", lineno=0,
                                   module="sparkdl_magics")
            path, label, untrained = untrained_weights(info, include_top), "none", True
    elif choice.lower() in ("none", "null", "random", ""):
        path, label, untrained = untrained_weights(info, include_top), "none", True
    else:
        path = os.path.abspath(os.path.expanduser(choice))
        if not os.path.isfile(path):
            raise OptionError(f"option 'weights': no weights file at {choice!r} "
                              "(valid: imagenet, none, or the path of a weights .h5 file)")
        label = os.path.basename(path)
    spec = ModelSpec(model=info.name, weights_file=ship(spark, path), input_size=info.input_size,
                     include_top=include_top)
    dim = 1000 if include_top else info.features
    return Resolved(spec, info.name, label, dim, untrained)


def imagenet_weights(info: Any, include_top: bool = False) -> str:
    """The ImageNet weights file, from Keras' cache (downloaded once here if possible)."""
    path = cached_weights_path(info, include_top)
    if path is not None:
        return path
    fname = info.weights_file(include_top)
    try:
        keras = import_keras()
        with _download_note_held():
            return keras.utils.get_file(fname, info.weights_url(include_top),
                                        cache_subdir="models")
    except Exception as exc:  # any download failure (DNS, HTTP, SSL, disk) gets the same advice
        problem = EnvironmentProblem(
            f"ImageNet weights for {info.name} are not in Keras' cache and could not be "
            f"downloaded ({_reason(exc)}); place {fname} (from "
            f"{info.weights_url(include_top)}) in {keras_cache_dir()}/, or use "
            "weights: none / a local weights file")
        problem.reason = _reason(exc)  # for the one-line weights: auto warning
        raise problem from None


class _HeldOutput:
    """Stdout that holds back Keras' first line (``Downloading data from <url>``) until
    the download shows progress; :func:`_download_note_held` drops it if none came."""

    def __init__(self, out: Any):
        self._out = out
        self._held: Optional[str] = ""

    def write(self, text: str) -> int:
        if self._held is None:
            return self._out.write(text)
        self._held += text
        first, newline, rest = self._held.partition("\n")
        if newline and rest:  # something after the note: the download is under way
            self.release()
        return len(text)

    def release(self) -> None:
        held, self._held = self._held, None
        if held:
            self._out.write(held)

    def flush(self) -> None:
        if self._held is None:
            self._out.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno: the real stream's
        return getattr(self._out, name)


@contextlib.contextmanager
def _download_note_held() -> Iterator[None]:
    """Offline, Keras prints ``Downloading data from <url>`` and fails at once: the note is
    noise before the one-line fallback warning. Online, it appears with the progress bar."""
    held = _HeldOutput(sys.stdout)
    with contextlib.redirect_stdout(held):
        try:
            yield
        except BaseException:
            held._held = None  # failed: the note announced nothing
            raise
    held.release()  # done without progress output (a tiny file): show what Keras said


def _reason(exc: BaseException) -> str:
    """The useful tail of a download error (Keras wraps the socket error in its text)."""
    text = " ".join(str(exc).split()).rsplit(" -- ", 1)[-1] or type(exc).__name__
    return text if len(text) <= 160 else "…" + text[-159:]


class UntrainedFallback(UserWarning):
    """``weights: auto`` could not get ImageNet weights and used untrained ones."""


_init_lock = threading.Lock()


def untrained_weights(info: Any, include_top: bool = False) -> str:
    """Seeded initial weights, saved once so every executor gets the same ones."""
    path = os.path.join(_staging_dir(), f"untrained-{info.name}-top{int(include_top)}"
                                         f"-seed{UNTRAINED_SEED}.weights.h5")
    with _init_lock:
        if not os.path.isfile(path):
            keras = import_keras()
            keras.utils.set_random_seed(UNTRAINED_SEED)
            w, h = info.input_size
            net = info.constructor()(include_top=include_top, weights=None,
                                     input_shape=(h, w, 3), pooling=None if include_top else "avg")
            tmp = path[: -len(".weights.h5")] + f".tmp{os.getpid()}.weights.h5"
            net.save_weights(tmp)
            os.replace(tmp, path)
            del net
            keras.backend.clear_session()
    return path


def _resolve_user_model(model: str, layer: Optional[str], preprocess: str, unsafe: bool,
                        spark: Any) -> Resolved:
    path = os.path.abspath(os.path.expanduser(model))
    if preprocess not in PREPROCESS_MODES:
        from .errors import unknown_choice
        raise unknown_choice("preprocess", preprocess, PREPROCESS_MODES)
    if not os.path.exists(path):
        raise OptionError(f"option 'model': no model file at {model!r}")
    is_dir = os.path.isdir(path)
    if is_dir and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise OptionError(f"option 'model': {model!r} is a folder but not a SavedModel "
                          "(no saved_model.pb)")
    if not is_dir and not path.endswith(MODEL_FILE_SUFFIXES):
        raise OptionError(f"option 'model': {model!r} is not a Keras model file "
                          f"(expected {', '.join(MODEL_FILE_SUFFIXES)} or a SavedModel folder)")
    if is_dir and layer:
        raise OptionError("option 'layer': a SavedModel cannot be cut at a layer; "
                          "save the model as .keras to choose a layer")
    input_size, dim, layer = inspect_user_model(path, layer, not unsafe)
    spec = ModelSpec(model="", model_file=ship(spark, path), layer=layer, input_size=input_size,
                     preprocess=preprocess, safe_mode=not unsafe)
    return Resolved(spec, os.path.basename(path.rstrip(os.sep)), "from model file", dim)


def inspect_user_model(path: str, layer: Optional[str], safe_mode: bool
                       ) -> Tuple[Tuple[int, int], int, Optional[str]]:
    """Load a user model once on the driver: (input (w, h), feature dim, cut layer)."""
    keras = import_keras()
    if os.path.isdir(path):
        try:
            import_keras()
            import tensorflow as tf
            fn = tf.saved_model.load(path).signatures["serving_default"]
            spec_in = list(fn.structured_input_signature[1].values())[0]
            spec_out = list(fn.structured_outputs.values())[0]
        except Exception as exc:  # TF raises many types for a bad folder: all mean "not one"
            raise OptionError(f"option 'model': cannot read SavedModel {path!r} "
                              f"({type(exc).__name__}: {str(exc)[:120]})") from None
        return _image_size(spec_in.shape, path), int(spec_out.shape[-1]), None
    try:
        net = keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise OptionError(f"option 'model': {os.path.basename(path)} contains Python "
                              "code (a Lambda layer); load it only if you trust it, with "
                              "unsafe: true") from None
        raise OptionError(f"option 'model': cannot load {path!r} as a Keras model "
                          f"({str(exc).splitlines()[0][:160]})") from None
    except Exception as exc:  # h5py/zip/Keras errors of a broken file: one line naming it
        raise OptionError(f"option 'model': cannot load {path!r} as a Keras model "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    names = [lay.name for lay in net.layers]
    if layer is None:
        layer = default_cut_layer(net)
    elif layer not in names:
        raise OptionError(f"option 'layer': no layer {layer!r} in {os.path.basename(path)}"
                          f"{did_you_mean(layer, names)} (layers: {', '.join(names[-8:])}"
                          f"{', ...' if len(names) > 8 else ''})")
    output = net.get_layer(layer).output if layer else net.outputs[0]
    size = _image_size(net.inputs[0].shape, path)
    dim = int(output.shape[-1])
    del net
    return size, dim, layer


def default_cut_layer(net: Any) -> Optional[str]:
    """The penultimate (pooled) layer for a classifier ending in Dense; else the output."""
    layers = [lay for lay in net.layers if type(lay).__name__ != "InputLayer"]
    if len(layers) >= 2 and type(layers[-1]).__name__ == "Dense":
        return layers[-2].name
    return None


def _image_size(shape: Any, path: str) -> Tuple[int, int]:
    dims = list(shape)
    if len(dims) != 4 or dims[1] is None or dims[2] is None or dims[3] not in (3, None):
        raise OptionError(f"option 'model': {os.path.basename(path)} does not take fixed-size "
                          f"RGB images (input shape {tuple(dims)}; expected (None, h, w, 3))")
    return int(dims[2]), int(dims[1])


# --------------------------------------------------------------------------- shipping

_staging: Optional[str] = None
_shipped: Set[Tuple[str, str]] = set()
_ship_lock = threading.Lock()


def _staging_dir() -> str:
    """This process's folder of files shipped to executors (copies of models): a scratch
    folder, removed when the process exits (:mod:`sparkdl_magics.scratch`)."""
    global _staging
    if _staging is None or not os.path.isdir(_staging):
        _staging = scratch_dir("ship-")
    return _staging


def ship(spark: Any, path: str) -> ShippedFile:
    """Make *path* (a file or a SavedModel folder) available to every executor.

    The file is staged under a name keyed by its path, size and mtime (so a changed
    file ships anew and names never clash) and added once per session.
    """
    path = os.path.abspath(path)
    st = os.stat(path)
    key = hashlib.sha1(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    base = os.path.basename(path.rstrip(os.sep))
    archive = os.path.isdir(path)
    name = f"sparkdl-{key}-{base}" + (".zip" if archive else "")
    staged = os.path.join(_staging_dir(), name)
    with _ship_lock:
        if not os.path.exists(staged):
            _stage(path, staged, archive)
        if spark is not None:
            session_key = (_session_id(spark), name)
            if session_key not in _shipped:
                _add_to_session(spark, staged)
                _shipped.add(session_key)
    return ShippedFile(name=name, driver_path=staged, archive=archive)


def _stage(path: str, staged: str, archive: bool) -> None:
    tmp = f"{staged}.tmp{os.getpid()}"
    if archive:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for root, _dirs, files in os.walk(path):
                for f in files:
                    full = os.path.join(root, f)
                    zf.write(full, os.path.relpath(full, path))
    else:
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
    os.replace(tmp, staged)


def _session_id(spark: Any) -> str:
    sid = getattr(spark, "session_id", None)
    if isinstance(sid, str):
        return sid
    try:
        from .session import is_connect
        if not is_connect(spark):
            return "classic-" + spark.sparkContext.applicationId  # classic only
    except Exception:  # noqa: BLE001 - a stopped context has no id; fall back to the object's
        pass
    return str(id(spark))


def _add_to_session(spark: Any, staged: str) -> None:
    from .session import is_connect
    try:
        spark.addArtifacts(staged, file=True)
        return
    except Exception as exc:
        if is_connect(spark):
            if "already exists" in str(exc).lower():
                return
            raise EnvironmentProblem(
                f"could not ship {os.path.basename(staged)} to the Spark Connect server "
                f"({str(exc).splitlines()[0][:160]})") from None
    spark.sparkContext.addFile(staged)  # classic sessions without addArtifacts (Spark 3.5)


__all__ = ["Resolved", "resolve_spec", "UntrainedFallback", "imagenet_weights", "untrained_weights", "ship",
           "inspect_user_model", "default_cut_layer", "PREPROCESS_MODES"]
