"""Peak resident memory of a Spark application's processes, sampled with psutil.

Shared by the benchmarks. Roles, from each descendant's command line: this process
(``driver_python``), the driver JVM (``driver_jvm``), executor JVMs (``executor_jvm``,
local-cluster/standalone only — with ``local[N]`` the driver JVM is the executor too),
and Spark's Python workers (the largest one, and all of them together).
"""
from __future__ import annotations

import threading

import psutil

MB = 1024 * 1024


class PeakRSS:
    """``with PeakRSS() as peak: ...`` then ``peak.mb('driver_jvm')``; samples every 0.2 s."""

    ROLES = ("driver_python", "driver_jvm", "executor_jvm", "worker_max", "workers_sum")

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak = dict.fromkeys(self.ROLES, 0)
        self.workers_seen = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def mb(self, role: str) -> float:
        return self.peak[role] / MB

    def summary(self) -> str:
        return ", ".join(f"{role} {self.mb(role):.0f} MB" for role in self.ROLES
                         if self.peak[role]) + f" ({len(self.workers_seen)} workers seen)"

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        me = psutil.Process()
        self._max("driver_python", me.memory_info().rss)
        workers = 0
        for role, child, rss in spark_processes(me):
            if role == "worker":
                workers += rss
                self._max("worker_max", rss)
                self.workers_seen.add(child.pid)
            else:
                self._max(role, rss)
        self._max("workers_sum", workers)

    def _max(self, role: str, value: int) -> None:
        self.peak[role] = max(self.peak[role], value)


def spark_processes(me: "psutil.Process | None" = None):
    """``(role, process, rss)`` for each Spark process under *me* (default: this one):
    role ``driver_jvm``, ``executor_jvm`` or ``worker`` (``pyspark.daemon`` and the
    workers it forks, which keep its command line)."""
    me = me or psutil.Process()
    for child in me.children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            rss = child.memory_info().rss
        except psutil.Error:
            continue
        if "java" in cmd.split(" ")[0]:
            role = "executor_jvm" if "CoarseGrainedExecutorBackend" in cmd else "driver_jvm"
            yield role, child, rss
        elif "pyspark.worker" in cmd or "pyspark.daemon" in cmd:
            yield "worker", child, rss
