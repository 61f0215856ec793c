"""What every magic does around its own work: parse → call → store → show.

A magic module provides ``SPEC`` (a :class:`~sparkdl_magics.options.MagicSpec`) and
``run(call, ctx)``. This runner parses the line and body against the spec (with
``%config`` defaults), gives the module a :class:`Context`, turns user-fixable and
Spark errors into one ``UsageError`` line (full trace with ``--debug``), and stores
results in the user namespace only when the whole call succeeded.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, Optional

from IPython.core.error import UsageError

from ..errors import DataError, user_message
from ..options import MagicCall, MagicSpec


class Context:
    """What a magic's ``run`` may touch: the user namespace and the Spark session."""

    def __init__(self, shell: Any, spec: MagicSpec, call: MagicCall, magics: Any = None):
        self.shell = shell
        self.spec = spec
        self.call = call
        self.magics = magics
        self._pending: Dict[str, Any] = {}

    def lookup(self, name: str, expected: Optional[type] = None, what: str = "") -> Any:
        """A user variable, with a clear error when missing or of the wrong kind."""
        ns = self.shell.user_ns
        if name not in ns:
            raise DataError(f"no variable named {name!r} in the notebook"
                            + (f" (expected {what})" if what else ""))
        value = ns[name]
        if expected is not None and not isinstance(value, expected):
            raise DataError(f"{name!r} is a {type(value).__name__}, expected {what or expected.__name__}")
        return value

    def store(self, name: str, value: Any) -> None:
        """Queue *value* for ``name``; written only if the whole magic succeeds."""
        self._pending[name] = value

    def spark(self) -> Any:
        from ..session import get_spark
        return get_spark()

    def progress_scope(self, label: str, **options: Any) -> Any:
        """Job progress and cancellation for this cell's Spark work (options: see
        :func:`sparkdl_magics.progress.cell_scope`)."""
        from .. import progress
        return progress.cell_scope(self.spark(), label, **options)

    def announce_run(self, result: Any) -> None:
        """The one line naming the MLflow run *result* was logged to, if any."""
        run_id = getattr(result, "run_id", None)
        if run_id:
            from ..tracking import run_line
            print(run_line(run_id))

    def commit(self) -> None:
        self.shell.user_ns.update(self._pending)
        self._pending.clear()


class MagicError(UsageError):
    """A magic's one-line error that still counts as a failed cell.

    IPython prints a plain ``UsageError`` to stderr and reports the cell as run, so
    notebook runners (nbval, nbclient, papermill) would not notice the failure. A
    subclass goes through the normal error path, and ``_render_traceback_`` keeps what
    the user sees to the one line.
    """

    def _render_traceback_(self) -> list:
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


def run_magic(module: Any, shell: Any, line: str, cell: Optional[str] = None,
              magics: Any = None) -> Any:
    """Run one magic module end to end; see the module docstring."""
    spec: MagicSpec = module.SPEC
    debug = bool(getattr(magics, "debug", False))
    defaults = getattr(magics, spec.name, None) if magics is not None else None
    call: Optional[MagicCall] = None
    try:
        call = spec.parse(line, cell, defaults=defaults)
        debug = debug or call.debug
        ctx = Context(shell, spec, call, magics)
        with _interrupt_message(spec):
            result = module.run(call, ctx)
        ctx.commit()
        return result
    except UsageError:
        raise
    except Exception as exc:  # shorten what the user can act on; let real bugs show
        if debug:
            raise
        message = user_message(exc)
        if message is None:
            raise
        import sparkdl_magics
        sparkdl_magics.last_error = exc
        hint = "" if not _is_spark_error(exc) else " (run again with --debug for the full trace)"
        raise MagicError(f"{_prefix(spec)}{spec.name}: {message}{hint}") from None


def _prefix(spec: MagicSpec) -> str:
    return "%%" if spec.is_cell else "%"


def _is_spark_error(exc: BaseException) -> bool:
    from ..errors import SparkDLError
    return not isinstance(exc, SparkDLError)


class CellInterrupted(KeyboardInterrupt):
    """The user stopped a magic's cell: one line for the user, still an interrupt.

    Re-raising the plain ``KeyboardInterrupt`` would print a ~40-line traceback through
    the magic, the runner and the progress scope, none of it the user's code. IPython
    renders an exception that has ``_render_traceback_`` with that method, so the cell
    shows the one line; it is still a ``KeyboardInterrupt`` (``except KeyboardInterrupt``
    catches it) and the notebook's error output says ``ename: KeyboardInterrupt``
    (ipykernel reports the class's ``__name__``), so nbclient/nbval and papermill see an
    interrupted cell.
    """

    def _render_traceback_(self) -> list:
        return [f"\x1b[0;31m{self}\x1b[0m"]


CellInterrupted.__name__ = "KeyboardInterrupt"  # what the notebook's error output names


@contextlib.contextmanager
def _interrupt_message(spec: MagicSpec) -> Iterator[None]:
    try:
        yield
    except CellInterrupted:
        raise
    except KeyboardInterrupt:
        raise CellInterrupted(f"{_prefix(spec)}{spec.name}: interrupted; this cell's Spark jobs "
                              "were cancelled and no result was stored.") from None
