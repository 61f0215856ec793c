"""Loading labelled images into Spark: :func:`load_images` and its result, :class:`ImageSet`.

Spark lists and reads the files (``binaryFile`` with recursive lookup and a glob on
image extensions), so any URI Spark can read works (``file:``, ``s3a:``, ``abfss:``,
``gs:``, ``dbfs:``) and nothing walks directories on the driver. Images stay
compressed: the DataFrames hold ``path``, ``content`` (the file's bytes), ``label``
and ``label_name``; decoding happens later, in the featurizer's batches.

How a load runs (the driver only ever collects paths, counts and a few thumbnails):

1. *listing*: the source rows with their class name (parent folder, or a join with a
   label table — see :mod:`.labels`), no bytes read; the files Spark's listing hides
   (``_x.jpg``, ``._x.jpg``, ``.DS_Store``) are found by the workers (:mod:`.inventory`):
   hidden images are loaded, system and other files counted as skipped with a reason;
2. *check*: one pass over the files in Spark that reads each header (and the last
   bytes, to spot truncated files); invalid files are collected as ``(path, reason)``;
3. *plan*: per class, how many images to keep (``sample`` / ``per_class``) and how
   many go to train / validation / test (exact, stratified: every class with enough
   images is in every split);
4. *assign*: every image gets a seeded key, ``xxhash64(seed, path)``; within each class
   the images are ordered by key, and the keys at the planned ranks are collected as
   thresholds. The result DataFrames apply those thresholds as plain column
   expressions, so they are narrow, re-computable and independent of partitioning:
   the same seed gives the same split in local, cluster and Connect modes.

One module a step, so each can be read alone: :mod:`.sources` (what Spark lists),
:mod:`.inventory` (what it does not),
:mod:`.labels` (1), :mod:`.checks` (2), :mod:`.plan` (3), :mod:`.assign` (4) and
:mod:`.previews` (the thumbnails); :mod:`.choices` holds the option values that the
``%%dlload`` magic shares. This module only composes them.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import defaults
from ..errors import missing_path_errors
from ..results import PATH_COL, ImageSet
from ..session import is_dataframe
from .assign import NO_LABEL, assemble, label_counts, splits, thresholds, with_label_vector
from .checks import check_bytes, checked_rows, size_stats, survey
from .choices import check_options, check_reader, check_table_options
from .labels import Listing, label_source, listing
from .plan import SPLIT_NAMES, Plan, parse_split, sample_size, split_sizes
from .previews import thumbnails
from .sources import make_source


def load_images(path: Any = None, *, labels: Any = "folders",
                id_column: str = "ImageID", label_column: str = "LabelName",
                confidence_column: Optional[str] = "Confidence", min_confidence: float = 0.5,
                classes: Optional[Sequence[str]] = None, multi_label: str = "drop",
                label_separator: Optional[str] = None, empty_label: Optional[str] = None,
                sample: Optional[float] = None, per_class: Optional[int] = None,
                split: Any = defaults.SPLIT, seed: int = defaults.SEED, check: str = "header",
                extensions: Optional[Sequence[str]] = None,
                storage_options: Optional[Dict[str, Any]] = None, reader: str = "auto",
                spark: Any = None) -> ImageSet:
    """Load labelled images into Spark DataFrames, split train/test, list invalid files.

    Parameters
    ----------
    path
        A folder (one sub-folder per class), a glob (``data/*/*.jpg``), a list of those,
        any URI Spark reads (``s3a://``, ``abfss://``, ``gs://``, ``dbfs:/``); or a
        DataFrame: a ``binaryFile`` frame (``path``, ``content``) or a Spark
        ``image``-source frame (its BGR struct is kept in an ``image`` column).
    labels
        ``"folders"``: the parent folder's name; ``"none"``: unlabelled (prediction
        only); or a label table: a CSV/Parquet path (or a Spark/pandas DataFrame) with
        ``id_column``, ``label_column`` and optionally ``confidence_column`` (Open
        Images style). The ids may be file stems (``000a1249af2bc5f0``), file names
        (``00000001_000.png``), paths relative to a folder above the files
        (``imgs/id001.jpg``) or absolute paths: ``stats['id_match']`` says how many
        matched in which form; ids naming no file are counted (``missing_images``, a few
        in ``missing_examples``), ids naming several files (one stem in two folders)
        are left out and reported (``ambiguous_ids``, ``ambiguous_examples``).
    min_confidence
        Label-table rows with a confidence below this are ignored (positive labels only).
    classes
        Keep only these classes (and order the class indices as given).
    multi_label
        Images carrying several of the chosen labels (label table): ``drop`` them
        (counted in ``stats['multi_label']``), keep them once under the ``first`` class
        in class order, keep ``all`` (one row per label), or ``keep`` each image once
        with its label set: a multi-label task. Then ``labels`` (array<string>, class
        order) and ``label_vector`` (multi-hot, array<double>) hold the set,
        ``label_name`` the set joined with ``|``, ``label`` is null; an image the table
        names without any chosen label has the empty set. The split is stratified by
        each image's first label in class order (the empty set is a stratum too), and
        ``sample`` / ``per_class`` apply per stratum; ``counts`` has one row per label
        (an image counts under each of its labels) and a ``(no label)`` row.
    label_separator
        Several labels in one cell, e.g. ``"|"`` for NIH ChestX-ray14's ``Finding
        Labels`` (``Cardiomegaly|Effusion``): split into one label each, before
        ``classes``, ``min_confidence`` and ``multi_label`` apply.
    empty_label
        With ``multi_label: keep``: the label that means "none" (NIH's ``No Finding``),
        read as the empty label set rather than as a class.
    sample, per_class
        Keep a fraction of each class, and/or at most N images per class (seeded).
    split
        Train fraction (``0.8``), or ``[train, test]`` / ``[train, validation, test]``
        fractions; stratified per class and seeded; ``1`` keeps everything in train.
    check
        ``header`` (read each header and end marker), ``decode`` (decode every image:
        slow), or ``none`` (trust the files; the featurizer reports failures).
    extensions
        File extensions to list (any case); None: every format the loader decodes
        (:data:`sparkdl_magics.imaging.IMAGE_EXTENSIONS`).
    storage_options
        What the environment does not say about an object store, for the executors'
        Python reader (:mod:`sparkdl_magics.storage`): ``endpoint``, ``anonymous``
        (public buckets), ``region``, ``profile``, keys.
    reader
        Who lists and reads the files: ``auto`` (Python on the executors for local
        folders and stores Spark cannot read, else Spark), ``spark`` or ``python``.
    """
    check_options(sample, per_class, check, multi_label)
    check_table_options(labels, multi_label, label_separator, empty_label)
    fractions = parse_split(split)
    spark = _session(path, spark)
    source = make_source(spark, path, extensions, storage_options, check_reader(reader))
    seed = int(seed)
    mode, table = label_source(spark, labels, classes, id_column=id_column,
                               label_column=label_column,
                               confidence_column=confidence_column,
                               min_confidence=min_confidence,
                               label_separator=label_separator, empty_label=empty_label)
    with missing_path_errors(source.paths):
        listed = listing(source, mode, table, classes, multi_label)       # 1. listing
        with checked_rows(listed.rows, source, check) as checked:         # 2. check
            groups, invalid, valid = survey(checked, source, mode, listed.named_classes)
            class_names = listed.classes_found(valid)
            strata = listed.strata(valid)
            plan = Plan.make(valid, strata, listed.labelled,              # 3. plan
                             sample, per_class, fractions)
            keys, previews = thresholds(checked, plan.sizes, seed)        # 4. assign
    frame = assemble(listed.rows, source.image_col, class_names, invalid, keys, seed,
                     spark, listed.labelled, listed.multi,
                     with_content=lambda f: source.with_content(f, plan.total))
    counts = None
    if listed.multi:
        class_names, counts = label_counts(frame, listed.rows, invalid, class_names,
                                           plan.fractions, listed.named)
        frame = with_label_vector(frame, class_names)
        previews = {(g or NO_LABEL): p for g, p in previews.items()}
        strata = [g or NO_LABEL for g in strata]
        names = SPLIT_NAMES[len(plan.fractions)]
        listed.stats["split_images"] = {n: sum(s[i] for s in plan.sizes.values())
                                        for i, n in enumerate(names)}
    listed.stats.update(size_stats(groups), images=plan.total, invalid=len(invalid),
                        sampled_out=sum(valid.values()) - plan.total,
                        **skip_counts(source))
    images = _image_set(frame, source, listed, class_names, plan, groups, invalid,
                        previews, seed, counts, strata)
    images.previews = thumbnails(images)  # what the display shows, made here (in scope)
    return images


def skip_counts(source: Any) -> Dict[str, Any]:
    """The stats of the files skipped: system files, other files; and whether names
    Spark hides could be listed at all (not on storage the workers cannot walk)."""
    skipped = source.skipped()
    system = sum(1 for _, reason in skipped if reason.startswith("system file"))
    out: Dict[str, Any] = {"skipped_system": system, "skipped_other": len(skipped) - system}
    if source.hidden_unchecked:
        out["hidden_unchecked"] = True
    return out


def _session(path: Any, spark: Any) -> Any:
    """The given session, else the DataFrame source's, else the notebook's."""
    if spark is None:
        spark = path.sparkSession if is_dataframe(path) else None
    if spark is None:
        from ..session import get_spark
        spark = get_spark()
    return spark


def _image_set(frame: Any, source: Any, listed: Listing, classes: List[str], plan: Plan,
               groups: Dict[str, Dict[str, Any]], invalid: List[Tuple[str, str]],
               previews: Dict[str, List[str]], seed: int, counts: Any = None,
               strata: Optional[List[str]] = None) -> ImageSet:
    """The result: the frame and its splits, the counts, the invalid files, the stats."""
    import pandas as pd
    train, validation, test = splits(frame, plan.fractions, listed.labelled)
    if counts is None:
        counts = plan.counts(groups, classes, listed.labelled)
    shown = strata if listed.multi else (classes or [""])
    return ImageSet(df=frame, train=train, test=test, validation=validation,
                    classes=list(classes),
                    invalid=pd.DataFrame(invalid, columns=[PATH_COL, "reason"]),
                    skipped=pd.DataFrame(sorted(source.skipped()), columns=[PATH_COL, "reason"]),
                    counts=counts,
                    image_col=source.image_col, source=source.description,
                    labels=listed.mode, seed=seed, fractions=plan.fractions,
                    stats=listed.stats,
                    preview_paths={g: previews.get(g, []) for g in shown},
                    contents=getattr(source, "contents", None),
                    content_of=getattr(source, "content_of", None))


__all__ = ["load_images", "split_sizes", "sample_size", "check_bytes"]
