"""The driver's side of ``finetune``: check every option, resolve and ship the backbone,
run the barrier stage, collect the workers' records and the chief's model file.

See the package docstring for the whole picture; :mod:`.options` for the options and
the linear-probe-then-fine-tune defaults, :mod:`.worker` for the training loop.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import defaults
from ..errors import DataError, OptionError
from ..results import CONTENT_COL, LABEL_COL, LABEL_NAME_COL, PATH_COL, FineTunedModel, ImageSet
from .cluster import barrier_refusal
from .live import EpochCallback, LiveEpochs
from .network import NetworkSpec, serving_preprocess
from .options import FineTuneOptions, check_image_size, check_options
from .probe import is_probe, probe_weights
from .result import build_result, keep_model_file


def finetune(images: Any, model: str = defaults.FINETUNE_MODEL,
             weights: Optional[str] = defaults.WEIGHTS, *, unfreeze: Any = 0,
             head: Any = (), epochs: int = defaults.FINETUNE_EPOCHS,
             batch_size: int = defaults.FINETUNE_BATCH_SIZE,
             learning_rate: Any = defaults.FINETUNE_LEARNING_RATE,
             augment: Any = None, workers: Any = None, seed: int = defaults.SEED,
             validation: Optional[float] = None, patience: Optional[int] = None,
             head_epochs: Any = "auto", batchnorm: str = "frozen",
             image_size: Any = None, layer: Optional[str] = None,
             preprocess: Optional[str] = None, unsafe: bool = False,
             trace_steps: bool = False, on_epoch: Optional[EpochCallback] = None,
             spark: Any = None, track: Optional[bool] = None) -> FineTunedModel:
    """Fine-tune *model* on ``images.train``; see the package docstring.

    ``unfreeze``: 0 trains the head only; N also the top N backbone layers with weights
    (BatchNormalization never: it stays in inference mode, see ``batchnorm``); ``all``
    the whole backbone. ``head``: hidden layer sizes (``[256]``) or ``{hidden: [256],
    dropout: 0.3}``; or a logistic regression from ``fit`` on this backbone's features,
    which the head starts as (linear probe, then fine-tune). ``head_epochs``: when
    backbone layers train and ``head`` is not a fitted model, ``auto`` first trains the
    head alone on the frozen backbone until its validation loss stops improving (at most
    :data:`~sparkdl_magics.defaults.FINETUNE_HEAD_EPOCHS`); 0 turns that off.
    ``batch_size``: images per step *per worker* (the global batch is that x workers).
    ``learning_rate``: the head's; a pair ``[head, backbone]`` sets the unfrozen
    layers' too (default a tenth of the head's). ``augment``: the seeded flips/rotations
    of :mod:`sparkdl_magics.augment`, drawn anew each epoch. ``workers``: Spark tasks
    training together (default: every task slot). ``validation``: a fraction of the
    train images held out (seeded, by path) for per-epoch validation metrics and early
    stopping after ``patience`` epochs without a better validation loss; the best
    epoch's weights are kept, "epoch 0" (the network before fine-tuning) included. With
    a warm-up or a fitted head it defaults to
    :data:`~sparkdl_magics.defaults.FINETUNE_VALIDATION`. ``batchnorm``: ``frozen`` (the
    backbone's statistics, inference mode) or ``adapt`` (moving statistics re-estimated
    on the training images first: for untrained weights or a far domain).
    ``image_size``: train at this size (``64`` or ``[w, h]``) instead of the model's
    own. ``trace_steps``: record every worker's weights checksum after every step
    (tests use it to show the workers stay identical). Same seed, data, worker count
    and session: the same weights (``.checksum``), see :class:`.worker.Trainer`.
    """
    from ..session import ensure_usable, task_cores
    started = time.perf_counter()
    train, classes, image_col = _training_images(images)
    spark = spark or train.sparkSession
    ensure_usable(spark)
    probe = is_probe(head)
    opts = check_options(spark, unfreeze, head, epochs, batch_size, learning_rate, augment,
                         workers, seed, validation, patience, trace_steps, head_epochs,
                         batchnorm, probe)
    if len(classes) < 2:
        raise DataError(f"fine-tuning needs at least two classes (got {len(classes)})")
    resolved = _resolve(model, weights, layer, preprocess, unsafe, spark)
    if probe:
        from dataclasses import replace
        opts = replace(opts, probe=probe_weights(head, classes, model, weights, layer,
                                                 preprocess, resolved, spark))
    net = _network_spec(resolved, len(classes), image_size, opts.hidden, opts.dropout,
                        opts.unfreeze, probe or opts.warmup == "probe")
    unfrozen = _check_network(net, resolved, opts.probe)
    from .task import TaskPlan
    plan = TaskPlan(job=opts.job(net, task_cores(spark)),
                    weights_file=resolved.spec.weights_file,
                    model_file=resolved.spec.model_file)
    frame = _stage_input(train, image_col, opts.validation, opts.seed, opts.workers)
    records, model_bytes, live = _train(spark, frame, plan, opts, resolved.model_name,
                                        on_epoch)
    model_file = keep_model_file(model_bytes, resolved.model_name)
    result = build_result(model_file, records, classes, net, resolved, images, opts, unfrozen,
                          image_col, live, time.perf_counter() - started)
    from ..tracking import log_finetune
    log_finetune(result, track)
    return result


def _train(spark: Any, frame: Any, plan: Any, opts: FineTuneOptions, model_name: str,
           on_epoch: Optional[EpochCallback]) -> Tuple[List[Dict[str, Any]], bytes, bool]:
    """Run the barrier stage, showing epochs live where the driver can read the chief's
    file; returns (records, model file bytes, whether epochs were shown live)."""
    from dataclasses import replace
    live_dir = tempfile.mkdtemp(prefix="sparkdl-finetune-live-")
    live_log = os.path.join(live_dir, "epochs.jsonl")
    try:
        with LiveEpochs(live_log, on_epoch) as live:
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


def _resolve(model: str, weights: Optional[str], layer: Optional[str],
             preprocess: Optional[str], unsafe: bool, spark: Any) -> Any:
    from ..weights import resolve_spec
    return resolve_spec(model, weights, layer, preprocess, unsafe=unsafe, spark=spark)


def _network_spec(resolved: Any, num_classes: int, image_size: Any, hidden: Tuple[int, ...],
                  dropout: Optional[float], unfreeze: int, probe: bool = False) -> NetworkSpec:
    spec = resolved.spec
    if spec.model_file is not None and image_size is not None:
        raise OptionError("option 'image_size': a model file trains at its own input size")
    return NetworkSpec(
        num_classes=num_classes, input_size=check_image_size(image_size, spec.input_size),
        model=spec.model, layer=spec.layer, safe_mode=spec.safe_mode,
        preprocess=serving_preprocess(spec.model, None if spec.model else spec.preprocess),
        hidden=hidden, dropout=defaults.FINETUNE_DROPOUT if dropout is None else dropout,
        unfreeze=unfreeze, head_norm=not probe)


def _check_network(net: NetworkSpec, resolved: Any, probe: Optional[Dict[str, Any]]) -> int:
    """Build the network once on the driver: bad options fail here, in one line, before
    any task starts. Returns how many backbone layers train."""
    from dataclasses import replace

    from .network import build
    spec = resolved.spec
    local = replace(net, weights_path=spec.weights_file.driver_path if spec.weights_file else "",
                    model_path=spec.model_file.driver_path if spec.model_file else "")
    built = build(local)
    if probe is not None and int(built.features.output.shape[-1]) != probe["features"]:
        raise OptionError(f"option 'head': the fitted model reads {probe['features']} "
                          f"features, the backbone gives {built.features.output.shape[-1]}")
    return len(built.unfrozen)


# --------------------------------------------------------------------------- the stage

def _stage_input(train: Any, image_col: str, validation: Optional[float], seed: int,
                 workers: int) -> Any:
    """The train rows the tasks read: path, bytes, int label, validation flag; one
    partition per worker, chosen by a hash of the path, so each worker's share (and so
    the weights a seed gives) depends on the paths alone, not on how the input happens
    to be partitioned. The validation flag is a seeded hash of the full path too: the
    same folder moved elsewhere gives another split."""
    from pyspark.sql import functions as F
    if validation is None:
        held_out = F.lit(False)
    else:
        bucket = F.pmod(F.xxhash64(F.lit(int(seed)), F.col(PATH_COL)), F.lit(10000))
        held_out = bucket < F.lit(int(round(validation * 10000)))
    return (train.where(F.col(LABEL_COL).isNotNull())
            .select(F.col(PATH_COL), F.col(image_col).alias(CONTENT_COL),
                    F.col(LABEL_COL).cast("int").alias(LABEL_COL), held_out.alias("validation"))
            .repartition(workers, F.col(PATH_COL)))


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


__all__ = ["finetune"]
