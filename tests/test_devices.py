"""devices: which GPU a task's model runs on, without a GPU.

The decisions are pure functions of facts (tested directly), and the readers are tested
against the real thing: Spark's own resource scheduling in a ``local-cluster`` (a
discovery script announces two GPUs; Spark hands them to tasks, plain and barrier, as
it would on a GPU cluster; TensorFlow then finds no device behind the address and runs
on the CPU), and the fallback spread in a cluster whose executors see three GPUs but
schedule none.
"""
from __future__ import annotations

import stat

import pandas as pd
import pytest

from helpers import SMALL, binary_images


# --------------------------------------------------------------------------- pure decisions

def test_a_task_uses_exactly_the_gpus_spark_assigned_it():
    from sparkdl_magics.devices import pick_gpus
    assert pick_gpus(["1"], partition_id=0, visible=["0", "1", "2"]) == ("1",)
    assert pick_gpus(["2", "3"], partition_id=5, visible=["0"]) == ("2", "3")


def test_without_scheduling_workers_spread_evenly_over_the_visible_gpus():
    from collections import Counter

    from sparkdl_magics.devices import pick_gpus
    picked = [pick_gpus([], partition_id=p, visible=["0", "1", "2"]) for p in range(12)]
    assert picked[:4] == [("0",), ("1",), ("2",), ("0",)]
    assert Counter(picked) == {("0",): 4, ("1",): 4, ("2",): 4}
    assert pick_gpus([], partition_id=7, visible=[]) == ()  # no GPU: CPU


def test_visible_gpus_come_from_cuda_visible_devices_else_the_driver(tmp_path):
    from sparkdl_magics.devices import visible_gpus
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}, str(tmp_path)) == ("2", "3")
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, str(tmp_path)) == ()
    for bus in ("0000:17:00.0", "0000:65:00.0"):
        (tmp_path / bus).mkdir()
    assert visible_gpus({}, str(tmp_path)) == ("0", "1")
    assert visible_gpus({}, str(tmp_path / "no-driver")) == ()


def test_the_default_batch_grows_on_a_gpu_and_a_chosen_one_is_kept():
    from sparkdl_magics import defaults
    from sparkdl_magics.devices import device_batch_size
    assert device_batch_size(defaults.BATCH_SIZE, on_gpu=True) == defaults.GPU_BATCH_SIZE
    assert defaults.GPU_BATCH_SIZE > defaults.BATCH_SIZE
    assert device_batch_size(defaults.BATCH_SIZE, on_gpu=False) == defaults.BATCH_SIZE
    assert device_batch_size(8, on_gpu=True) == 8


def test_session_gpus_says_what_spark_schedules():
    from sparkdl_magics.devices import session_gpus
    assert session_gpus({}) is None
    assert session_gpus({"spark.executor.resource.gpu.amount": "4",
                         "spark.task.resource.gpu.amount": "1"}) == "4 per executor, 1 per task"


# --------------------------------------------------------------------------- real Spark

def _discovery_script(folder, addresses):
    script = folder / "discover_gpus.sh"
    quoted = ", ".join(f'"{a}"' for a in addresses)
    script.write_text(f"#!/bin/sh\necho '{{\"name\": \"gpu\", \"addresses\": [{quoted}]}}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def _two_gpus_conf(folder, **extra):
    """A local-cluster worker and executor with two GPUs (announced by a discovery
    script), one per task."""
    script = _discovery_script(folder, ["0", "1"])
    return {"spark.ui.enabled": "false", "spark.worker.resource.gpu.amount": "2",
            "spark.worker.resource.gpu.discoveryScript": script,
            "spark.executor.resource.gpu.amount": "2",
            "spark.executor.resource.gpu.discoveryScript": script,
            "spark.task.resource.gpu.amount": "1", **extra}


def _pins_of(df):
    """Per task of *df*'s partitions: its worker, partition, assigned GPUs, what the
    worker is pinned to, and whether this task made the pin (the worker's first)."""
    def pins(batches):  # defined here: shipped by value (workers cannot import tests)
        import os

        import pandas as pd
        from pyspark import TaskContext

        from sparkdl_magics import devices
        for batch in batches:
            first = devices.pinned_gpus() is None
            pinned = devices.pin_task_gpus()
            yield pd.DataFrame({
                "pid": [os.getpid()], "partition": [TaskContext.get().partitionId()],
                "assigned": [",".join(devices.task_gpu_addresses())],
                "pinned": [",".join(pinned)], "first": [first],
                "env": [os.environ.get("CUDA_VISIBLE_DEVICES", "")]})
    schema = "pid long, partition int, assigned string, pinned string, first boolean, env string"
    return df.mapInPandas(pins, schema).toPandas()


def _check_every_task(rows, gpus, tasks):
    """Every task's device, not just each worker's first: each task got one of *gpus*,
    ran on its worker's GPU (``CUDA_VISIBLE_DEVICES`` set before TensorFlow started);
    a worker never moves; its first task ran on exactly the GPU Spark assigned it."""
    assert len(rows) == tasks
    assert set(rows["assigned"]) <= gpus and rows["assigned"].str.len().eq(1).all()
    assert (rows["env"] == rows["pinned"]).all()
    assert rows.groupby("pid")["pinned"].nunique().eq(1).all(), rows
    first = rows[rows["first"]]
    assert sorted(first["pid"]) == sorted(rows["pid"].unique())  # one pinning task each
    assert (first["pinned"] == first["assigned"]).all(), first
    moved = rows[rows["pinned"] != rows["assigned"]]
    print(f"\n{len(moved)} of {len(rows)} tasks ran on their worker's GPU, not the one "
          f"Spark assigned them (reused workers: see devices.py)")
    return moved


def _forget(conf):
    """Drop *conf* from the driver JVM's system properties after its session stopped: a
    JVM launched with a session's settings keeps them there, and every later session in
    this process (other test modules) would inherit GPU scheduling."""
    from pyspark import SparkContext
    if SparkContext._jvm is not None:
        for key in conf:
            SparkContext._jvm.System.clearProperty(key)


@pytest.mark.slow
@pytest.mark.cluster
def test_spark_gpu_scheduling_pins_each_worker_to_its_task_gpu(session_pool, tmp_path,
                                                               image_folder, weights_dir):
    from helpers import write_weights

    from sparkdl_magics import featurize, session
    session_pool.close()
    conf = _two_gpus_conf(tmp_path, **{"spark.sql.shuffle.partitions": "4"})
    spark = session.start_local("local-cluster[1,2,1024]", conf=conf)
    try:
        # more tasks than slots, twice: Python workers are reused
        rows = pd.concat([_pins_of(spark.range(0, 12, 1, 12)) for _ in range(2)])
        _check_every_task(rows, gpus={"0", "1"}, tasks=24)
        # a barrier stage's tasks (BarrierTaskContext) get their GPU the same way
        barrier = spark.sparkContext.parallelize(range(2), 2).barrier().mapPartitions(
            lambda it: [__import__("sparkdl_magics.devices").devices.task_gpu_addresses()]
        ).collect()
        assert sorted(barrier) == [("0",), ("1",)]
        assert "GPUs: 2 per executor, 1 per task" in str(session.describe(spark))
        # the product path runs in such a session (the addresses hold no real GPU here:
        # TensorFlow finds none and the model runs on the CPU)
        df = binary_images(spark, image_folder / "daisy")
        fs = featurize(df, model=SMALL, weights=str(write_weights(SMALL, weights_dir)),
                       batch_size=4, precision="bfloat16")
        assert fs.stats["images"] == df.count() and fs.stats["precision"] == "bfloat16"
    finally:
        session.stop()
        _forget([k for k in conf if "gpu" in k or "executorEnv" in k])


@pytest.mark.slow
@pytest.mark.cluster
def test_without_worker_reuse_every_task_runs_on_its_assigned_gpu(session_pool, tmp_path):
    """What devices.py offers where each task must run on the GPU Spark assigned it:
    no reused worker, so every task pins a fresh process to its own GPU."""
    from sparkdl_magics import session
    session_pool.close()
    conf = _two_gpus_conf(tmp_path, **{"spark.python.worker.reuse": "false"})
    spark = session.start_local("local-cluster[1,2,1024]", conf=conf)
    try:
        rows = _pins_of(spark.range(0, 8, 1, 8))
    finally:
        session.stop()
        _forget([k for k in conf if "gpu" in k or "executorEnv" in k or "reuse" in k])
    moved = _check_every_task(rows, gpus={"0", "1"}, tasks=8)
    assert rows["first"].all() and moved.empty, rows


@pytest.mark.slow
@pytest.mark.cluster
def test_without_gpu_scheduling_workers_spread_over_the_visible_gpus(session_pool):
    from sparkdl_magics import session
    session_pool.close()
    conf = {"spark.ui.enabled": "false", "spark.executorEnv.CUDA_VISIBLE_DEVICES": "0,1,2"}
    spark = session.start_local("local-cluster[1,2,1024]", conf=conf)
    try:
        rows = _pins_of(spark.range(0, 6, 1, 6))
    finally:
        session.stop()
        _forget([k for k in conf if "gpu" in k or "executorEnv" in k])
    assert (rows["assigned"] == "").all()
    first = rows[rows["first"]]
    assert len(first) >= 1
    assert (first["pinned"] == (first["partition"] % 3).astype(str)).all()
    assert (rows["env"] == rows["pinned"]).all()


def test_a_task_without_gpus_runs_on_the_cpu(spark):
    rows = _pins_of(spark.range(0, 2, 1, 2))
    assert (rows["assigned"] == "").all() and (rows["pinned"] == "").all()
