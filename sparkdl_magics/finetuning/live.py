"""Epochs shown while the barrier stage runs: the chief appends each epoch's record to a
file in a driver folder; where the workers share the driver's filesystem (local and
local-cluster masters, a Connect server on this machine) a thread reads it and calls
the cell's callback; elsewhere the epochs are reported when the stage ends."""
from __future__ import annotations

import json
import threading
from typing import Any, Callable, Dict, Optional

EpochCallback = Callable[[Dict[str, Any]], None]


class LiveEpochs:
    """Reads the chief's epoch lines while the stage runs (when this host can see them)."""

    def __init__(self, path: str, callback: Optional[EpochCallback], interval: float = 0.5):
        self.path, self.callback, self.interval = path, callback, interval
        self.shown = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._offset = 0

    def __enter__(self) -> "LiveEpochs":
        if self.callback is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name="sparkdl_magics-finetune-epochs")
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._read()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self._offset)
                text = f.read()
        except OSError:
            return
        complete = text[: text.rfind("\n") + 1]
        self._offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            record = json.loads(line)
            if record.get("kind") == "epoch" and record["epoch"] > self.shown:
                self.shown = record["epoch"]
                try:
                    self.callback(record)
                except Exception:  # noqa: BLE001 - a display failure must not stop training
                    pass


__all__ = ["LiveEpochs", "EpochCallback"]
