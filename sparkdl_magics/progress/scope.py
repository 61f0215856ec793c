"""One cell's Spark work: its tag, its progress source and view, its cancel; the
:func:`work` parts it counts in images."""
from __future__ import annotations

import contextlib
import sys
import threading
import time
import uuid
from typing import Any, Iterator, List, Optional

from .classic import ClassicSource
from .config import resolve_mode, settings
from .connect import ConnectSource
from .guard import spark_errors
from .interrupt import scope_sigint
from .snapshot import ProgressSnapshot, Work


class CellScope:
    """One cell's (or one app step's) Spark work: its tag, its progress, its cancel."""

    def __init__(self, spark: Any, label: str, mode: str = "none", view: Any = None):
        from ..session import is_connect
        self.spark = spark
        self.label = label
        self.tag = f"sparkdl_magics-{_tag_safe(label)}-{uuid.uuid4().hex[:12]}"
        self.connect = is_connect(spark)
        self.mode = mode
        self.view = view
        self.cancelled = threading.Event()
        self.interrupted: List[str] = []  # operation ids interruptTag reported (Connect)
        self.started = time.perf_counter()
        self.items: Optional[int] = None
        self.unit = "rows"
        self.works: List[Work] = []  # declared parts of the work, in images (see work())
        self.active_work: Optional[Work] = None
        self._work_started: Optional[float] = None
        self._items_done = 0  # the most images ever reported done: never decreases
        self._counting = False
        self._source: Any = None
        self._thread: Optional[threading.Thread] = None
        self.user_interrupted = False  # set by the SIGINT handler (the stop button)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._status = "running"
        self._finished_at: Optional[float] = None

    # -- public
    def set_items(self, total: Optional[int], unit: str = "rows", counted: bool = False) -> None:
        """Declare how many rows/images the cell's work covers. *counted*: the code
        declares its parts with :func:`work`, and the bar shows those images done of
        *total* from now on (see :class:`Work`); else only a rate is estimated."""
        self.items = None if total is None else int(total)
        self.unit = unit
        self._counting = bool(counted) and self.items is not None

    def cancel(self) -> None:
        """Cancel this scope's Spark jobs; safe from any thread (the app's Cancel button)."""
        self.cancelled.set()
        if not self.connect:
            with contextlib.suppress(*spark_errors()):
                # Also the jobs the cell's code would start after this one fails.
                self.spark.sparkContext._jsc.sc().cancelJobGroupAndFutureJobs(  # classic only
                    self.tag, "cancelled by the user (sparkdl_magics)")
        else:
            with contextlib.suppress(*spark_errors()):
                self.interrupted.extend(self.spark.interruptTag(self.tag) or [])

    def snapshot(self) -> ProgressSnapshot:
        snap = ProgressSnapshot(label=self.label, source=self._source.name if self._source else "none",
                                items=self.items, unit=self.unit, status=self._status)
        end = self._finished_at if self._finished_at is not None else time.perf_counter()
        snap.elapsed = end - self.started
        if self._source is not None:
            with self._lock:
                self._source.fill(snap)
        work = self.active_work
        snap.description = work.description if work is not None else self.label
        if self.items and self._counting:
            with self._lock:
                self._items_done = min(self.items, max(self._items_done,
                                                       sum(w.done for w in self.works)))
            snap.items_done = self._items_done
            if self._work_started is not None:
                snap.work_elapsed = end - self._work_started
        return snap

    # -- declared work (used by work())
    def _begin_work(self, work: Work) -> Optional[Work]:
        previous, self.active_work = self.active_work, work
        with self._lock:
            self.works.append(work)
        if self._work_started is None:
            self._work_started = time.perf_counter()
        return previous

    def _end_work(self, work: Work, previous: Optional[Work], ok: bool) -> None:
        if self._source is not None:
            with self._lock:
                with contextlib.suppress(*spark_errors()):
                    self._source.poll()
        if ok:  # every image of it went through the model (or came from a cache)
            work.done = work.items
        work.finished = True
        self.active_work = previous

    @property
    def progress(self) -> ProgressSnapshot:
        return self.snapshot()

    # -- lifecycle (used by cell_scope)
    def _start(self) -> None:
        if self.mode == "none" and self.view is None:
            return
        try:
            self._source = (ConnectSource(self.spark, self) if self.connect
                            else ClassicSource(self.spark, self.tag, self))
        except spark_errors():  # progress is a nicety: never fail the cell for it
            self._source = None
        self._thread = threading.Thread(target=self._tick_loop, name=f"sparkdl-progress-{self.tag}",
                                        daemon=True)
        self._thread.start()

    def _tick_loop(self) -> None:
        while not self._stop.wait(settings.poll_interval):
            self._refresh()

    def _refresh(self) -> None:
        if self._source is not None:
            with self._lock:
                with contextlib.suppress(*spark_errors()):
                    self._source.poll()
        if self.view is not None:
            # Broad: a view is display code (maybe the caller's, or a frontend's comm);
            # its failure must neither stop this ticker nor fail the cell.
            with contextlib.suppress(Exception):
                self.view.update(self.snapshot())

    def _finish(self, status: str) -> ProgressSnapshot:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._status = "cancelled" if self.cancelled.is_set() and status != "done" else status
        self._finished_at = time.perf_counter()
        if self._source is not None:
            with self._lock:
                with contextlib.suppress(*spark_errors()):
                    self._source.finish(succeeded=self._status == "done")
        snap = self.snapshot()
        if self.view is not None:
            with contextlib.suppress(Exception):  # a view's failure: see _refresh
                self.view.finish(snap)
        _package().last = snap
        return snap


def _package():
    """The progress package, whose ``last`` holds the latest finished scope's snapshot."""
    return sys.modules[__name__.rpartition(".")[0]]


_local = threading.local()


def current_scope() -> Optional[CellScope]:
    """The innermost :func:`cell_scope` running on this thread, or None."""
    stack = getattr(_local, "scopes", None)
    return stack[-1] if stack else None


@contextlib.contextmanager
def work(spark: Any, description: str, items: Optional[int] = None,
         tasks: Optional[int] = None, shuffled: bool = False,
         unit: str = "images") -> Iterator[Optional[Work]]:
    """Run a part of the cell's work that the user counts in images (featurizing one
    split, predicting a preview): its Spark jobs carry *description* (classic:
    ``spark.job.description``, what the Spark UI shows; every view shows it instead of
    Spark's call sites) and, inside a :func:`cell_scope`, the bar counts its *items*
    done at its inference stage (see :class:`Work`). Outside a scope only the
    description is set."""
    from ..session import is_connect
    scope = current_scope()
    classic = not is_connect(spark)
    item = Work(key=f"{scope.tag if scope else 'sparkdl_magics'}-w{uuid.uuid4().hex[:8]}",
                description=description, items=int(items or 0), tasks=tasks,
                shuffled=bool(shuffled))
    previous_description = None
    if classic:
        with contextlib.suppress(*spark_errors()):
            sc = spark.sparkContext  # classic only
            previous_description = sc.getLocalProperty("spark.job.description")
            sc.setJobDescription(description)
            if scope is not None:
                sc.addJobTag(item.key)
    previous = scope._begin_work(item) if scope is not None else None
    ok = False
    try:
        yield item
        ok = True
    finally:
        if scope is not None:
            scope._end_work(item, previous, ok)
        if classic:
            with contextlib.suppress(*spark_errors()):
                sc = spark.sparkContext  # classic only
                sc.setLocalProperty("spark.job.description", previous_description)
                if scope is not None:
                    sc.removeJobTag(item.key)


def _tag_safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label) or "cell"


def make_view(mode: str, label: str) -> Any:
    """The view for a resolved mode (``widget`` falls back to text if ipywidgets fails)."""
    from ..display import progress as display
    if mode == "widget":
        try:
            return display.WidgetProgressView(label)
        except Exception:  # broad: ipywidgets missing or a frontend without comms
            mode = "text"
    if mode == "text":
        return display.TextProgressView(interval=settings.text_interval, delay=settings.text_delay)
    return None


@contextlib.contextmanager
def cell_scope(spark: Any, label: str, mode: Optional[str] = None, view: Any = None,
               show: bool = True) -> Iterator[CellScope]:
    """Tag the work's Spark jobs, show live progress, cancel the jobs on KeyboardInterrupt.

    *mode* overrides the setting for this scope; *view* supplies a ready view (the app
    passes its own widget view, and then nothing is displayed here). The yielded
    :class:`CellScope` gives ``cancel()``, ``snapshot()`` and ``set_items()``.
    """
    resolved = resolve_mode(mode)
    if view is None and resolved != "none":
        view = make_view(resolved, label)
        if view is not None and show:
            with contextlib.suppress(Exception):  # a view's failure: see CellScope._refresh
                view.show()
    scope = CellScope(spark, label, mode=resolved, view=view)
    classic = not scope.connect
    previous_group = None
    # Classic: the job group alone (a session tag, spark.addTag, would make every MLlib
    # model with a training summary unserializable for the rest of the session: Spark 4
    # then keeps a non-serializable thread-local in the session those summaries hold).
    if not classic:
        spark.addTag(scope.tag)
    if classic:
        with contextlib.suppress(*spark_errors()):
            sc = spark.sparkContext  # classic only
            previous_group = (sc.getLocalProperty("spark.jobGroup.id"),
                              sc.getLocalProperty("spark.job.description"),
                              sc.getLocalProperty("spark.job.interruptOnCancel"))
            sc.setJobGroup(scope.tag, label, interruptOnCancel=True)
    scope._start()
    status = "failed"
    stack = _local.__dict__.setdefault("scopes", [])
    stack.append(scope)
    try:
        with scope_sigint(scope):
            yield scope
        status = "done"
    except KeyboardInterrupt:
        scope.cancel()
        status = "cancelled"
        raise
    except BaseException:
        if not scope.user_interrupted:
            raise
        # The interrupt landed inside a Py4J/gRPC call: the cancelled job's failure (or
        # the call's own clean-up error) comes out here; the user pressed stop, so say that.
        scope.cancel()
        status = "cancelled"
        raise KeyboardInterrupt from None
    finally:
        with contextlib.suppress(ValueError):
            stack.remove(scope)
        scope._finish(status)
        if classic and previous_group is not None:
            with contextlib.suppress(*spark_errors()):
                sc = spark.sparkContext  # classic only
                for key, value in zip(("spark.jobGroup.id", "spark.job.description",
                                       "spark.job.interruptOnCancel"), previous_group):
                    sc.setLocalProperty(key, value)  # None removes the property
        if not classic:
            with contextlib.suppress(*spark_errors()):
                spark.removeTag(scope.tag)
