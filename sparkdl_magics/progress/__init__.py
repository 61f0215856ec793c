"""Per-cell Spark work: a tag on every job, live progress fed by Spark, cancel on interrupt.

:func:`cell_scope` is what every magic (through ``ctx.progress_scope``) and the widget
app wrap their Spark work in. Inside it:

- **Cancellation.** Every job the cell starts carries a job group (classic sessions) or
  a tag (``spark.addTag``, Spark Connect; not used on classic sessions because of a
  Spark 4 issue, see :func:`cell_scope`). A KeyboardInterrupt (the
  notebook's stop button) cancels exactly those jobs and re-raises; other threads' jobs
  keep running. ``scope.cancel()`` does the same from any thread (the app's Cancel).
  PySpark's own SIGINT handler cancels *all* jobs of the context, so the scope swaps in
  its own while it runs on the main thread. When the interrupt lands inside a Py4J call
  (the cell waiting on a job), the handler does not raise there: Py4J's clean-up for a
  KeyboardInterrupt shuts down other threads' gateway connections too, failing their
  queries. It cancels the cell's job group (and any job it would start next) from a
  helper thread instead; the waiting call then fails and the scope raises
  KeyboardInterrupt. A second interrupt raises at once.
- **Progress, from Spark itself.** Classic sessions: the status tracker
  (``sparkContext.statusTracker()``) is polled for the cell's job group from one
  background thread. Spark Connect: ``spark.registerProgressHandler`` delivers the
  server's stage progress (the handler is called with keyword arguments ``stages``,
  ``inflight_tasks``, ``operation_id``, ``done``); only calls made on the scope's own
  thread count. Either way the result is a :class:`ProgressSnapshot` (plain data:
  stages, tasks done/total, failed tasks, rates, ETA) that a view renders.
- **Display.** ``widget`` (an ipywidgets bar, in a kernel with comm support), ``text``
  (throttled lines on stderr plus one summary line: terminal IPython, logs) or
  ``none``. The default ``auto`` picks widget inside a Jupyter kernel and text
  elsewhere; set ``SPARKDL_PROGRESS=widget|text|none|auto`` or call :func:`configure`.

The ticker thread stops when the scope ends, whatever way it ends.

The package, by job: :mod:`.config` (mode and timings), :mod:`.snapshot` (the data a view
renders), :mod:`.classic` and :mod:`.connect` (the two sources), :mod:`.interrupt` (the
stop button), :mod:`.scope` (the cell's scope and its declared work), :mod:`.guard`.
"""
from __future__ import annotations

from typing import Optional

from .config import MODES, Settings, configure, resolve_mode, settings
from .scope import CellScope, cell_scope, current_scope, make_view, work
from .snapshot import ProgressSnapshot, StageProgress, Work

#: The snapshot of the most recently finished scope (for inspection after a cell; set
#: by :meth:`CellScope._finish`).
last: Optional[ProgressSnapshot] = None

__all__ = ["MODES", "Settings", "configure", "resolve_mode", "settings", "CellScope",
           "cell_scope", "current_scope", "make_view", "work", "ProgressSnapshot",
           "StageProgress", "Work", "last"]
