"""The fine-tuning options, each checked in one line before anything is built or shipped.

What the driver tells every worker is :meth:`FineTuneOptions.job`. Linear probe, then
fine-tune: ``head`` may be a fitted logistic regression (the head starts as it); else,
when backbone layers train, ``head_epochs: auto`` first fits the head on the frozen
features: a linear head as a converged logistic regression (:mod:`.linear_probe`), a head
with hidden layers by epochs until the validation loss stops improving. Either way a validation
fraction is held out (``validation``, default :data:`~sparkdl_magics.defaults.FINETUNE_VALIDATION`)
so the best epoch, "epoch 0" (the probe) included, is the one kept.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

from .. import defaults
from ..errors import OptionError
from ..options import check_number
from .network import ALL, NetworkSpec, check_head, check_unfreeze

#: ``batchnorm``: keep the backbone's statistics, or re-estimate them on the images.
BATCHNORM_MODES = ("frozen", "adapt")


@dataclass(frozen=True)
class FineTuneOptions:
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
    head_epochs: int = 0  # the warm-up's most epochs (0: none)
    #: how the head warms up: "probe" (a logistic regression fitted on the frozen
    #: features: ``auto`` with a linear head), "epochs" (Adam epochs), "" (none)
    warmup: str = ""
    batchnorm: str = "frozen"
    probe: Optional[Dict[str, Any]] = None  # {"kernel", "bias"} of a fitted regression

    def job(self, net: NetworkSpec, threads: int) -> Dict[str, Any]:
        """What every worker process is told (JSON); the task adds its rank and paths."""
        return {"network": net.as_dict(), "epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate": self.head_lr, "backbone_learning_rate": self.backbone_lr,
                "augment": asdict(self.augment) if self.augment is not None else None,
                "seed": self.seed, "patience": self.patience,
                "head_epochs": self.head_epochs, "warmup": self.warmup,
                "head_patience": defaults.FINETUNE_HEAD_PATIENCE,
                "head_lr_factor": defaults.FINETUNE_HEAD_LR_FACTOR,
                "batchnorm": self.batchnorm, "probe": self.probe,
                "trace_steps": self.trace_steps, "threads": threads}


def check_options(spark: Any, unfreeze: Any, head: Any, epochs: Any, batch_size: Any,
                  learning_rate: Any, augment: Any, workers: Any, seed: Any,
                  validation: Any, patience: Any, trace_steps: bool, head_epochs: Any = "auto",
                  batchnorm: Any = "frozen", probe: bool = False) -> FineTuneOptions:
    """Every option checked, in one line each. *probe*: the head starts from a fitted
    regression (``head`` was one; the caller has taken its coefficients)."""
    from ..augment import parse_augment
    from ..inference import check_batch_size, check_positive_int
    from ..session import task_slots
    from .cluster import check_workers
    hidden, dropout = ((), 0.0) if probe else check_head(head)
    head_lr, backbone_lr = check_learning_rate(learning_rate)
    unfreeze = check_unfreeze(unfreeze)
    warm = check_head_epochs(head_epochs, unfreeze != 0 and not probe)
    warmup = "" if not warm else ("probe" if _is_auto(head_epochs) and not hidden else "epochs")
    validation = check_fraction(validation)
    if validation is None and (warm or probe):
        validation = defaults.FINETUNE_VALIDATION
    patience = None if validation is None else check_positive_int(
        "patience", defaults.FINETUNE_PATIENCE if patience is None else patience)
    return FineTuneOptions(
        unfreeze=unfreeze, hidden=hidden, dropout=dropout,
        epochs=check_positive_int("epochs", epochs), batch_size=check_batch_size(batch_size),
        head_lr=head_lr, backbone_lr=backbone_lr, augment=parse_augment(augment),
        workers=check_workers(workers, task_slots(spark)), seed=int(seed),
        validation=validation, patience=patience, trace_steps=bool(trace_steps),
        head_epochs=warm, warmup=warmup, batchnorm=check_batchnorm(batchnorm))


def check_learning_rate(value: Any) -> Tuple[float, float]:
    """``learning_rate``: the head's, or ``[head, backbone]`` (default backbone: a tenth)."""
    pair = list(value) if isinstance(value, (list, tuple)) else [value]
    expected = "expected a number or [head, backbone]"
    if len(pair) not in (1, 2):
        raise OptionError(f"option 'learning_rate': {expected} (got {value!r})")
    rates = [check_number("learning_rate", v, float, lambda r: 0.0 < r < 10.0, expected,
                          "must be above 0 (and below 10)") for v in pair]
    backbone = rates[1] if len(rates) == 2 else rates[0] * defaults.FINETUNE_BACKBONE_LR_FACTOR
    return rates[0], backbone


def check_fraction(value: Any) -> Optional[float]:
    """``validation``: a fraction of the train split, or None."""
    if value is None:
        return None
    return check_number("validation", value, float, lambda f: 0.0 < f < 1.0,
                        "expected a fraction between 0 and 1", "must be between 0 and 1")


def _is_auto(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() == "auto")


def check_head_epochs(value: Any, backbone_trains: bool) -> int:
    """``head_epochs``: ``auto`` (when backbone layers train: a linear head starts as a
    logistic regression fitted on the frozen features, see :mod:`.linear_probe`; a head
    with hidden layers trains alone for at most FINETUNE_HEAD_EPOCHS, converged on
    validation), 0 (none), or at most N epochs of the head alone."""
    if _is_auto(value):
        return defaults.FINETUNE_HEAD_EPOCHS if backbone_trains else 0
    return check_number("head_epochs", value, int, lambda n: n >= 0,
                        "expected auto or a whole number", "must be 0 or more")


def check_batchnorm(value: Any) -> str:
    mode = str(value or "frozen").strip().lower()
    if mode not in BATCHNORM_MODES:
        from ..errors import unknown_choice
        raise unknown_choice("batchnorm", value, BATCHNORM_MODES)
    return mode


def check_image_size(value: Any, default: Tuple[int, int]) -> Tuple[int, int]:
    """``image_size``: train at this size (``64`` or ``[w, h]``), at least 32 px."""
    if value is None:
        return tuple(default)
    pair = list(value) if isinstance(value, (list, tuple)) else [value, value]
    expected = "expected a size such as 96 or [96, 96]"
    if len(pair) != 2:
        raise OptionError(f"option 'image_size': {expected} (got {value!r})")
    w, h = (check_number("image_size", v, int, lambda n: n >= 32, expected,
                         "at least 32 pixels") for v in pair)
    return w, h


def unfreeze_param(unfreeze: int) -> Any:
    return "all" if unfreeze == ALL else unfreeze


__all__ = ["FineTuneOptions", "check_options", "check_learning_rate", "check_fraction",
           "check_head_epochs", "check_batchnorm", "check_image_size", "BATCHNORM_MODES"]
