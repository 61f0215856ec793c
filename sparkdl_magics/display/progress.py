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
    """A bar for one cell's Spark work: label, tasks bar, one-line stats, stage detail."""

    def __init__(self, label: str = ""):
        import ipywidgets as w
        self.label = label
        self.title = w.HTML(f"<b>{html.escape(label)}</b>", layout=w.Layout(min_width="90px"))
        self.bar = w.IntProgress(value=0, min=0, max=1, bar_style="info",
                                 layout=w.Layout(width="40%"))
        self.stats = w.HTML("starting…")
        self.detail = w.HTML("")
        self.widget = w.VBox([w.HBox([self.title, self.bar, self.stats]), self.detail])
        self.snapshot: Any = None

    def show(self) -> None:
        from IPython.display import display
        display(self.widget)

    def _ipython_display_(self) -> None:
        self.show()

    def reset(self, label: str) -> None:
        """Reuse the view for another step (the app shows one bar per running step)."""
        self.label = label
        self.title.value = f"<b>{html.escape(label)}</b>"
        self.bar.value, self.bar.max, self.bar.bar_style = 0, 1, "info"
        self.stats.value, self.detail.value = "starting…", ""

    def update(self, snap: Any) -> None:
        self.snapshot = snap
        total = snap.tasks_total
        self.bar.max = max(total, 1)
        self.bar.value = min(snap.tasks_done, self.bar.max) if total else (1 if snap.status == "done" else 0)
        self.bar.bar_style = _BAR_STYLE.get(snap.status, "info")
        self.stats.value = html.escape(_stats(snap))
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
        if snap.elapsed < self.delay or now - self._last_time < self.interval or not snap.tasks_total:
            return
        line = snap.describe()
        if line != self._last_line:
            self._last_time, self._last_line = now, line
            self._print(line)

    def finish(self, snap: Any) -> None:
        self.snapshot = snap
        if snap.tasks_total or snap.status != "done":
            self._print(snap.describe())


def _stats(snap: Any) -> str:
    text = f"{snap.tasks_done}/{snap.tasks_total} tasks"
    failed = snap.tasks_failed
    if failed:
        text += f", {failed} failed"
    if snap.items_per_s:
        text += f" · ~{snap.items_per_s:,.1f} {snap.unit}/s"
    elif snap.tasks_per_s:
        text += f" · {snap.tasks_per_s:.1f} tasks/s"
    if snap.status == "running":
        if snap.eta is not None:
            text += f" · ETA {_secs(snap.eta)}"
        text += f" · {_secs(snap.elapsed)}"
    else:
        text += f" · {snap.status} in {_secs(snap.elapsed)}"
    return text


def _secs(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{int(value) // 60} min {int(value) % 60:02d} s"


def _stage_table(snap: Any) -> str:
    """The current stage, escaped: ``stage 4: mapPartitions at …  (3 running)``."""
    stage = snap.current_stage
    if stage is None:
        return ""
    name = html.escape(" ".join(str(stage.name).split())[:80])
    parts = [f"stage {stage.stage_id}: {name}", f"{stage.completed}/{stage.num_tasks}"]
    if stage.active:
        parts.append(f"{stage.active} running")
    if snap.jobs:
        parts.append(f"{snap.jobs} job{'s' if snap.jobs != 1 else ''}, "
                     f"{len(snap.counted)} stage{'s' if len(snap.counted) != 1 else ''}")
    return f"<span style='font-size:smaller;color:#666'>{' · '.join(parts)}</span>"
