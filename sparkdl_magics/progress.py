"""Per-cell Spark job scope: a tag on every job the cell starts, cancelled on interrupt.

Tags (``spark.addTag`` / ``spark.interruptTag``) work the same for classic and Spark
Connect sessions, so one mechanism cancels exactly this cell's jobs either way.
"""
from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any, Iterator


@dataclass
class CellScope:
    tag: str
    label: str


@contextlib.contextmanager
def cell_scope(spark: Any, label: str) -> Iterator[CellScope]:
    """Tag the cell's Spark jobs; on KeyboardInterrupt cancel them and re-raise."""
    scope = CellScope(tag=f"sparkdl_magics-{label}-{uuid.uuid4().hex[:12]}", label=label)
    spark.addTag(scope.tag)
    try:
        yield scope
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            spark.interruptTag(scope.tag)
        raise
    finally:
        with contextlib.suppress(Exception):
            spark.removeTag(scope.tag)
