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
#: ``keep``: each image once with its label set (a multi-label task).
MULTI_LABEL_POLICIES = ("drop", "first", "all", "keep")
#: ``reader``: who lists and reads the files (:func:`sparkdl_magics.storage.choose`).
READERS = ("auto", "spark", "python")
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


def check_table_options(labels: Any, multi_label: str, label_separator: Any,
                        empty_label: Any) -> None:
    """``label_separator`` and ``empty_label`` need a label table; ``empty_label`` a
    label set (``multi_label: keep``)."""
    is_table = not (isinstance(labels, str) and labels.lower() in LABEL_SOURCES)
    for name, value in (("label_separator", label_separator), ("empty_label", empty_label)):
        if value is None:
            continue
        if not isinstance(value, str) or value == "" or (name == "empty_label"
                                                          and not value.strip()):
            raise OptionError(f"option '{name}': expected a non-empty string, got {value!r}")
        if not is_table:
            raise OptionError(f"option '{name}' needs a label table (labels: a CSV/Parquet "
                              f"path or a DataFrame), not labels: {labels}")
    if empty_label is not None and multi_label != "keep":
        raise OptionError(f"option 'empty_label' needs multi_label: keep (an empty label set);"
                          f" got multi_label: {multi_label} (valid: keep)")


def check_reader(reader: Any) -> str:
    """The ``reader`` option, lower case, one of :data:`READERS`."""
    value = str(reader).strip().lower()
    if value not in READERS:
        raise unknown_choice("reader", reader, READERS)
    return value
