"""The stop button: a SIGINT handler that stops only the scope's work (see the
package docstring)."""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, Iterator

from .scoped import Scoped


def inside_py4j(frame: Any) -> bool:
    """Whether the interrupted main thread is inside a Py4J call (waiting on the JVM)."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith("py4j"):
            return True
        frame = frame.f_back
    return False


def cancel_on_interrupt(scope: Scoped, patience: float = 5.0) -> None:
    """Cancel the scope's jobs; if the cell still waits on the JVM (not a Spark job, e.g.
    a long file listing), say how to stop at once."""
    scope.cancel()
    if not scope._stop.wait(patience):
        print("sparkdl_magics: still waiting for Spark after the interrupt; interrupt "
              "again to stop at once.", file=sys.stderr)


@contextlib.contextmanager
def scope_sigint(scope: Scoped) -> Iterator[None]:
    """PySpark's SIGINT handler cancels every job of the context; ours stops only this
    scope's work and remembers that the user asked to stop, see :func:`cell_scope`.

    Outside Py4J (or on Connect, or at the second press) it raises KeyboardInterrupt like
    Python's default handler; inside a Py4J call it cancels the scope's jobs from a helper
    thread, so the call returns with their failure (see the module docstring)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        again, scope.user_interrupted = scope.user_interrupted, True
        if again or scope.connect or not inside_py4j(frame):
            raise KeyboardInterrupt
        threading.Thread(target=cancel_on_interrupt, args=(scope,), daemon=True,
                         name="sparkdl_magics-interrupt").start()

    try:
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, handler)
    except (ValueError, OSError):  # not allowed here (embedded interpreters)
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(signal.SIGINT, previous)
