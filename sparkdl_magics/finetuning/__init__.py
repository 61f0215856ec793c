"""Fine-tuning a network on the cluster, data-parallel (what ``%%finetune`` calls).

``finetune(images, model="MobileNetV3Small", unfreeze=20, epochs=5)`` trains a new head
(and, with ``unfreeze``, the top of the backbone) on the train split of an ImageSet. The
training is one Spark *barrier* stage (``mapInPandas(..., barrier=True)``, classic and
Connect): its ``workers`` tasks form one ``MultiWorkerMirroredStrategy`` cluster, each
reading only its own partition of compressed images, gradients all-reduced every step
(:mod:`.task`, :mod:`.worker`). Images never come to the driver; the chief task returns
the trained ``.keras`` file (a few MB) and every task its per-epoch records as rows.

The result is a :class:`~sparkdl_magics.results.FineTunedModel`: a FittedModel whose
pipeline applies the Keras file through the batch runner (:mod:`.stage`), so
``evaluate``, ``predict``, ``save`` / ``load_model`` take it like any fitted model.

Live progress: the chief appends each epoch's metrics to a file in a driver folder;
where the workers share the driver's filesystem (local and local-cluster masters, a
Connect server on this machine) the driver reads it while the stage runs and calls
``on_epoch``; elsewhere the epochs are reported when the stage ends.

(A package named ``finetuning``, not ``finetune``: ``sparkdl_magics.finetune`` is the
public function, which a submodule of that name would shadow.)
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import defaults
from ..errors import DataError, OptionError
from ..results import CONTENT_COL, LABEL_COL, LABEL_NAME_COL, PATH_COL, FineTunedModel, ImageSet
from .cluster import barrier_refusal, check_workers
from .network import ALL, NetworkSpec, check_head, check_unfreeze, serving_preprocess

EpochCallback = Callable[[Dict[str, Any]], None]


def finetune(images: Any, model: str = defaults.FINETUNE_MODEL,
             weights: Optional[str] = defaults.WEIGHTS, *, unfreeze: Any = 0,
             head: Any = (), epochs: int = defaults.FINETUNE_EPOCHS,
             batch_size: int = defaults.FINETUNE_BATCH_SIZE,
             learning_rate: Any = defaults.FINETUNE_LEARNING_RATE,
             augment: Any = None, workers: Any = None, seed: int = defaults.SEED,
             validation: Optional[float] = None, patience: Optional[int] = None,
             image_size: Any = None, layer: Optional[str] = None,
             preprocess: Optional[str] = None, unsafe: bool = False,
             trace_steps: bool = False, on_epoch: Optional[EpochCallback] = None,
             spark: Any = None, track: Optional[bool] = None) -> FineTunedModel:
    """Fine-tune *model* on ``images.train``; see the module docstring.

    ``unfreeze``: 0 trains the head only; N also the top N backbone layers with weights
    (BatchNormalization never: it stays in inference mode); ``all`` the whole backbone.
    ``head``: hidden layer sizes (``[256]``) or ``{hidden: [256], dropout: 0.3}``.
    ``batch_size``: images per step *per worker* (the global batch is that x workers).
    ``learning_rate``: the head's; a pair ``[head, backbone]`` sets the unfrozen
    layers' too (default a tenth of the head's). ``augment``: the seeded flips/rotations
    of :mod:`sparkdl_magics.augment`, drawn anew each epoch. ``workers``: Spark tasks
    training together (default: every task slot). ``validation``: a fraction of the
    train images held out (seeded, by path) for per-epoch validation metrics and early
    stopping after ``patience`` epochs without a better validation loss (the best
    epoch's weights are kept). ``image_size``: train at this size (``64`` or ``[w, h]``)
    instead of the model's own. ``trace_steps``: record every worker's weights checksum
    after every step (tests use it to show the workers stay identical).
    """
    from ..session import ensure_usable, task_cores
    started = time.perf_counter()
    train, classes, image_col = _training_images(images)
    spark = spark or train.sparkSession
    ensure_usable(spark)
    opts = _check_options(spark, unfreeze, head, epochs, batch_size, learning_rate, augment,
                          workers, seed, validation, patience, trace_steps)
    if len(classes) < 2:
        raise DataError(f"fine-tuning needs at least two classes (got {len(classes)})")
    resolved = _resolve(model, weights, layer, preprocess, unsafe, spark)
    net = _network_spec(resolved, len(classes), image_size, opts.hidden, opts.dropout,
                        opts.unfreeze)
    unfrozen = _check_network(net, resolved)
    from .task import TaskPlan
    plan = TaskPlan(job=opts.job(net, task_cores(spark)),
                    weights_file=resolved.spec.weights_file,
                    model_file=resolved.spec.model_file)
    frame = _stage_input(train, image_col, opts.validation, opts.seed, opts.workers)
    records, model_bytes, live = _train(spark, frame, plan, opts, resolved.model_name,
                                        on_epoch)
    model_file = _keep_model_file(model_bytes, resolved.model_name)
    result = _result(model_file, records, classes, net, resolved, images, opts, unfrozen,
                     image_col, live, time.perf_counter() - started)
    from ..tracking import log_finetune
    log_finetune(result, track)
    return result


@dataclass(frozen=True)
class _Options:
    """The checked training options (what the job and the result's params are made of)."""

    unfreeze: int
    hidden: Tuple[int, ...]
    dropout: Optional[float]
    epochs: int
    batch_size: int
    head_lr: float
    backbone_lr: float
    augment: Any  # an Augmentation or None
    workers: int
    seed: int
    validation: Optional[float]
    patience: Optional[int]
    trace_steps: bool

    def job(self, net: NetworkSpec, threads: int) -> Dict[str, Any]:
        """What every worker process is told (JSON); the task adds its rank and paths."""
        return {"network": net.as_dict(), "epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate": self.head_lr, "backbone_learning_rate": self.backbone_lr,
                "augment": asdict(self.augment) if self.augment is not None else None,
                "seed": self.seed, "patience": self.patience,
                "trace_steps": self.trace_steps, "threads": threads}


def _check_options(spark: Any, unfreeze: Any, head: Any, epochs: Any, batch_size: Any,
                   learning_rate: Any, augment: Any, workers: Any, seed: Any,
                   validation: Any, patience: Any, trace_steps: bool) -> _Options:
    """Every option checked, in one line each, before anything is built or shipped."""
    from ..augment import parse_augment
    from ..inference import check_batch_size, check_positive_int
    from ..session import task_slots
    hidden, dropout = check_head(head)
    head_lr, backbone_lr = check_learning_rate(learning_rate)
    validation = _check_fraction(validation)
    patience = None if validation is None else check_positive_int(
        "patience", defaults.FINETUNE_PATIENCE if patience is None else patience)
    return _Options(
        unfreeze=check_unfreeze(unfreeze), hidden=hidden, dropout=dropout,
        epochs=check_positive_int("epochs", epochs), batch_size=check_batch_size(batch_size),
        head_lr=head_lr, backbone_lr=backbone_lr, augment=parse_augment(augment),
        workers=check_workers(workers, task_slots(spark)), seed=int(seed),
        validation=validation, patience=patience, trace_steps=bool(trace_steps))


def _train(spark: Any, frame: Any, plan: Any, opts: _Options, model_name: str,
           on_epoch: Optional[EpochCallback]) -> Tuple[List[Dict[str, Any]], bytes, bool]:
    """Run the barrier stage, showing epochs live where the driver can read the chief's
    file; returns (records, model file bytes, whether epochs were shown live)."""
    from dataclasses import replace
    live_dir = tempfile.mkdtemp(prefix="sparkdl-finetune-live-")
    live_log = os.path.join(live_dir, "epochs.jsonl")
    try:
        with _LiveEpochs(live_log, on_epoch) as live:
            rows = _run_stage(spark, frame, replace(plan, live_log=live_log), opts.workers,
                              model_name, opts.epochs)
        records, model_bytes = _parse_rows(rows)
    finally:
        shutil.rmtree(live_dir, ignore_errors=True)
    if on_epoch is not None:  # epochs the live file did not carry (remote workers)
        for record in records:
            if record["kind"] == "epoch" and record["rank"] == 0 and record["epoch"] > live.shown:
                on_epoch(record)
    return records, model_bytes, live.shown > 0


# --------------------------------------------------------------------------- checks

def _training_images(images: Any) -> Tuple[Any, List[str], str]:
    """(train DataFrame, class names, image column) of an ImageSet or a labelled frame."""
    from ..session import is_dataframe
    if isinstance(images, ImageSet):
        if not images.labelled:
            raise DataError("fine-tuning needs labelled images (these were loaded with "
                            "labels: none)")
        df, classes, col = images.train, list(images.classes), images.image_col
    elif is_dataframe(images):
        if LABEL_NAME_COL not in images.columns or LABEL_COL not in images.columns:
            raise DataError(f"a DataFrame to fine-tune on needs '{LABEL_COL}' and "
                            f"'{LABEL_NAME_COL}' columns (or pass an image set from %%dlload)")
        pairs = images.select(LABEL_COL, LABEL_NAME_COL).distinct().collect()
        classes = [name for _, name in sorted((float(r[0]), r[1]) for r in pairs)]
        df, col = images, CONTENT_COL
    else:
        raise DataError(f"cannot fine-tune on a {type(images).__name__}: expected an image "
                        "set from %%dlload / load_images, or a DataFrame of images")
    if col != CONTENT_COL or CONTENT_COL not in df.columns:
        raise DataError("fine-tuning reads compressed image bytes (a 'content' column, as "
                        "%%dlload gives); these images are Spark image structs")
    return df, classes, col


def check_learning_rate(value: Any) -> Tuple[float, float]:
    pair = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(pair) not in (1, 2):
        raise OptionError(f"option 'learning_rate': expected a number or [head, backbone] "
                          f"(got {value!r})")
    try:
        rates = [float(v) for v in pair]
    except (TypeError, ValueError):
        raise OptionError(f"option 'learning_rate': expected a number or [head, backbone] "
                          f"(got {value!r})") from None
    if any(not 0.0 < r < 10.0 for r in rates):
        raise OptionError(f"option 'learning_rate': must be above 0 (and below 10) "
                          f"(got {value!r})")
    backbone = rates[1] if len(rates) == 2 else rates[0] * defaults.FINETUNE_BACKBONE_LR_FACTOR
    return rates[0], backbone


def _check_fraction(value: Any) -> Optional[float]:
    if value is None:
        return None
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"option 'validation': expected a fraction between 0 and 1 "
                          f"(got {value!r})") from None
    if not 0.0 < fraction < 1.0:
        raise OptionError(f"option 'validation': must be between 0 and 1 (got {value!r})")
    return fraction


def _image_size(value: Any, default: Tuple[int, int]) -> Tuple[int, int]:
    if value is None:
        return tuple(default)
    pair = list(value) if isinstance(value, (list, tuple)) else [value, value]
    try:
        w, h = (int(v) for v in pair)
    except (TypeError, ValueError):
        raise OptionError(f"option 'image_size': expected a size such as 96 or [96, 96] "
                          f"(got {value!r})") from None
    if min(w, h) < 32:
        raise OptionError(f"option 'image_size': at least 32 pixels (got {value!r})")
    return w, h


def _resolve(model: str, weights: Optional[str], layer: Optional[str],
             preprocess: Optional[str], unsafe: bool, spark: Any) -> Any:
    from ..weights import resolve_spec
    return resolve_spec(model, weights, layer, preprocess, unsafe=unsafe, spark=spark)


def _network_spec(resolved: Any, num_classes: int, image_size: Any, hidden: Tuple[int, ...],
                  dropout: Optional[float], unfreeze: int) -> NetworkSpec:
    spec = resolved.spec
    if spec.model_file is not None and image_size is not None:
        raise OptionError("option 'image_size': a model file trains at its own input size")
    return NetworkSpec(
        num_classes=num_classes, input_size=_image_size(image_size, spec.input_size),
        model=spec.model, layer=spec.layer, safe_mode=spec.safe_mode,
        preprocess=serving_preprocess(spec.model, None if spec.model else spec.preprocess),
        hidden=hidden, dropout=defaults.FINETUNE_DROPOUT if dropout is None else dropout,
        unfreeze=unfreeze)


def _check_network(net: NetworkSpec, resolved: Any) -> int:
    """Build the network once on the driver: bad options fail here, in one line, before
    any task starts. Returns how many backbone layers train."""
    from dataclasses import replace

    from .network import build
    spec = resolved.spec
    local = replace(net, weights_path=spec.weights_file.driver_path if spec.weights_file else "",
                    model_path=spec.model_file.driver_path if spec.model_file else "")
    return len(build(local).unfrozen)


# --------------------------------------------------------------------------- the stage

def _stage_input(train: Any, image_col: str, validation: Optional[float], seed: int,
                 workers: int) -> Any:
    """The train rows the tasks read: path, bytes, int label, validation flag; one
    partition per worker."""
    from pyspark.sql import functions as F
    if validation is None:
        held_out = F.lit(False)
    else:
        bucket = F.pmod(F.xxhash64(F.lit(int(seed)), F.col(PATH_COL)), F.lit(10000))
        held_out = bucket < F.lit(int(round(validation * 10000)))
    return (train.where(F.col(LABEL_COL).isNotNull())
            .select(F.col(PATH_COL), F.col(image_col).alias(CONTENT_COL),
                    F.col(LABEL_COL).cast("int").alias(LABEL_COL), held_out.alias("validation"))
            .repartition(workers))


def _run_stage(spark: Any, frame: Any, plan: Any, workers: int, model_name: str,
               epochs: int) -> List[Any]:
    from ..progress import work
    from .task import OUTPUT_SCHEMA
    description = (f"fine-tuning {model_name}: {epochs} epoch{'s' if epochs != 1 else ''} "
                   f"on {workers} worker{'s' if workers != 1 else ''}")
    try:
        with work(spark, description, unit="tasks"):
            return frame.mapInPandas(plan, OUTPUT_SCHEMA, barrier=True).collect()
    except Exception as exc:
        refusal = barrier_refusal(exc, workers)
        if refusal:
            raise OptionError(refusal) from None
        raise


def _parse_rows(rows: Sequence[Any]) -> Tuple[List[Dict[str, Any]], bytes]:
    records, model_bytes = [], None
    for row in rows:
        record = json.loads(row["record"])
        if record["kind"] == "model":
            model_bytes = bytes(row["model"])
        else:
            records.append(record)
    if model_bytes is None:
        raise DataError("fine-tuning finished without a model from the chief task")
    return records, model_bytes


class _LiveEpochs:
    """Reads the chief's epoch lines while the stage runs (when this host can see them)."""

    def __init__(self, path: str, callback: Optional[EpochCallback], interval: float = 0.5):
        self.path, self.callback, self.interval = path, callback, interval
        self.shown = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._offset = 0

    def __enter__(self) -> "_LiveEpochs":
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


# --------------------------------------------------------------------------- the result

_kept_dir: Optional[str] = None


def _keep_model_file(data: bytes, model_name: str) -> str:
    """The trained model as a file on the driver (the session's staging folder)."""
    global _kept_dir
    if _kept_dir is None or not os.path.isdir(_kept_dir):
        _kept_dir = tempfile.mkdtemp(prefix="sparkdl_magics-finetuned-")
    path = os.path.join(_kept_dir, f"finetuned-{model_name}-{uuid.uuid4().hex[:8]}.keras")
    with open(path, "wb") as f:
        f.write(data)
    return path


def history_frame(records: List[Dict[str, Any]]) -> Any:
    import pandas as pd
    cols = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "images",
            "images_per_s_per_worker"]
    rows = [r for r in records if r["kind"] == "epoch" and r["rank"] == 0]
    frame = pd.DataFrame(rows).sort_values("epoch") if rows else pd.DataFrame(columns=cols)
    return frame[[c for c in cols if c in frame.columns]].reset_index(drop=True)


def checksum_frame(records: List[Dict[str, Any]]) -> Any:
    import pandas as pd
    rows = [{"rank": r["rank"], "kind": r["kind"], "epoch": r.get("epoch"),
             "step": r.get("step"), "checksum": r["checksum"]}
            for r in records if "checksum" in r]
    return pd.DataFrame(rows, columns=["rank", "kind", "epoch", "step", "checksum"])


def _result(model_file: str, records: List[Dict[str, Any]], classes: List[str],
            net: NetworkSpec, resolved: Any, images: Any, opts: _Options, unfrozen: int,
            image_col: str, live: bool, seconds: float) -> FineTunedModel:
    from .stage import pipeline
    history = history_frame(records)
    stopped = [r["epoch"] for r in records if r["kind"] == "stopped" and r["rank"] == 0]
    notes = []
    if stopped:
        notes.append(f"early stopping after epoch {stopped[0]} (the validation loss stopped "
                     "improving); the best epoch's weights are kept")
    if resolved.untrained:
        notes.append("the backbone started from untrained weights (weights: none)")
    skipped = sorted({p for r in records if r["kind"] == "done" for p in r.get("skipped", ())})
    if skipped:
        notes.append(f"{len(skipped)} training image{'s' if len(skipped) != 1 else ''} could "
                     f"not be decoded and trained nothing (e.g. {skipped[0]})")
    params = {"unfreeze": "all" if net.unfreeze == ALL else net.unfreeze,
              "head": list(net.hidden), "dropout": net.dropout, "epochs": opts.epochs,
              "batch_size": opts.batch_size, "learning_rate": opts.head_lr,
              "backbone_learning_rate": opts.backbone_lr, "workers": opts.workers,
              "image_size": list(net.input_size)}
    if opts.augment is not None:
        params["augment"] = asdict(opts.augment)
    if opts.validation is not None:
        params["validation"] = opts.validation
    return FineTunedModel(
        pipeline_model=pipeline(model_file, classes, net.preprocess, defaults.BATCH_SIZE,
                                image_col),
        classes=list(classes), classifier=f"fine-tuned {resolved.model_name}",
        metric="loss", params=params, notes=notes, model_name=resolved.model_name,
        train_count=sum(r["train"] for r in records if r["kind"] == "data"),
        untrained=resolved.untrained, num_features=len(classes),
        model_file=model_file, preprocess=net.preprocess, input_size=net.input_size,
        history=history, checksums=checksum_frame(records), workers=opts.workers,
        unfreeze=params["unfreeze"], unfrozen_layers=unfrozen, head=tuple(net.hidden),
        stopped_early=stopped[0] if stopped else None, seconds=round(seconds, 2),
        live_progress=live, images=images if isinstance(images, ImageSet) else None,
        objective_history=[float(v) for v in history["loss"]] if len(history) else None)


__all__ = ["finetune", "check_learning_rate", "history_frame", "checksum_frame"]
