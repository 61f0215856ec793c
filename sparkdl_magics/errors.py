"""User-facing errors, and turning Spark/JVM failures into one readable line.

The library raises :class:`SparkDLError` subclasses for anything the user can fix
(bad option, missing path, empty folder). The magics show those as a single line;
Spark's own errors (Py4J, Spark Connect gRPC, AnalysisException) are shortened to
their error class and first message line, with the full trace kept for ``--debug``.
"""
from __future__ import annotations

import contextlib
import difflib
import re
from typing import Iterable, Iterator, Optional, Sequence


class SparkDLError(Exception):
    """Base class of every error the user can act on."""


class OptionError(SparkDLError, ValueError):
    """An option name or value is not valid."""


class DataError(SparkDLError, ValueError):
    """The input data cannot be used (missing path, no images, one class only, ...)."""


class EnvironmentProblem(SparkDLError, RuntimeError):
    """Something outside the package is missing (Java, TensorFlow, weights file, ...)."""


class ServerNotAnswering(EnvironmentProblem, ConnectionError):
    """The Spark Connect server a session talks to does not answer (down, wrong URL)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' — did you mean 'x'?' suffix when *word* is close to one of *choices*."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        return f" — did you mean '{lowered[word.lower()]}'?"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
        close = [lowered[c] for c in close]
    return f" — did you mean '{close[0]}'?" if close else ""


def unknown_choice(what: str, value: object, choices: Iterable[str]) -> OptionError:
    """The standard error for a value outside a fixed set of choices."""
    choices = list(choices)
    return OptionError(
        f"unknown {what} {value!r}{did_you_mean(str(value), choices)} "
        f"(valid: {', '.join(choices)})"
    )


def _first_line(text: str) -> str:
    for line in str(text).strip().splitlines():
        line = line.strip()
        if line:
            return line
    return ""


def spark_error_condition(exc: BaseException) -> Optional[str]:
    """Spark's error class of *exc* (``PATH_NOT_FOUND``, ...), or None for other errors."""
    try:
        from pyspark.errors import PySparkException
    except ImportError:  # pragma: no cover - pyspark is a dependency
        return None
    if not isinstance(exc, PySparkException):
        return None
    return exc.getCondition() if hasattr(exc, "getCondition") else exc.getErrorClass()


@contextlib.contextmanager
def missing_path_errors(paths: Sequence[str], option: str = "path") -> Iterator[None]:
    """Turn Spark's 'path does not exist' into one line naming the option."""
    try:
        yield
    except Exception as exc:
        if spark_error_condition(exc) != "PATH_NOT_FOUND":
            raise
        match = re.search(r"Path does not exist: (\S+?)\.?(?:\s|$)", str(exc))
        where = match.group(1) if match else ", ".join(paths)
        raise DataError(f"option '{option}': {where} does not exist") from None


def spark_error_summary(exc: BaseException) -> Optional[str]:
    """A one-line description of a Spark/JVM error, or None if *exc* is not one."""
    try:
        from pyspark.errors import PySparkException
    except ImportError:  # pragma: no cover - pyspark is a dependency
        PySparkException = ()  # type: ignore[assignment]
    if PySparkException and isinstance(exc, PySparkException):
        cls = spark_error_condition(exc)
        connect = _connect_summary(exc, cls)
        if connect:
            return connect
        msg = (exc.getMessage() if hasattr(exc, "getMessage") else str(exc)).strip()
        if cls and msg.startswith(f"[{cls}]"):
            msg = msg[len(cls) + 2:].strip()
        prefix = f"Spark error [{cls}]" if cls else "Spark error"
        return f"{prefix}: {_python_cause(msg)}"
    if type(exc).__name__ == "Py4JJavaError":
        java = getattr(exc, "java_exception", None)
        text = str(java) if java is not None else str(exc)
        if "stopped SparkContext" in text:
            return ("this result belongs to a Spark session that was stopped: run the cell "
                    "that made it again (e.g. %%dlload, %%featurize)")
        return f"Spark (JVM) error: {_python_cause(text)}"
    if type(exc).__name__ == "Py4JNetworkError" or "Py4JNetworkError" in repr(type(exc).__mro__):
        return "the Spark driver is not reachable (its JVM stopped?): run %dlspark to attach again"
    return None


def _connect_summary(exc: BaseException, cls: Optional[str]) -> Optional[str]:
    """Spark Connect's errors for a server that is gone, in words the user can act on."""
    if type(exc).__module__ != "pyspark.errors.exceptions.connect":
        return None
    if cls == "NO_ACTIVE_SESSION":  # the client of a stopped session or restarted server
        return ("this result belongs to a Spark Connect session that was closed (stopped, "
                "or its server restarted): run the cell that made it again (e.g. %%dlload)")
    text = str(exc)
    if "StatusCode.UNAVAILABLE" in text:
        found = re.search(r"(?:ipv4:|ipv6:|dns:)?(\[[^\]]+\]|[\w.-]+):(\d+): ", text)
        where = f" at sc://{found.group(1)}:{found.group(2)}" if found else ""
        return (f"the Spark Connect server{where} is not answering: start it and run "
                "%dlspark --remote again; results made on it are gone")
    return None


def grpc_reason(exc: BaseException) -> str:
    """A few words on why a Connect call failed (the gRPC status, else the first line)."""
    text = str(exc)
    found = re.search(r"status = StatusCode\.(\w+)", text)
    if found:
        detail = re.search(r'details = "([^"]*)"', text)
        return found.group(1) + (f": {detail.group(1)}" if detail else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _python_cause(message: str) -> str:
    """One line for a message that may carry a Python worker's traceback: the text before
    it, then the exception the worker raised (e.g. a module missing on the workers)."""
    marker = "Traceback (most recent call last)"
    if marker not in message:
        return _first_line(message)
    head = _first_line(message.split(marker)[0]).rstrip(" :.")
    last_trace = message.rsplit(marker, 1)[1].splitlines()[1:]  # after the chained ones
    raised = next((line.strip() for line in last_trace
                   if line.strip() and not line.startswith((" ", "\t"))), "")
    if not raised:
        return head or _first_line(message)
    return f"{head}: {raised}" if head else raised


def user_message(exc: BaseException) -> Optional[str]:
    """The single line shown to a notebook user for *exc*, or None for a real bug."""
    if isinstance(exc, SparkDLError):
        return str(exc)
    return spark_error_summary(exc)
