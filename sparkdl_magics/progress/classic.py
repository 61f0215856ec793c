"""Progress of a classic session: its status tracker, polled for the cell's job group."""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from .snapshot import ProgressSnapshot, StageProgress, Work, mark_skipped
from .scoped import Scoped


class ClassicSource:
    """Classic sessions: poll the status tracker for the scope's job group; a declared
    work's jobs are those with its job tag (``sparkContext.addJobTag``)."""

    name = "status-tracker"

    def __init__(self, spark: Any, group: str, scope: Optional[Scoped] = None):
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
            mark_skipped([self.stages[k] for k in sorted(info.stageIds) if k in self.stages])
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
