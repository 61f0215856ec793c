"""Import Keras/TensorFlow without TensorFlow's C++ start-up notes in notebook cells.

TensorFlow 2.x prints oneDNN and CPU-feature notes (and an absl warning) straight to
file descriptor 2 at import, ignoring ``TF_CPP_MIN_LOG_LEVEL``; in a notebook they show
up in the cell of the kernel and of every Spark Python worker. The first import goes
through :func:`import_keras`, which catches fd 2 for its duration, drops those known
notes, and writes anything else back to stderr, so real errors are never hidden.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Any, Iterator

_NOISE = re.compile(
    r"oneDNN custom operations are on|You may see slightly different numerical results"
    r"|All log messages before absl::InitializeLog|cpu_feature_guard|"
    r"This TensorFlow binary is optimized|To enable the following instructions|"
    r"rebuild TensorFlow with the appropriate compiler flags")
_lock = threading.Lock()


def import_keras() -> Any:
    """``import keras`` (TensorFlow backend) with the start-up notes filtered out."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _lock, _filtered_stderr():
        import keras
    return keras


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
            kept = [line for line in capture.read().decode(errors="replace").splitlines(True)
                    if not _NOISE.search(line)]
            if kept:
                os.write(2 if fd == 2 else fd, "".join(kept).encode())
