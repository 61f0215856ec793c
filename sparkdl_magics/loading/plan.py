"""The plan step: how many images each class keeps and puts in each split.

Pure arithmetic on the per-class counts (no Spark), so that the split is exact and
stratified: every class with enough images is in every split, and the sizes are known
before any image is assigned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import OptionError

#: The split names, by number of splits.
SPLIT_NAMES = {1: ("train",), 2: ("train", "test"), 3: ("train", "validation", "test")}


def parse_split(split: Any) -> Tuple[float, ...]:
    """``0.8`` -> (0.8, 0.2); ``[0.7, 0.15, 0.15]`` -> train/validation/test; 1 -> (1,)."""
    if split is None:
        return (1.0,)
    if isinstance(split, (list, tuple)):
        return _split_list(split)
    try:
        train = float(split)
    except (TypeError, ValueError):
        raise OptionError(f"option 'split': expected a number like 0.8, got {split!r}") from None
    if not 0 < train <= 1:
        raise OptionError(f"option 'split': the train fraction must be in (0, 1], got {split!r}")
    return (1.0,) if train == 1 else (train, 1 - train)


def _split_list(split: Sequence[Any]) -> Tuple[float, ...]:
    """``[train, test]`` or ``[train, validation, test]``, normalised; empty splits dropped."""
    try:
        parts = [float(x) for x in split]
    except (TypeError, ValueError):
        raise OptionError(f"option 'split': expected numbers, got {split!r}") from None
    if len(parts) == 2:
        parts = [parts[0], 0.0, parts[1]]
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise OptionError(
            f"option 'split': expected a train fraction (0.8), [train, test] or "
            f"[train, validation, test] fractions, got {split!r}")
    total = sum(parts)
    train, val, test = (p / total for p in parts)
    return (train, val, test) if val > 0 else ((train, test) if test > 0 else (1.0,))


def split_sizes(m: int, fractions: Sequence[float]) -> List[int]:
    """Images per split for a class of *m* images: largest-remainder rounding, and
    every split gets at least one image when the class has enough of them."""
    raw = [m * f for f in fractions]
    sizes = [int(math.floor(x)) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - sizes[i]), i))
    for i in order[: m - sum(sizes)]:
        sizes[i] += 1
    if m >= len(sizes):
        for i, f in enumerate(fractions):
            if f > 0 and sizes[i] == 0:
                donor = max(range(len(sizes)), key=lambda j: sizes[j])
                sizes[donor] -= 1
                sizes[i] += 1
    return sizes


def sample_size(n: int, sample: Optional[float], per_class: Optional[int]) -> int:
    """Images kept from a class of *n*: a fraction (at least one), capped at per_class."""
    m = n
    if sample is not None and sample < 1:
        m = max(1, int(math.ceil(n * sample))) if n else 0
    if per_class is not None:
        m = min(m, int(per_class))
    return m


@dataclass
class Plan:
    """Per class (``""`` when unlabelled), the images in each split, in split order."""

    fractions: Tuple[float, ...]
    sizes: Dict[str, List[int]]

    @classmethod
    def make(cls, valid: Dict[str, int], classes: List[str], labelled: bool,
             sample: Optional[float], per_class: Optional[int],
             fractions: Tuple[float, ...]) -> "Plan":
        """The plan for *valid* images per class; unlabelled images are not split."""
        used = fractions if labelled else (1.0,)
        sizes = {g: split_sizes(sample_size(valid.get(g, 0), sample, per_class), used)
                 for g in (classes or [""])}
        return cls(used, sizes)

    @property
    def total(self) -> int:
        return sum(sum(s) for s in self.sizes.values())

    def counts(self, groups: Dict[str, Dict[str, Any]], classes: List[str],
               labelled: bool) -> Any:
        """The counts table: per class, images per split, total and invalid files."""
        import pandas as pd
        names = list(SPLIT_NAMES[len(self.fractions)]) if labelled else ["images"]
        index = classes if labelled else ["(unlabelled)"]
        keys = classes if labelled else [""]
        data = []
        for g in keys:
            sizes = self.sizes.get(g, [0] * len(names))
            data.append(list(sizes) + [sum(sizes), int(groups.get(g, {}).get("bad", 0))])
        return pd.DataFrame(data, index=pd.Index(index, name="class"),
                            columns=names + ["total", "invalid"])
