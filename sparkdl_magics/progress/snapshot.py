"""Progress as plain data: stages, declared work counted in images, the snapshot a
view renders."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


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
        from ..display.progress import progress_line
        return progress_line(self)


def mark_skipped(stages: List[StageProgress]) -> None:
    """In one job (or Connect operation), stages in id order: a stage with no task run
    while a later one has started was skipped (its shuffle output already existed)."""
    for i, stage in enumerate(stages):
        if stage.completed or stage.active or stage.done:
            continue
        if any(later.completed or later.active for later in stages[i + 1:]):
            stage.skipped = True
