"""Progress over Spark Connect: a progress handler fed by the server's reports."""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Dict, Optional

from .snapshot import ProgressSnapshot, StageProgress, Work, mark_skipped
from .scoped import Scoped


class ConnectSource:
    """Spark Connect: a progress handler fed by the server, for this thread's operations.

    The handler runs on the thread that waits for the operation's results, so an
    operation belongs to the work (:func:`work`) declared on that thread when it is
    first reported."""

    name = "connect"

    def __init__(self, spark: Any, scope: Optional[Scoped] = None):
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
        self.started: set = set()  # stages the server reported tasks done of
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
            # the server's own per-stage facts: in-flight tasks are reported per operation
            # and given to its latest stage above, which may be a skipped one
            self.started.update(key for key, s in self.stages.items()
                                if key[0] == op and (s.completed or s.done))
            mark_skipped([s for (o, _), s in sorted(self.stages.items()) if o == op])
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
        server reported tasks done of finished all its tasks, and so did the operation's result
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
                mark_skipped([self.stages[k] for k in keys])
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
