"""Import Keras/TensorFlow without TensorFlow's C++ start-up notes in notebook cells.

TensorFlow 2.x prints oneDNN and CPU-feature notes (and an absl warning) straight to
file descriptor 2 at import, ignoring ``TF_CPP_MIN_LOG_LEVEL``; in a notebook they show
up in the cell of the kernel and of every Spark Python worker. The first import goes
through :func:`import_keras`, which catches fd 2 for its duration, drops those known
notes, and writes anything else back to stderr, so real errors are never hidden.

When Keras or its backend cannot be imported (TensorFlow missing in this interpreter,
e.g. a Spark worker's Python, or a broken install), :func:`import_keras` raises an
:class:`~sparkdl_magics.errors.EnvironmentProblem` whose one line names what to install;
the magics show it as that one line.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import tempfile
import threading
from typing import Any, Iterator

from .errors import EnvironmentProblem

_NOISE = re.compile(
    r"oneDNN custom operations are on|You may see slightly different numerical results"
    r"|All log messages before absl::InitializeLog|cpu_feature_guard|"
    r"This TensorFlow binary is optimized|To enable the following instructions|"
    r"rebuild TensorFlow with the appropriate compiler flags"
    r"|Could not find cuda drivers on your machine, GPU will not be used")
#: PyPI's tensorflow wheel probes for CUDA; on a machine without an NVIDIA driver (the
#: note above says so) its failed cuInit is expected, and dropped. With a driver it is
#: a real problem and stays.
_NO_DRIVER_NOISE = re.compile(r"failed call to cuInit")
_NO_DRIVER = "Could not find cuda drivers"
_lock = threading.Lock()


#: What to install when the import stops at a missing top-level module.
_INSTALL = {
    "tensorflow": 'pip install "tensorflow>=2.16,<3" (with an NVIDIA GPU: '
                  'pip install "tensorflow[and-cuda]>=2.16,<3")',
    "keras": 'pip install "keras>=3.3,<4"',
    "jax": "pip install jax (or unset KERAS_BACKEND to use TensorFlow)",
    "torch": "pip install torch (or unset KERAS_BACKEND to use TensorFlow)",
}
_NAMES = {"tensorflow": "TensorFlow (Keras' backend)", "keras": "Keras",
          "jax": "JAX (KERAS_BACKEND)", "torch": "PyTorch (KERAS_BACKEND)"}


def import_keras() -> Any:
    """``import keras`` (TensorFlow backend) with the start-up notes filtered out.

    Raises :class:`~sparkdl_magics.errors.EnvironmentProblem` (one line: what to
    install) when Keras or its backend cannot be imported.
    """
    keras = sys.modules.get("keras")
    if keras is not None:
        return keras
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _lock, _interrupts_deferred(), _filtered_stderr():
            import keras
            _probe_devices(keras)
    except ImportError as exc:
        where = sys.executable or "this Python"
        missing = (exc.name or "").partition(".")[0]
        if isinstance(exc, ModuleNotFoundError) and missing in _INSTALL \
                and not _installed(missing):
            raise EnvironmentProblem(f"{_NAMES[missing]} is not installed in {where}: "
                                     f"{_INSTALL[missing]}") from None
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise EnvironmentProblem(
            f"Keras/TensorFlow is installed in {where} but failed to import "
            f"({type(exc).__name__}: {first}): run `pip check` there, or reinstall: "
            f"{_INSTALL['tensorflow']}") from exc
    return keras


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """An interrupt (the notebook's stop button) during TensorFlow's first import waits
    until the import ends, then stops the cell: an import cut in half leaves TensorFlow
    unimportable ("tf.RaggedTensorSpec has already been registered") until the kernel
    restarts. Only the main thread receives signals, so only there is this needed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    import signal
    pending = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def _probe_devices(keras: Any) -> None:
    """List TensorFlow's GPUs now, so that its CUDA probe prints inside the filter.

    Listing physical devices does not start TensorFlow's runtime: thread pools and
    visible devices can still be configured afterwards.
    """
    if keras.backend.backend() != "tensorflow":
        return
    with contextlib.suppress(Exception):
        import tensorflow as tf
        tf.config.list_physical_devices("GPU")


def _installed(module: str) -> bool:
    """Whether *module* can be found at all (a broken install can, a missing one not)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    try:
        fd = sys.stderr.fileno() if hasattr(sys.stderr, "fileno") else 2
    except (OSError, ValueError):  # stderr replaced by an object without a descriptor
        fd = 2
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            no_driver = _NO_DRIVER in text
            kept = [line for line in text.splitlines(True) if not _NOISE.search(line)
                    and not (no_driver and _NO_DRIVER_NOISE.search(line))]
            if kept:
                os.write(2 if fd == 2 else fd, "".join(kept).encode())
