"""The training cluster: how many Spark tasks train together, and their TF_CONFIG.

A barrier stage starts all its tasks at once or not at all, so the slot check runs on
the driver *before* the stage (Spark itself would retry the stage for minutes and then
fail with a JVM error). Inside the stage, each task picks a free port and the tasks
exchange ``host:port`` with ``BarrierTaskContext.allGather``; the list, in partition
order, is the ``TF_CONFIG`` cluster of ``tf.distribute.MultiWorkerMirroredStrategy``
(partition 0 is the chief).
"""
from __future__ import annotations

import json
import re
import socket
from typing import Any, Dict, List, Optional

from ..errors import OptionError


def check_workers(workers: Any, slots: int) -> int:
    """``workers`` as a number of tasks that fit the cluster's free slots now (``None``/
    ``auto``: all of them), or a one-line error."""
    if workers is None or str(workers).strip().lower() == "auto":
        return max(1, int(slots))
    try:
        number = int(workers)
    except (TypeError, ValueError):
        raise OptionError(f"option 'workers': expected a whole number or auto "
                          f"(got {workers!r})") from None
    if number < 1:
        raise OptionError(f"option 'workers': must be at least 1 (got {workers!r})")
    if number > slots:
        raise OptionError(too_few_slots(number, slots))
    return number


def too_few_slots(workers: int, slots: Optional[int]) -> str:
    have = f"only {slots} task slot{'s' if slots != 1 else ''}" if slots is not None \
        else "fewer task slots"
    return (f"option 'workers': {workers} workers need {workers} free task slots at once "
            f"(a barrier stage), but the cluster has {have}; use workers: "
            f"{slots or 1} or fewer, or add executor cores")


#: Spark's own words when a barrier stage needs more slots than the cluster has, and
#: when dynamic allocation is on (barrier stages refuse it).
_SPARK_SLOTS = re.compile(r"barrier stage that requires more slots", re.IGNORECASE)
_SPARK_DYNAMIC = re.compile(r"Barrier execution mode does not support dynamic resource "
                            r"allocation", re.IGNORECASE)


def is_slots_error(exc: BaseException) -> bool:
    """Whether *exc* is Spark refusing a barrier stage for want of slots."""
    return bool(_SPARK_SLOTS.search(str(exc)))


def barrier_refusal(exc: BaseException, workers: int) -> Optional[str]:
    """One line for Spark refusing to start the barrier stage, or None for other errors."""
    if is_slots_error(exc):
        return too_few_slots(workers, None)
    if _SPARK_DYNAMIC.search(str(exc)):
        return ("fine-tuning runs as a Spark barrier stage, which Spark refuses under dynamic "
                "allocation: start the session with spark.dynamicAllocation.enabled=false")
    return None


def free_port() -> int:
    """A TCP port free on this host now (TensorFlow's gRPC server binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def tf_config(addresses: List[str], rank: int) -> Dict[str, Any]:
    """TF_CONFIG for task *rank* of a cluster whose workers are *addresses*."""
    return {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": rank}}


def tf_config_json(addresses: List[str], rank: int) -> str:
    return json.dumps(tf_config(addresses, rank))


__all__ = ["check_workers", "too_few_slots", "is_slots_error", "barrier_refusal", "free_port", "tf_config",
           "tf_config_json"]
