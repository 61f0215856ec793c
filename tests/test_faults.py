"""Faults: a Python worker dies mid-featurization, an executor JVM is killed mid-job, a
cell is interrupted, the driver session is stopped or its JVM dies between cells.

Each fault is injected for real (``os._exit`` in a worker, SIGKILL to an executor JVM,
SIGINT to this process, ``SparkSession.stop()`` / SIGKILL to the driver JVM) and the
test checks what the user gets afterwards: every row exactly once, a usable next cell,
a clear one-line message or a transparent re-attach. Many small cells in a row leak
neither threads nor memory, and the worker's model cache is bounded (featurizing
thousands of images with bounded memory is measured by ``benchmarks/load_featurize.py``).
"""
from __future__ import annotations

import gc
import os
import signal
import threading
import time
from typing import Iterator

import pandas as pd
import pytest

from helpers import SMALL, binary_images, write_weights
from imagegen import write_labelled_folder

N_IMAGES = 24


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_weights(SMALL, tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def fault_images(tmp_path_factory):
    from imagegen import write_labelled_folder
    root = tmp_path_factory.mktemp("fault_images")
    write_labelled_folder(root, ("daisy", "roses"), per_class=N_IMAGES // 2, seed=8,
                          sizes=[(40, 32), (48, 48)])
    return root


def _dies_once(marker: str, when_seen: int):
    """A pandas UDF passing bytes through that kills its Python worker once, at its
    *when_seen*-th batch, the first time any worker gets there (marker file = done)."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("binary")
    def passthrough(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        seen = 0
        for batch in batches:
            seen += 1
            if seen == when_seen:
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.write(fd, str(os.getpid()).encode())
                    os.close(fd)
                    os._exit(1)  # the worker dies mid-partition, no clean-up
            yield batch
    return passthrough


def _check_every_row_once(fs, expected_paths):
    rows = fs.train.select("path", "features").collect()
    paths = sorted(r["path"] for r in rows)
    assert paths == sorted(expected_paths), "rows lost or duplicated"
    assert all(r["features"] is not None and len(r["features"]) == 576 for r in rows)


def test_python_worker_killed_mid_featurize_is_retried_every_row_once(
        spark_cluster, fault_images, weights, tmp_path):
    from pyspark.sql import functions as F

    from sparkdl_magics import featurize
    spark = spark_cluster
    df = binary_images(spark, fault_images).repartition(2)
    expected = [r[0] for r in df.select("path").collect()]
    marker = tmp_path / "worker_killed"
    old = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "4")
    try:
        doomed = df.withColumn("content", _dies_once(str(marker), 2)(F.col("content")))
        fs = featurize(doomed, model=SMALL, weights=str(weights), batch_size=4)
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", old)
    assert marker.exists(), "the fault was not injected"
    assert fs.stats["images"] == len(expected) and fs.stats["invalid"] == 0
    _check_every_row_once(fs, expected)
    fs.unpersist()


def _executor_pids():
    import psutil
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if any("CoarseGrainedExecutorBackend" in part for part in proc.cmdline()):
                out.append(proc.pid)
        except psutil.Error:
            pass
    return out


def _executor_of(pid: int):
    import psutil
    for parent in psutil.Process(pid).parents():
        try:
            if any("CoarseGrainedExecutorBackend" in p for p in parent.cmdline()):
                return parent.pid
        except psutil.Error:
            pass
    return None


def test_executor_killed_mid_job_the_job_completes_correctly(
        spark_cluster, fault_images, weights, tmp_path):
    """SIGKILL the executor JVM that runs a featurize task (found with psutil from the
    Python worker's PID the task reports); Spark reschedules, the result is complete."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    from sparkdl_magics import featurize
    spark = spark_cluster
    assert len(_executor_pids()) == 2
    df = binary_images(spark, fault_images).repartition(4)
    expected = [r[0] for r in df.select("path").collect()]
    started = tmp_path / "started"
    killed = []

    @pandas_udf("binary")
    def slow_first_time(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for batch in batches:
            if not started.exists():
                started.write_text(str(os.getpid()))
                time.sleep(3)  # hold the task so the executor dies under it
            yield batch

    def killer():
        deadline = time.time() + 60
        while time.time() < deadline and not started.exists():
            time.sleep(0.05)
        time.sleep(0.3)
        executor = _executor_of(int(started.read_text() or 0)) if started.exists() else None
        if executor:
            os.kill(executor, signal.SIGKILL)
            killed.append(executor)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    fs = featurize(df.withColumn("content", slow_first_time(F.col("content"))),
                   model=SMALL, weights=str(weights), batch_size=8)
    thread.join(5)
    assert killed, "no executor was killed"
    _check_every_row_once(fs, expected)
    assert fs.stats["images"] == len(expected)
    fs.unpersist()


def test_interrupted_cell_cancels_its_jobs_and_the_next_cell_works(spark, ip, fault_images):
    """SIGINT (the notebook's stop button) while %%dlload runs a slow Spark job."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import udf

    slow = udf(lambda p: (time.sleep(0.5), p)[1], "string")
    ip.user_ns["slow_frame"] = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                                .load(str(fault_images)).repartition(2)
                                .withColumn("path", slow(F.col("path"))))
    tracker = spark.sparkContext.statusTracker()

    def interrupt():
        deadline = time.time() + 60
        while time.time() < deadline and not tracker.getActiveJobsIds():
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    started = time.time()
    with pytest.raises(KeyboardInterrupt):
        ip.run_cell("%%dlload interrupted slow_frame\nsplit: 1")
    assert time.time() - started < 30  # 24 rows x 0.5 s / 2 cores would take longer
    assert "interrupted" not in ip.user_ns  # nothing stored
    deadline = time.time() + 20
    while tracker.getActiveJobsIds() and time.time() < deadline:
        time.sleep(0.1)
    assert not tracker.getActiveJobsIds(), "the interrupted cell's jobs kept running"
    ip.run_cell(f"%%dlload after\npath: {fault_images}\nsplit: 1")
    assert ip.user_ns["after"].num_images == N_IMAGES


def _reattach_for_tests(session_pool, spark):
    session_pool.spark, session_pool.mode = spark, "local"


def test_session_stopped_between_cells_next_cell_reattaches(spark, ip, fault_images,
                                                           session_pool):
    from IPython.core.error import UsageError

    from sparkdl_magics import session
    ip.run_cell(f"%%dlload before\npath: {fault_images}\nsplit: 1")
    spark.stop()  # under the magics' feet
    assert session.active_session() is None
    info = ip.run_line_magic("dlspark", "--master local[2] --conf spark.ui.enabled=false,"
                                        "spark.sql.shuffle.partitions=4")
    assert info.master == "local[2]"
    _reattach_for_tests(session_pool, session.active_session())
    ip.run_cell(f"%%dlload after\npath: {fault_images}\nsplit: 1")
    assert ip.user_ns["after"].num_images == N_IMAGES
    # a result made in the stopped session: one clear line, not a JVM trace
    with pytest.raises(UsageError) as info:
        ip.run_cell("%%featurize before\nweights: none")
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message and "\tat " not in message
    assert "stopped" in message, message


def test_driver_jvm_killed_between_cells_dlspark_reattaches(spark, ip, fault_images,
                                                           session_pool):
    from sparkdl_magics import session
    gateway = spark.sparkContext._gateway
    gateway.proc.kill()
    gateway.proc.wait(30)
    info = ip.run_line_magic("dlspark", "--master local[2] --conf spark.ui.enabled=false,"
                                        "spark.sql.shuffle.partitions=4")
    assert info.master == "local[2]"
    new = session.active_session()
    assert new is not None and new.sparkContext._gateway is not gateway
    _reattach_for_tests(session_pool, new)
    ip.run_cell(f"%%dlload after\npath: {fault_images}\nsplit: 1")
    assert ip.user_ns["after"].num_images == N_IMAGES


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_labelled_folder(root, ("a", "b"), per_class=3, seed=4, sizes=[(32, 24)])
    return root


def _rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


#: The one long-lived thread per driver JVM this process launched: it copies the JVM's
#: stderr into the cell without the start-up noise (session.quiet_jvm_stderr).
JVM_STDERR_THREAD = "sparkdl_magics-jvm-stderr"


def _sparkdl_threads():
    """Threads of ours that belong to a cell (progress tickers, interrupt helpers)."""
    return sorted(t.name for t in threading.enumerate()
                  if t.name.startswith("sparkdl") and t.name != JVM_STDERR_THREAD)


def _jvm_stderr_threads():
    return [t for t in threading.enumerate() if t.name == JVM_STDERR_THREAD]


def test_many_small_cells_leak_no_threads_or_memory(spark, ip, tiny_folder):
    cells = ["%dlspark"] * 3 + [f"%%dlload imgs\npath: {tiny_folder}\nsplit: 0.5"]
    for cell in cells:  # warm-up: imports, Py4J connections, first jobs
        ip.run_cell(cell)
    gc.collect()
    threads_before = threading.active_count()
    rss_before = _rss_mb()
    for i in range(30):
        ip.run_cell("%dlspark")
        if i % 3 == 0:
            ip.run_cell(f"%%dlload imgs\npath: {tiny_folder}\nsplit: 0.5")
    gc.collect()
    assert ip.user_ns["imgs"].num_images == 6
    assert _sparkdl_threads() == [], "progress tickers left running"
    assert len(_jvm_stderr_threads()) <= 2, "one stderr copier per JVM (driver, Connect server)"
    # Py4J may keep a spare connection thread or two; per-cell leaks would be >= 10
    assert threading.active_count() - threads_before <= 2, threading.enumerate()
    assert _rss_mb() - rss_before < 60, "driver memory grew over 40 small cells"


def test_interrupted_and_failed_cells_leave_no_progress_threads(spark, ip, tiny_folder, capfd):
    from IPython.core.error import UsageError
    from sparkdl_magics import progress
    before = progress.settings.mode
    progress.configure(mode="text")
    try:
        for _ in range(10):
            with pytest.raises(UsageError):
                ip.run_cell(f"%%dlload bad\npath: {tiny_folder / 'missing'}")
    finally:
        progress.configure(mode=before)
    assert _sparkdl_threads() == []
    assert "0/0 tasks" not in capfd.readouterr().err  # the error line alone, no empty summary


def test_worker_model_cache_is_bounded(monkeypatch):
    """Switching models in one worker keeps at most MAX_CACHED_MODELS alive."""
    from sparkdl_magics import inference
    built = []

    def fake_build(spec, threads=None):
        built.append(spec)
        return inference.LoadedModel(spec, object(), lambda x: x)

    monkeypatch.setattr(inference, "build", fake_build)
    inference.clear_cache()
    specs = [inference.ModelSpec(model=f"M{i}") for i in range(6)]
    for spec in specs * 3:
        inference.get_model(spec)
    assert len(inference._cache) == inference.MAX_CACHED_MODELS
    inference.get_model(specs[-1])  # the most recent one is kept, not rebuilt
    assert built.count(specs[-1]) == 3
    inference.clear_cache()
