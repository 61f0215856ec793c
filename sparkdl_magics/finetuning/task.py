"""The barrier task: one per worker, inside ``mapInPandas(..., barrier=True)``.

Each task writes its partition (compressed bytes, labels) to a local folder, exchanges
``host:port`` and its training-image count with the others (``allGather``), and runs
:mod:`.worker` in a child Python process with ``TF_CONFIG`` for its rank. The child is
tied to the task: it gets SIGKILL when the task's process dies (Linux ``PR_SET_PDEATHSIG``;
Spark kills the Python worker of a cancelled task) and is killed when the task's
generator is closed, so a cancelled cell leaves no TensorFlow process behind. The task
yields the child's records, and the chief the saved model file, as rows.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional

#: The stage's output rows: who, what (a JSON record), and the chief's model file.
OUTPUT_SCHEMA = "rank int, record string, model binary"
#: Columns the stage reads.
INPUT_COLUMNS = ("path", "content", "label", "validation")


@dataclass(frozen=True)
class TaskPlan:
    """What every task needs, pickled into the stage (small: no images, no weights)."""

    job: Dict[str, Any]  # the worker's job, less rank/paths/steps (filled per task)
    weights_file: Any = None  # ShippedFile of the registry weights
    model_file: Any = None  # ShippedFile of the user's model
    live_log: str = ""  # the driver's live epoch file (used when this host shares it)

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        return run_task(self, batches)


def run_task(plan: TaskPlan, batches: Iterator[Any]) -> Iterator[Any]:
    import pandas as pd
    from pyspark import BarrierTaskContext

    from .cluster import free_port, tf_config_json
    ctx = BarrierTaskContext.get()
    rank = ctx.partitionId()
    workdir = tempfile.mkdtemp(prefix=f"sparkdl-finetune-{rank}-")
    proc: Optional[subprocess.Popen] = None
    try:
        frames = [b[list(INPUT_COLUMNS)] for b in batches]
        frame = pd.concat(frames, ignore_index=True) if frames else \
            pd.DataFrame({c: [] for c in INPUT_COLUMNS})
        data = os.path.join(workdir, "data.parquet")
        frame.to_parquet(data)
        n_train = int((~frame["validation"].astype(bool)).sum())
        host = ctx.getTaskInfos()[rank].address.rsplit(":", 1)[0]
        mine = {"address": f"{host}:{free_port()}", "train": n_train}
        peers = [json.loads(m) for m in ctx.allGather(json.dumps(mine))]
        empty = [i for i, p in enumerate(peers) if p["train"] == 0]
        if empty:
            raise RuntimeError(
                f"fine-tuning: worker(s) {', '.join(map(str, empty))} got no training "
                f"images ({sum(p['train'] for p in peers)} in all for {len(peers)} workers): "
                "use fewer workers")
        job = dict(plan.job, rank=rank, workers=len(peers), data=data,
                   log=os.path.join(workdir, "log.jsonl"),
                   model_out=os.path.join(workdir, "model.keras"),
                   live_log=plan.live_log,
                   steps=int(math.ceil(max(p["train"] for p in peers) / plan.job["batch_size"])))
        network = dict(job["network"])
        if plan.weights_file is not None:
            network["weights_path"] = plan.weights_file.local_path()
        if plan.model_file is not None:
            network["model_path"] = plan.model_file.local_path()
        job["network"] = network
        job_path = os.path.join(workdir, "job.json")
        with open(job_path, "w", encoding="utf-8") as f:
            json.dump(job, f)
        env = dict(os.environ, TF_CONFIG=tf_config_json([p["address"] for p in peers], rank),
                   PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        with open(os.path.join(workdir, "stderr.txt"), "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sparkdl_magics.finetuning.worker", job_path],
                env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=workdir,
                preexec_fn=_die_with_parent)
            while proc.poll() is None:
                time.sleep(0.2)
        if proc.returncode != 0:
            raise RuntimeError(f"fine-tuning worker {rank} failed: "
                               f"{_last_error(os.path.join(workdir, 'stderr.txt'))}")
        yield _records(rank, job)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _records(rank: int, job: Dict[str, Any]) -> Any:
    import pandas as pd
    with open(job["log"], encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    models = [None] * len(lines)
    if rank == 0:
        with open(job["model_out"], "rb") as f:
            lines.append(json.dumps({"kind": "model", "rank": 0}))
            models.append(f.read())
    return pd.DataFrame({"rank": [rank] * len(lines), "record": lines, "model": models})


def _last_error(path: str) -> str:
    """The exception line of the child's traceback (else its last line)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.rstrip() for line in f if line.strip()]
    except OSError:
        return "no output"
    for line in reversed(lines):
        if not line.startswith((" ", "\t")) and ("Error" in line or "Exception" in line):
            return line[:300]
    return lines[-1][:300] if lines else "no output (killed?)"


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the task's process dies (Linux only)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


__all__ = ["TaskPlan", "run_task", "OUTPUT_SCHEMA", "INPUT_COLUMNS"]
