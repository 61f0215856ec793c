"""The loader's option choices and bounds, declared once.

:func:`load_images` checks its options against these, and the ``%%dlload`` magic builds
its parsers from them, so the two accept the same values. Plain constants and one check:
cheap to import (the magic imports this at ``%load_ext``; nothing here imports Spark).
"""
from __future__ import annotations

from typing import Any

from ..errors import OptionError, unknown_choice

#: ``labels``: the words that are not a label table.
LABEL_SOURCES = ("folders", "none")
#: ``check``: the invalid-file check.
CHECKS = ("header", "decode", "none")
#: ``multi_label``: what happens to an image with several of the chosen labels.
MULTI_LABEL_POLICIES = ("drop", "first", "all")
#: ``sample``: a fraction of each class in (0, SAMPLE_MAX].
SAMPLE_MAX = 1
#: ``per_class``: at least this many images per class.
PER_CLASS_MIN = 1


def check_options(sample: Any, per_class: Any, check: str, multi_label: str) -> None:
    """Raise :class:`OptionError` for a sample, per_class, check or multi_label out of range."""
    if sample is not None and not (isinstance(sample, (int, float))
                                   and 0 < sample <= SAMPLE_MAX):
        raise OptionError(f"option 'sample': expected a fraction in (0, {SAMPLE_MAX}], got "
                          f"{sample!r} (use per_class for a number of images per class)")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int)
                                  or per_class < PER_CLASS_MIN):
        raise OptionError(f"option 'per_class': expected a whole number >= {PER_CLASS_MIN}, "
                          f"got {per_class!r}")
    if check not in CHECKS:
        raise unknown_choice("check", check, CHECKS)
    if multi_label not in MULTI_LABEL_POLICIES:
        raise unknown_choice("multi_label policy", multi_label, MULTI_LABEL_POLICIES)
