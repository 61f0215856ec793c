"""The fine-tuning's result: the chief's model file kept on the driver, the workers'
records as tables (history, warm-up, checksums) and the FineTunedModel around them."""
from __future__ import annotations

import os
import uuid
from dataclasses import asdict
from typing import Any, Dict, List, Optional

from .. import defaults
from ..results import FineTunedModel, ImageSet
from ..scratch import scratch_dir
from .network import NetworkSpec
from .options import FineTuneOptions, unfreeze_param

_kept_dir: Optional[str] = None

#: One line in the result when the backbone starts from untrained weights.
UNTRAINED_BATCHNORM_NOTE = (
    "the backbone started from untrained weights (weights: none): its BatchNormalization "
    "statistics are the identity and stay so (frozen, inference mode); batchnorm: adapt "
    "re-estimates them on the training images")


def keep_model_file(data: bytes, model_name: str) -> str:
    """The trained model as a file on the driver (the session's staging folder)."""
    global _kept_dir
    if _kept_dir is None or not os.path.isdir(_kept_dir):
        _kept_dir = scratch_dir("finetuned-")
    path = os.path.join(_kept_dir, f"finetuned-{model_name}-{uuid.uuid4().hex[:8]}.keras")
    with open(path, "wb") as f:
        f.write(data)
    return path


def history_frame(records: List[Dict[str, Any]], kind: str = "epoch") -> Any:
    import pandas as pd
    cols = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "images",
            "images_per_s_per_worker", "probe_C", "train"]
    rows = [r for r in records if r["kind"] == kind and r["rank"] == 0]
    frame = pd.DataFrame(rows).sort_values("epoch") if rows else pd.DataFrame(columns=cols)
    return frame[[c for c in cols if c in frame.columns]].reset_index(drop=True)


def checksum_frame(records: List[Dict[str, Any]]) -> Any:
    import pandas as pd
    rows = [{"rank": r["rank"], "kind": r["kind"], "epoch": r.get("epoch"),
             "step": r.get("step"), "checksum": r["checksum"]}
            for r in records if "checksum" in r]
    return pd.DataFrame(rows, columns=["rank", "kind", "epoch", "step", "checksum"])


def _first(records: List[Dict[str, Any]], kind: str) -> Optional[Dict[str, Any]]:
    return next((r for r in records if r["kind"] == kind and r["rank"] == 0), None)


def build_result(model_file: str, records: List[Dict[str, Any]], classes: List[str],
                 net: NetworkSpec, resolved: Any, images: Any, opts: FineTuneOptions,
                 unfrozen: int, image_col: str, live: bool, seconds: float) -> FineTunedModel:
    from .stage import pipeline
    history = history_frame(records)
    warmup = history_frame(records, "warmup")
    stopped, best, done = (_first(records, k) for k in ("stopped", "best", "done"))
    notes = []
    if opts.probe is not None:
        notes.append("the head started from the fitted logistic regression (epoch 0 is it)")
    fitted = _first(records, "warmup") if opts.warmup == "probe" else None
    if fitted is not None:
        notes.append("the head started as a logistic regression fitted on the frozen "
                     f"backbone's features (L2 strength C={fitted['probe_C']:g}, chosen on "
                     "the validation images; epoch 0 is it)")
    elif len(warmup):
        notes.append(f"the head trained alone on the frozen backbone for {len(warmup)} "
                     f"epoch{'s' if len(warmup) != 1 else ''} first (until its validation "
                     "loss stopped improving)")
    if stopped:
        notes.append(f"early stopping after epoch {stopped['epoch']} (the validation loss "
                     "stopped improving)")
    if best is not None:
        notes.append(f"kept epoch {best['epoch']}, the best validation loss"
                     + (" (the starting head: fine-tuning did not improve on it)"
                        if best["epoch"] == 0 else ""))
    if resolved.untrained and opts.batchnorm != "adapt":
        notes.append(UNTRAINED_BATCHNORM_NOTE)
    skipped = sorted({p for r in records if r["kind"] == "done" for p in r.get("skipped", ())})
    if skipped:
        notes.append(f"{len(skipped)} training image{'s' if len(skipped) != 1 else ''} could "
                     f"not be decoded and trained nothing (e.g. {skipped[0]})")
    params = {"unfreeze": unfreeze_param(net.unfreeze),
              "head": ("fitted model" if opts.probe is not None else
                       "logistic regression on the frozen features" if fitted is not None
                       else list(net.hidden)),
              "dropout": net.dropout, "epochs": opts.epochs,
              "batch_size": opts.batch_size, "learning_rate": opts.head_lr,
              "backbone_learning_rate": opts.backbone_lr, "workers": opts.workers,
              "image_size": list(net.input_size),
              "head_epochs": "auto" if fitted is not None else len(warmup),
              "batchnorm": opts.batchnorm}
    if opts.augment is not None:
        params["augment"] = asdict(opts.augment)
    if opts.validation is not None:
        params["validation"] = opts.validation
    losses = [float(v) for v in history["loss"].dropna()] if "loss" in history else []
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
        stopped_early=stopped["epoch"] if stopped else None,
        best_epoch=best["epoch"] if best else None,
        checksum=done["checksum"] if done else "", warmup=warmup if len(warmup) else None,
        seconds=round(seconds, 2), live_progress=live,
        images=images if isinstance(images, ImageSet) else None,
        objective_history=losses or None)


__all__ = ["keep_model_file", "history_frame", "checksum_frame", "build_result",
           "UNTRAINED_BATCHNORM_NOTE"]
