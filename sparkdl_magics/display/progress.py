"""Progress views: render a :class:`~sparkdl_magics.progress.ProgressSnapshot`, never compute one.

- :class:`WidgetProgressView`: standard ipywidgets only (``IntProgress`` + ``HTML`` in
  an ``HBox``/``VBox``), so it renders wherever ipywidgets render (JupyterLab, Notebook,
  VS Code, Databricks). Updated from the scope's ticker thread.
- :class:`TextProgressView`: for terminals, logs and headless runs; at most one line
  every *interval* seconds (none for work shorter than *delay*), then one summary line.
"""
from __future__ import annotations

import html
import sys
import time
from typing import Any, Optional

_BAR_STYLE = {"running": "info", "done": "success", "cancelled": "warning", "failed": "danger"}


class WidgetProgressView:
    """A bar for one cell's Spark work: label, tasks bar, one-line stats, stage detail.

    A bar only ever moves forward. It counts one thing — the images of a featurize or
    predict, or else the tasks of one Spark job — and when the thing counted changes
    (the next job of a fit, the app's next step) a fresh bar takes its place, labelled
    by the stats line ("job 3 4/10 tasks"), instead of the old one jumping back.
    """

    def __init__(self, label: str = "", stats: str = "starting…"):
        import ipywidgets as w
        self.label = label
        self.title = w.HTML(f"<b>{html.escape(label)}</b>", layout=w.Layout(min_width="90px"))
        self.bar = self._new_bar()
        self.stats = w.HTML(html.escape(stats))  # before the first update
        self.detail = w.HTML("")
        self.row = w.HBox([self.title, self.bar, self.stats])
        self.widget = w.VBox([self.row, self.detail])
        self.snapshot: Any = None
        self._key: Any = None  # what the bar counts (images, or one job's tasks)

    @staticmethod
    def _new_bar() -> Any:
        import ipywidgets as w
        return w.IntProgress(value=0, min=0, max=1, bar_style="info",
                             layout=w.Layout(width="40%"))

    def _replace_bar(self, finished: bool = True) -> None:
        """A fresh bar in the old one's place (the old one is never moved backwards). The
        old count is over when a new one starts: its bar is completed first, unless the
        cell failed or was cancelled."""
        if finished:
            with self.bar.hold_sync():
                self.bar.value, self.bar.bar_style = self.bar.max, "success"
        self.bar = self._new_bar()
        self.row.children = (self.title, self.bar, self.stats)

    def show(self) -> None:
        from IPython.display import display
        display(self.widget)

    def _ipython_display_(self) -> None:
        self.show()

    def reset(self, label: str) -> None:
        """Reuse the view for another step (the app shows one bar per running step)."""
        self.label = label
        self.title.value = f"<b>{html.escape(label)}</b>"
        if self.bar.value:
            self._replace_bar()
        self.stats.value, self.detail.value = "starting…", ""
        self._key = None

    def update(self, snap: Any) -> None:
        self.snapshot = snap
        done, total = snap.progress
        if not total:
            done, total = (1, 1) if snap.status == "done" else (0, 1)
        key = ("items", total) if snap.counts_items else ("job", snap.current_job, total)
        if key == self._key:
            done = max(done, self.bar.value)  # the same count never goes back
        elif self.bar.value and done * self.bar.max < self.bar.value * total:
            # a new count that starts below the old one: a fresh bar
            self._replace_bar(finished=snap.status in ("running", "done"))
        self._key = key
        # value and max in one message: a frontend never sees value > max or a dip
        with self.bar.hold_sync():
            if total >= self.bar.max:
                self.bar.max = total
                self.bar.value = min(done, total)
            else:
                self.bar.value = min(done, total)
                self.bar.max = total
            self.bar.bar_style = _BAR_STYLE.get(snap.status, "info")
        self.stats.value = html.escape(progress_line(snap, label=False, stage=False))
        self.detail.value = _stage_table(snap)

    def finish(self, snap: Any) -> None:
        self.update(snap)


class TextProgressView:
    """Plain text that does not flood: throttled running lines, one final summary."""

    def __init__(self, interval: float = 5.0, delay: float = 2.0, stream: Optional[Any] = None):
        self.interval = interval
        self.delay = delay
        self._stream = stream
        self._last_time = 0.0
        self._last_line = ""
        self.lines: list = []  # everything printed, for tests and logs
        self.snapshot: Any = None

    @property
    def stream(self) -> Any:
        return self._stream if self._stream is not None else sys.stderr

    def show(self) -> None:
        pass

    def _print(self, line: str) -> None:
        self.lines.append(line)
        print(line, file=self.stream, flush=True)

    def update(self, snap: Any) -> None:
        self.snapshot = snap
        now = time.monotonic()
        if snap.elapsed < self.delay or now - self._last_time < self.interval \
                or not snap.progress[1]:
            return
        line = progress_line(snap)
        if line != self._last_line:
            self._last_time, self._last_line = now, line
            self._print(line)

    def finish(self, snap: Any) -> None:
        """One summary line for work that ran Spark tasks; a cell that failed before any
        ran has its one-line error already (no "failed 0/0 tasks" line under it)."""
        self.snapshot = snap
        if snap.progress[1]:
            self._print(progress_line(snap))


def progress_line(snap: Any, label: bool = True, stage: bool = True) -> str:
    """One line for a snapshot, the wording of every view. Work counted in images:
    ``featurize: MobileNetV3Small on 297 train images: 120/297 images (40 %) 8.1 images/s
    ETA 21.0 s elapsed 30.1 s``; other work, the latest job's tasks while it runs:
    ``fit: job 3 4/10 tasks 2.0 tasks/s ETA 3.0 s elapsed 5.2 s``, and the whole cell's
    when it ended: ``fit: done 56/56 tasks in 12 stages 0.8 tasks/s took 1 min 09 s``.

    The widget leaves out the *label* and what is running (*stage*; its title and
    detail line show them); the text view prints the whole line. Never a file path:
    the running part is named by what it does (:func:`sparkdl_magics.progress.work`).
    """
    running = snap.status == "running"
    head = snap.description if stage and running and snap.description else snap.label
    parts = [f"{head}:"] if label else []
    if not running:
        parts.append(snap.status)
    done, total = snap.progress
    if snap.counts_items:
        parts.append(f"{done:,}/{total:,} {snap.unit} ({int(100 * done / total)} %)")
    else:
        if stage and running and snap.current_job is not None:
            parts.append(f"job {snap.current_job}" if snap.source == "status-tracker"
                         else f"query {snap.current_job + 1}")
        parts.append(f"{done}/{total} tasks")
        if not running:
            parts.append(f"in {_plural(len(snap.counted), 'stage')}")
    failed = snap.tasks_failed
    if failed:
        parts.append(f"({failed} failed tasks)")
    if snap.items_per_s:
        parts.append(f"{snap.items_per_s:,.1f} {snap.unit}/s")
    elif snap.tasks_per_s and not snap.counts_items:
        parts.append(f"{snap.tasks_per_s:.1f} tasks/s")
    if running and snap.eta is not None:
        parts.append(f"ETA {seconds_text(snap.eta)}")
    parts.append(f"{'elapsed' if running else 'took'} {seconds_text(snap.elapsed)}")
    return " ".join(parts)


def seconds_text(value: float) -> str:
    """``4.2 s`` under a minute, else ``3 min 07 s``."""
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes} min {secs:02d} s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _stage_table(snap: Any) -> str:
    """What runs now, escaped: ``featurize: ResNet50 on 600 images · stage 4 · 3/10 tasks
    · 2 running · 3 jobs, 5 stages`` (named by what it does, never by a call site)."""
    stage = snap.current_stage
    if stage is None:
        return ""
    what = snap.description if snap.status == "running" else snap.label
    name = html.escape(" ".join(str(what or stage.name).split())[:80])
    parts = [name, f"stage {stage.stage_id}", f"{stage.completed}/{stage.num_tasks} tasks"]
    if stage.active:
        parts.append(f"{stage.active} running")
    if snap.jobs:
        parts.append(f"{_plural(snap.jobs, 'job')}, {_plural(len(snap.counted), 'stage')}")
    return f"<span style='font-size:smaller;color:#666'>{' · '.join(parts)}</span>"
