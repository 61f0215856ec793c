"""Which GPU a Spark task's model runs on, and what the task owns (worker side).

When Spark schedules GPUs (``spark.executor.resource.gpu.amount`` with a discovery
script, ``spark.task.resource.gpu.amount``), each task is told its GPU addresses in
``TaskContext.get().resources()["gpu"]`` (a ``BarrierTaskContext`` too). TensorFlow
sees every GPU of the machine unless told otherwise, and grabs all their memory, so
two Python workers would fight over one device. :func:`pin_task_gpus` therefore sets
``CUDA_VISIBLE_DEVICES`` to the task's GPUs *before TensorFlow starts* in the worker
(and ``TF_FORCE_GPU_ALLOW_GROWTH``: memory grows as needed), once per process: the
model the worker caches lives on that GPU. Without resource scheduling, workers are
spread over the visible GPUs by partition id.

What this does not promise: Spark reuses Python workers, and a reused worker keeps the
GPU it was pinned to (TensorFlow cannot move to another device once started), whatever
GPU Spark assigned its later tasks. So every task runs on its worker's GPU, and a
worker's first task on exactly its assigned GPU, but a later task can run on another
GPU than the one Spark assigned it. Spark runs at most as many GPU tasks at once as
there are GPUs, so while each GPU has one worker pinned to it, no two tasks share a
GPU; once a worker is replaced (idle timeout, a failed or cut-short task) two workers
can be pinned to one GPU and then run on it at once, each with its own model in its
memory (memory growth keeps that within bounds; it is slower, not wrong). Setting
``spark.python.worker.reuse=false`` makes every task run on its assigned GPU, at the
cost of loading the model in every task.

The decisions are pure functions of facts (:func:`pick_gpus`, :func:`device_batch_size`),
tested without a GPU; the readers of the facts are small.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Optional, Sequence, Tuple

from . import defaults

GPU = "gpu"
_pin_lock = threading.Lock()
#: The GPUs this process was pinned to (None: not decided yet; (): CPU).
_pinned: Optional[Tuple[str, ...]] = None


def pick_gpus(assigned: Sequence[str], partition_id: int, visible: Sequence[str]
              ) -> Tuple[str, ...]:
    """The GPU addresses a task's model should use.

    *assigned*: what Spark gave the task (resource scheduling): exactly those. Else
    one of the *visible* GPUs, ``partition_id mod count`` (workers spread evenly).
    Neither: none (CPU).
    """
    if assigned:
        return tuple(str(a) for a in assigned)
    if visible:
        return (str(visible[int(partition_id) % len(visible)]),)
    return ()


def task_gpu_addresses(context: Any = None) -> Tuple[str, ...]:
    """The GPU addresses Spark assigned to the running task (``()`` without a task or
    without GPU scheduling). *context*: a ``TaskContext`` / ``BarrierTaskContext``."""
    context = context if context is not None else _task_context()
    if context is None:
        return ()
    resource = context.resources().get(GPU)
    return tuple(resource.addresses) if resource is not None else ()


def _task_context() -> Any:
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    return TaskContext.get()


def visible_gpus(environ: Any = None, driver_dir: str = "/proc/driver/nvidia/gpus"
                 ) -> Tuple[str, ...]:
    """GPUs this process could use, without starting TensorFlow or CUDA: the
    ``CUDA_VISIBLE_DEVICES`` list when set, else one index per GPU the NVIDIA driver
    lists."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return tuple(v.strip() for v in listed.split(",") if v.strip() and v.strip() != "-1")
    try:
        count = len(os.listdir(driver_dir))
    except OSError:
        return ()
    return tuple(str(i) for i in range(count))


def tensorflow_started() -> bool:
    """Whether TensorFlow is already imported here (then its devices are fixed)."""
    return "tensorflow" in sys.modules


def pin_task_gpus(context: Any = None) -> Tuple[str, ...]:
    """Pin this process to the running task's GPUs, once, before TensorFlow starts.

    Returns the GPUs the process uses (``()``: CPU). A process where TensorFlow started
    before any pin (the driver, a test) keeps what it has.
    """
    global _pinned
    with _pin_lock:
        if _pinned is not None:
            return _pinned
        if tensorflow_started():
            _pinned = visible_gpus()
            return _pinned
        context = context if context is not None else _task_context()
        partition = context.partitionId() if context is not None else 0
        visible = visible_gpus()
        chosen = pick_gpus(task_gpu_addresses(context), partition, visible)
        if chosen:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
            os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        _pinned = chosen
        return chosen


def pinned_gpus() -> Optional[Tuple[str, ...]]:
    """What :func:`pin_task_gpus` decided in this process (None: not called yet)."""
    return _pinned


def device_batch_size(batch_size: int, on_gpu: bool) -> int:
    """Images per model call on this device: the default (:data:`defaults.BATCH_SIZE`,
    sized for CPUs) becomes :data:`defaults.GPU_BATCH_SIZE` on a GPU, which needs large
    batches to be busy; any other number is used as given."""
    if on_gpu and int(batch_size) == defaults.BATCH_SIZE:
        return defaults.GPU_BATCH_SIZE
    return int(batch_size)


def task_cpus(context: Any = None, fallback: int = 1) -> int:
    """CPUs the running task owns (``spark.task.cpus``, from the task itself), for
    decode threads and TensorFlow's pools; *fallback* outside a task."""
    context = context if context is not None else _task_context()
    try:
        cpus = int(context.cpus()) if context is not None else 0
    except (AttributeError, TypeError, ValueError):
        cpus = 0
    return cpus if cpus > 0 else max(int(fallback), 1)


def session_gpus(conf: Any) -> Optional[str]:
    """What ``%dlspark`` says about GPUs, from the session's settings: the GPUs per
    executor and per task, or None when Spark schedules no GPUs."""
    def get(key: str) -> Optional[str]:
        try:
            return conf.get(key, None)
        except Exception:  # noqa: BLE001 - an unreadable setting is simply not shown
            return None
    per_task = get("spark.task.resource.gpu.amount")
    per_executor = get("spark.executor.resource.gpu.amount") or \
        get("spark.worker.resource.gpu.amount")
    if not per_task and not per_executor:
        return None
    parts = []
    if per_executor:
        parts.append(f"{per_executor} per executor")
    if per_task:
        parts.append(f"{per_task} per task")
    return ", ".join(parts)


__all__ = ["pick_gpus", "task_gpu_addresses", "visible_gpus", "pin_task_gpus", "pinned_gpus",
           "device_batch_size", "task_cpus", "session_gpus", "tensorflow_started"]
