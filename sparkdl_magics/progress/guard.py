"""The errors a best-effort call into Spark (progress, tags, cancel) may raise."""
from __future__ import annotations

from typing import Tuple


def spark_errors() -> Tuple[type, ...]:
    """What a failed call into Spark raises: PySpark's errors (the Java exceptions it
    converts, Spark Connect's gRPC errors) and, on classic sessions, Py4J's own (a
    stopped JVM, a Java exception PySpark does not convert). Progress, tags and cancel
    are best-effort around the cell's work: these must never fail the cell."""
    from pyspark.errors import PySparkException
    try:
        from py4j.protocol import Py4JError
    except ImportError:  # a Spark Connect client without Py4J
        return (PySparkException,)
    return (PySparkException, Py4JError)
