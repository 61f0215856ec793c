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
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

MODES = ("auto", "widget", "text", "none")


@dataclass
class Settings:
    """Module-wide progress settings (``configure`` changes them)."""

    mode: str = "auto"
    poll_interval: float = 0.5  # seconds between status-tracker polls / view refreshes
    text_interval: float = 5.0  # text mode: at most one progress line this often
    text_delay: float = 2.0  # text mode: no running lines for cells shorter than this


settings = Settings(mode=os.environ.get("SPARKDL_PROGRESS", "auto").strip().lower() or "auto")

#: The snapshot of the most recently finished scope (for inspection after a cell).
last: Optional["ProgressSnapshot"] = None


def configure(mode: Optional[str] = None, poll_interval: Optional[float] = None,
              text_interval: Optional[float] = None, text_delay: Optional[float] = None) -> Settings:
    """Change how progress is shown: ``configure(mode='text')``; returns the settings."""
    if mode is not None:
        mode = str(mode).strip().lower()
        if mode not in MODES:
            from .errors import OptionError
            raise OptionError(f"progress mode {mode!r}: expected one of {', '.join(MODES)}")
        settings.mode = mode
    if poll_interval is not None:
        settings.poll_interval = float(poll_interval)
    if text_interval is not None:
        settings.text_interval = float(text_interval)
    if text_delay is not None:
        settings.text_delay = float(text_delay)
    return settings


def resolve_mode(mode: Optional[str] = None) -> str:
    """``widget``, ``text`` or ``none``: *mode* or the setting, with ``auto`` resolved."""
    mode = (mode or settings.mode or "auto").lower()
    if mode not in MODES:
        mode = "auto"
    if mode != "auto":
        return mode
    return "widget" if _widget_frontend() else "text"


def _spark_errors() -> Tuple[type, ...]:
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


def _widget_frontend() -> bool:
    """True inside a Jupyter kernel (comms available) with ipywidgets importable."""
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        return False
    if shell is None or getattr(shell, "kernel", None) is None:
        return False  # terminal IPython, plain Python, test shells
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- data

@dataclass
class StageProgress:
    """One Spark stage as last reported."""

    stage_id: int
    name: str = ""
    num_tasks: int = 0
    completed: int = 0
    active: int = 0
    failed: Optional[int] = None  # None where the source does not report it (Connect)
    done: bool = False
    skipped: bool = False
    job: int = 0  # the job (classic) or operation (Connect) it belongs to, in start order

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Work:
    """A part of the cell's work that the user asked for in images (one split's features,
    a preview's predictions), declared by the code that runs it (:func:`work`).

    *tasks*: the tasks of its inference stage (the partitions the images were spread
    over, see :mod:`sparkdl_magics.partitioning`; None when unknown); *shuffled*: the
    inference stage reads a shuffle, so the first stage of each of its jobs is the
    scan that feeds it, not the model. Images done = the images of the inference
    stage's completed tasks; they never decrease, and are all done when the work
    returns."""

    key: str
    description: str
    items: int
    tasks: Optional[int] = None
    shuffled: bool = False
    done: int = 0
    finished: bool = False

    def count(self, jobs: List[List["StageProgress"]]) -> None:
        """Update :attr:`done` from its jobs' stages (each job's stages in id order)."""
        if self.finished or not self.items:
            return
        candidates = []
        for stages in jobs:
            for i, stage in enumerate(stages):
                if stage.skipped or not stage.num_tasks or (self.shuffled and i == 0):
                    continue
                candidates.append(stage)
        matching = [s for s in candidates if self.tasks and s.num_tasks == self.tasks]
        fraction = max((min(s.completed, s.num_tasks) / s.num_tasks
                        for s in (matching or candidates)), default=0.0)
        self.done = max(self.done, min(self.items, int(self.items * fraction)))


@dataclass
class ProgressSnapshot:
    """What a progress view shows, as data: one cell's Spark work so far."""

    label: str
    source: str  # "status-tracker" (classic), "connect", or "none"
    stages: List[StageProgress] = field(default_factory=list)
    jobs: int = 0
    elapsed: float = 0.0
    status: str = "running"  # running | done | cancelled | failed
    items: Optional[int] = None  # optional total of rows/images the work covers
    unit: str = "rows"
    bytes_read: Optional[int] = None
    #: Images (``unit``) done of ``items``, counted at the declared inference stages
    #: (:func:`work`); None when the cell declared none. Never decreases.
    items_done: Optional[int] = None
    #: Seconds since the first declared work began (the rate's clock).
    work_elapsed: Optional[float] = None
    #: What the running part of the cell does, in the user's words (never a call site).
    description: str = ""
    #: The latest job (classic) / operation (Connect) and how long it has run.
    current_job: Optional[int] = None
    job_elapsed: Optional[float] = None

    @property
    def counted(self) -> List[StageProgress]:
        return [s for s in self.stages if not s.skipped]

    @property
    def tasks_total(self) -> int:
        return sum(s.num_tasks for s in self.counted)

    @property
    def tasks_done(self) -> int:
        return sum(min(s.completed, s.num_tasks) for s in self.counted)

    @property
    def tasks_failed(self) -> Optional[int]:
        known = [s.failed for s in self.counted if s.failed is not None]
        return sum(known) if known else (None if self.source == "connect" else 0)

    @property
    def tasks_active(self) -> int:
        return sum(s.active for s in self.counted)

    @property
    def current_stage(self) -> Optional[StageProgress]:
        """The running stage (the latest one not done), else the last stage."""
        running = [s for s in self.counted if not s.done and s.completed < s.num_tasks]
        if running:
            return running[-1]
        return self.counted[-1] if self.counted else None

    @property
    def counts_items(self) -> bool:
        """Whether progress is images (``unit``) done of the images to do."""
        return bool(self.items) and self.items_done is not None

    @property
    def job_stages(self) -> List[StageProgress]:
        """The counted stages of the latest job (operation)."""
        if self.current_job is None:
            return []
        return [s for s in self.counted if s.job == self.current_job]

    @property
    def progress(self) -> Tuple[int, int]:
        """(done, total) of what the bar shows: images when the work declared them, else
        the latest job's tasks while running (the whole cell's once it ended)."""
        if self.counts_items:
            return min(self.items_done, self.items), self.items
        if self.status == "running" and self.current_job is not None:
            stages = self.job_stages
            return (sum(min(s.completed, s.num_tasks) for s in stages),
                    sum(s.num_tasks for s in stages))
        return self.tasks_done, self.tasks_total

    @property
    def fraction(self) -> float:
        done, total = self.progress
        return done / total if total else (1.0 if self.status == "done" else 0.0)

    @property
    def tasks_per_s(self) -> Optional[float]:
        return self.tasks_done / self.elapsed if self.elapsed > 0 and self.tasks_done else None

    @property
    def items_per_s(self) -> Optional[float]:
        """Images (``unit``) per second since the declared work began, from images done."""
        if not self.counts_items or not self.items_done or not self.work_elapsed:
            return None
        return self.items_done / self.work_elapsed

    @property
    def eta(self) -> Optional[float]:
        """Seconds left: from the images rate when images are counted, else from the
        latest job's task rate (later jobs may add more)."""
        if self.status != "running":
            return 0.0
        done, total = self.progress
        if self.counts_items:
            rate = self.items_per_s
        elif done and (self.job_elapsed or self.elapsed):
            rate = done / (self.job_elapsed or self.elapsed)
        else:
            rate = None
        if not rate:
            return None
        return (total - done) / rate

    def as_dict(self) -> Dict[str, Any]:
        current = self.current_stage
        return {
            "label": self.label, "source": self.source, "status": self.status,
            "jobs": self.jobs, "stages": [s.as_dict() for s in self.stages],
            "current_stage": current.name if current else None,
            "tasks_done": self.tasks_done, "tasks_total": self.tasks_total,
            "tasks_failed": self.tasks_failed, "tasks_active": self.tasks_active,
            "elapsed": self.elapsed, "tasks_per_s": self.tasks_per_s,
            "items": self.items, "unit": self.unit, "items_per_s": self.items_per_s,
            "eta": self.eta, "bytes_read": self.bytes_read,
            "items_done": self.items_done, "description": self.description,
            "progress": list(self.progress), "fraction": self.fraction,
        }

    def describe(self) -> str:
        """One line: ``featurize: stage 3 (map at ...) 10/16 tasks (1 failed) 4.2 tasks/s ETA 2.0 s ...``
        (:func:`sparkdl_magics.display.progress.progress_line`, what every view shows)."""
        from .display.progress import progress_line
        return progress_line(self)


# --------------------------------------------------------------------------- sources

def _mark_skipped(stages: List[StageProgress]) -> None:
    """In one job (or Connect operation), stages in id order: a stage with no task run
    while a later one has started was skipped (its shuffle output already existed)."""
    for i, stage in enumerate(stages):
        if stage.completed or stage.active or stage.done:
            continue
        if any(later.completed or later.active for later in stages[i + 1:]):
            stage.skipped = True


class _ClassicSource:
    """Classic sessions: poll the status tracker for the scope's job group; a declared
    work's jobs are those with its job tag (``sparkContext.addJobTag``)."""

    name = "status-tracker"

    def __init__(self, spark: Any, group: str, scope: Optional["CellScope"] = None):
        self.sc = spark.sparkContext  # classic only
        self.tracker = self.sc.statusTracker()
        self.group = group
        self.scope = scope
        self.stages: Dict[int, StageProgress] = {}
        self.jobs: Dict[int, str] = {}
        self.job_stages: Dict[int, List[int]] = {}
        self.job_seen: Dict[int, float] = {}
        self.job_work: Dict[int, Work] = {}
        self.jtracker: Any = None

    def _work_jobs(self) -> None:
        works = [w for w in (self.scope.works if self.scope is not None else [])
                 if not w.finished]
        if not works:
            return
        if self.jtracker is None:  # Scala's tracker: the Java one has no job tags
            self.jtracker = self.sc._jsc.sc().statusTracker()  # classic only
        for w in works:
            for job_id in self.jtracker.getJobIdsForTag(w.key):
                self.job_work[int(job_id)] = w

    def poll(self) -> None:
        self._work_jobs()
        label = self.scope.label if self.scope is not None else ""
        for job_id in self.tracker.getJobIdsForGroup(self.group):
            info = self.tracker.getJobInfo(job_id)
            if info is None:
                continue
            self.jobs[job_id] = info.status
            self.job_seen.setdefault(job_id, time.perf_counter())
            self.job_stages[job_id] = sorted(info.stageIds)
            work = self.job_work.get(job_id)
            for stage_id in info.stageIds:
                stage_info = self.tracker.getStageInfo(stage_id)
                stage = self.stages.setdefault(stage_id, StageProgress(stage_id, job=job_id))
                # What the stage does in the user's words: Spark names stages after the
                # call site (a path into this package), never shown.
                stage.name = work.description if work is not None else label
                if stage_info is None:
                    continue
                stage.num_tasks = stage_info.numTasks
                stage.completed = stage_info.numCompletedTasks
                stage.active = stage_info.numActiveTasks
                stage.failed = stage_info.numFailedTasks
                stage.done = stage.completed >= stage.num_tasks > 0
            _mark_skipped([self.stages[k] for k in sorted(info.stageIds) if k in self.stages])
        for w in {id(w): w for w in self.job_work.values()}.values():
            w.count([[self.stages[k] for k in self.job_stages.get(j, []) if k in self.stages]
                     for j, jw in self.job_work.items() if jw is w])

    def finish(self, succeeded: bool = False) -> None:
        """Last poll; stages of finished jobs that never ran were skipped (reused shuffle)."""
        self.poll()
        finished = {"SUCCEEDED", "FAILED"}
        ended = all(str(status) in finished for status in self.jobs.values())
        for stage in self.stages.values():
            if ended and not stage.done and stage.completed == 0 and stage.active == 0:
                stage.skipped = True

    def fill(self, snap: ProgressSnapshot) -> None:
        snap.stages = [self.stages[k] for k in sorted(self.stages) if self.stages[k].num_tasks
                       or self.stages[k].skipped]
        snap.jobs = len(self.jobs)
        if self.jobs:
            snap.current_job = max(self.jobs)
            snap.job_elapsed = time.perf_counter() - self.job_seen[snap.current_job]


class _ConnectSource:
    """Spark Connect: a progress handler fed by the server, for this thread's operations.

    The handler runs on the thread that waits for the operation's results, so an
    operation belongs to the work (:func:`work`) declared on that thread when it is
    first reported."""

    name = "connect"

    def __init__(self, spark: Any, scope: Optional["CellScope"] = None):
        self.spark = spark
        self.scope = scope
        self.thread = threading.get_ident()
        self.lock = threading.Lock()
        self.stages: Dict[tuple, StageProgress] = {}
        self.operations: Dict[str, bool] = {}
        self.op_index: Dict[str, int] = {}
        self.op_seen: Dict[str, float] = {}
        self.op_work: Dict[str, Optional[Work]] = {}
        self.bytes: Dict[tuple, int] = {}
        self.started: set = set()  # stages the server reported running (or done)
        spark.registerProgressHandler(self)

    def __call__(self, stages: Any = None, inflight_tasks: int = 0,
                 operation_id: Optional[str] = None, done: bool = False, **_: Any) -> None:
        if threading.get_ident() != self.thread:
            return  # another thread's (another cell's or the app's) query
        op = operation_id or ""
        with self.lock:
            if op not in self.op_index:
                self.op_index[op] = len(self.op_index)
                self.op_seen[op] = time.perf_counter()
                self.op_work[op] = self.scope.active_work if self.scope is not None else None
            work = self.op_work[op]
            name = work.description if work is not None else (
                self.scope.label if self.scope is not None else "")
            self.operations[op] = bool(done) or self.operations.get(op, False)
            stages = list(stages or [])
            for info in stages:
                key = (op, info.stage_id)
                stage = self.stages.setdefault(key, StageProgress(info.stage_id, name,
                                                                  job=self.op_index[op]))
                stage.num_tasks = info.num_tasks
                stage.completed = info.num_completed_tasks
                stage.done = bool(info.done)
                self.bytes[key] = info.num_bytes_read
            running = [s for (o, _), s in self.stages.items() if o == op and not s.done]
            for stage in running:  # the server reports in-flight tasks per operation only
                stage.active = 0
            if running:
                running[-1].active = int(inflight_tasks or 0)
            self.started.update(key for key, s in self.stages.items()
                                if key[0] == op and (s.completed or s.active or s.done))
            _mark_skipped([s for (o, _), s in sorted(self.stages.items()) if o == op])
            if done:
                for (o, _), stage in self.stages.items():
                    if o == op:
                        stage.active = 0
            if work is not None:
                self._count(work)

    def _count(self, work: Work) -> None:
        work.count([[s for (o, _), s in sorted(self.stages.items()) if o == other]
                    for other, w in self.op_work.items() if w is work])

    def poll(self) -> None:
        pass

    def finish(self, succeeded: bool = False) -> None:
        """Stop listening. The server's reports come from an asynchronous listener, so the
        last one can lag the operation's end (3 of 4 tasks). When the work succeeded,
        each operation's tasks are counted from what Spark guarantees then: a stage the
        server saw running finished all its tasks, and so did the operation's result
        stage (its last); a stage never seen running before a finished one was skipped
        (its shuffle output existed). Nothing else is assumed."""
        with contextlib.suppress(ValueError):  # already removed (clearProgressHandlers)
            self.spark.removeProgressHandler(self)
        if not succeeded:
            return
        with self.lock:
            for op, ended in self.operations.items():
                keys = sorted(k for k in self.stages if k[0] == op)
                if not ended or not keys:
                    continue
                for key in keys:
                    stage = self.stages[key]
                    if not stage.skipped and (key in self.started or key == keys[-1]):
                        stage.completed, stage.done, stage.active = stage.num_tasks, True, 0
                _mark_skipped([self.stages[k] for k in keys])
            for work in {id(w): w for w in self.op_work.values() if w is not None}.values():
                self._count(work)

    def fill(self, snap: ProgressSnapshot) -> None:
        with self.lock:
            snap.stages = [self.stages[k] for k in self.stages]
            snap.jobs = len(self.operations)
            snap.bytes_read = sum(self.bytes.values())
            if self.op_index:
                op = max(self.op_index, key=self.op_index.get)
                snap.current_job = self.op_index[op]
                snap.job_elapsed = time.perf_counter() - self.op_seen[op]


# --------------------------------------------------------------------------- the scope

class CellScope:
    """One cell's (or one app step's) Spark work: its tag, its progress, its cancel."""

    def __init__(self, spark: Any, label: str, mode: str = "none", view: Any = None):
        from .session import is_connect
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
            with contextlib.suppress(*_spark_errors()):
                # Also the jobs the cell's code would start after this one fails.
                self.spark.sparkContext._jsc.sc().cancelJobGroupAndFutureJobs(  # classic only
                    self.tag, "cancelled by the user (sparkdl_magics)")
        else:
            with contextlib.suppress(*_spark_errors()):
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
                with contextlib.suppress(*_spark_errors()):
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
            self._source = (_ConnectSource(self.spark, self) if self.connect
                            else _ClassicSource(self.spark, self.tag, self))
        except _spark_errors():  # progress is a nicety: never fail the cell for it
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
                with contextlib.suppress(*_spark_errors()):
                    self._source.poll()
        if self.view is not None:
            # Broad: a view is display code (maybe the caller's, or a frontend's comm);
            # its failure must neither stop this ticker nor fail the cell.
            with contextlib.suppress(Exception):
                self.view.update(self.snapshot())

    def _finish(self, status: str) -> ProgressSnapshot:
        global last
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._status = "cancelled" if self.cancelled.is_set() and status != "done" else status
        self._finished_at = time.perf_counter()
        if self._source is not None:
            with self._lock:
                with contextlib.suppress(*_spark_errors()):
                    self._source.finish(succeeded=self._status == "done")
        snap = self.snapshot()
        if self.view is not None:
            with contextlib.suppress(Exception):  # a view's failure: see _refresh
                self.view.finish(snap)
        last = snap
        return snap


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
    from .session import is_connect
    scope = current_scope()
    classic = not is_connect(spark)
    item = Work(key=f"{scope.tag if scope else 'sparkdl_magics'}-w{uuid.uuid4().hex[:8]}",
                description=description, items=int(items or 0), tasks=tasks,
                shuffled=bool(shuffled))
    previous_description = None
    if classic:
        with contextlib.suppress(*_spark_errors()):
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
            with contextlib.suppress(*_spark_errors()):
                sc = spark.sparkContext  # classic only
                sc.setLocalProperty("spark.job.description", previous_description)
                if scope is not None:
                    sc.removeJobTag(item.key)


def _tag_safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label) or "cell"


def _inside_py4j(frame: Any) -> bool:
    """Whether the interrupted main thread is inside a Py4J call (waiting on the JVM)."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith("py4j"):
            return True
        frame = frame.f_back
    return False


def _cancel_on_interrupt(scope: "CellScope", patience: float = 5.0) -> None:
    """Cancel the scope's jobs; if the cell still waits on the JVM (not a Spark job, e.g.
    a long file listing), say how to stop at once."""
    scope.cancel()
    if not scope._stop.wait(patience):
        print("sparkdl_magics: still waiting for Spark after the interrupt; interrupt "
              "again to stop at once.", file=sys.stderr)


@contextlib.contextmanager
def _scope_sigint(scope: "CellScope") -> Iterator[None]:
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
        if again or scope.connect or not _inside_py4j(frame):
            raise KeyboardInterrupt
        threading.Thread(target=_cancel_on_interrupt, args=(scope,), daemon=True,
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


def make_view(mode: str, label: str) -> Any:
    """The view for a resolved mode (``widget`` falls back to text if ipywidgets fails)."""
    from .display import progress as display
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
        with contextlib.suppress(*_spark_errors()):
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
        with _scope_sigint(scope):
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
            with contextlib.suppress(*_spark_errors()):
                sc = spark.sparkContext  # classic only
                for key, value in zip(("spark.jobGroup.id", "spark.job.description",
                                       "spark.job.interruptOnCancel"), previous_group):
                    sc.setLocalProperty(key, value)  # None removes the property
        if not classic:
            with contextlib.suppress(*_spark_errors()):
                spark.removeTag(scope.tag)
