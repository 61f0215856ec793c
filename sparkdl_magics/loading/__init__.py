"""Loading labelled images into Spark: :func:`load_images` and its result, :class:`ImageSet`.

Spark lists and reads the files (``binaryFile`` with recursive lookup and a glob on
image extensions), so any URI Spark can read works (``file:``, ``s3a:``, ``abfss:``,
``gs:``, ``dbfs:``) and nothing walks directories on the driver. Images stay
compressed: the DataFrames hold ``path``, ``content`` (the file's bytes), ``label``
and ``label_name``; decoding happens later, in the featurizer's batches.

How a load runs (the driver only ever collects paths, counts and a few thumbnails):

1. *listing*: the source rows with their class name (parent folder, or a join with a
   label table — see :mod:`sparkdl_magics.labels`), no bytes read;
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
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import DataError, OptionError, missing_path_errors, unknown_choice
from ..imaging import IMAGE_EXTENSIONS
from ..results import (CONTENT_COL, IMAGE_COL, LABEL_COL, LABEL_NAME_COL, PATH_COL,
                       SPLIT_COL, ImageSet)
from ..session import is_dataframe
from .previews import PER_CLASS as PREVIEWS_PER_CLASS, thumbnails

LABEL_SOURCES = ("folders", "none")
CHECKS = ("header", "decode", "none")
MULTI_LABEL_POLICIES = ("drop", "first", "all")

#: Bytes of each file the header check reads (the start) and the end-marker check reads.
HEAD_BYTES = 256 * 1024
TAIL_BYTES = 64
#: Files per task in the header-check pass (Spark packs ~32 small files per task).
FILES_PER_CHECK_TASK = 1000
#: Above this many invalid files, they are removed with an anti-join instead of a list.
_ISIN_LIMIT = 2000

_KEY = "_key"
_GROUP = "_group"  # the class name, or "" when unlabelled (map keys cannot be null)


# --------------------------------------------------------------------------- worker side
# Module-level functions so Spark ships them by reference; they import only Pillow/numpy.

def check_bytes(head: Optional[bytes], tail: Optional[bytes], length: int) -> Tuple:
    """(width, height, mode, format, reason) from a file's first and last bytes.

    ``reason`` is None for a good image. Reads the header only; a missing end marker
    (JPEG ``FFD9``, PNG ``IEND``, GIF ``;``) marks a truncated file.
    """
    from ..imaging import InvalidImage, probe
    try:
        width, height, mode, fmt = probe(head if head is not None else b"")
    except InvalidImage as exc:
        return (None, None, None, None, str(exc))
    reason = _truncation(fmt, tail or b"", length)
    return (width, height, mode, fmt, reason)


def _truncation(fmt: str, tail: bytes, length: int) -> Optional[str]:
    end = tail.rstrip(b"\x00\r\n ")
    if fmt == "JPEG" and b"\xff\xd9" not in end[-16:]:
        return f"truncated JPEG (no end-of-image marker; {length} bytes)"
    if fmt == "PNG" and b"IEND" not in tail:
        return f"truncated PNG (no IEND chunk; {length} bytes)"
    if fmt == "GIF" and not end.endswith(b";"):
        return f"truncated GIF (no trailer; {length} bytes)"
    return None


def check_decode(data: Optional[bytes]) -> Tuple:
    """Like :func:`check_bytes` but decodes every pixel (slower, catches everything)."""
    from ..imaging import InvalidImage, decode_rgb, probe
    try:
        width, height, mode, fmt = probe(data if data is not None else b"")
        decode_rgb(data)
    except InvalidImage as exc:
        return (None, None, None, None, str(exc))
    return (width, height, mode, fmt, None)


_CHECK_SCHEMA = "width int, height int, mode string, format string, reason string"


# --------------------------------------------------------------------------- options

def _fractions(split: Any) -> Tuple[float, ...]:
    """``0.8`` -> (0.8, 0.2); ``[0.7, 0.15, 0.15]`` -> train/validation/test; 1 -> (1,)."""
    if split is None:
        return (1.0,)
    if isinstance(split, (list, tuple)):
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
    try:
        train = float(split)
    except (TypeError, ValueError):
        raise OptionError(f"option 'split': expected a number like 0.8, got {split!r}") from None
    if not 0 < train <= 1:
        raise OptionError(f"option 'split': the train fraction must be in (0, 1], got {split!r}")
    return (1.0,) if train == 1 else (train, 1 - train)


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


def _check_options(sample: Any, per_class: Any, check: str,
                   multi_label: str) -> None:
    if sample is not None and not (isinstance(sample, (int, float)) and 0 < sample <= 1):
        raise OptionError(f"option 'sample': expected a fraction in (0, 1], got {sample!r}"
                          " (use per_class for a number of images per class)")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int)
                                  or per_class < 1):
        raise OptionError(f"option 'per_class': expected a whole number >= 1, got {per_class!r}")
    if check not in CHECKS:
        raise unknown_choice("check", check, CHECKS)
    if multi_label not in MULTI_LABEL_POLICIES:
        raise unknown_choice("multi_label policy", multi_label, MULTI_LABEL_POLICIES)


# --------------------------------------------------------------------------- sources

def _paths(path: Any) -> List[str]:
    if path is None:
        raise OptionError("option 'path': give a folder, a glob, a list of paths or a "
                          "DataFrame of images")
    items = list(path) if isinstance(path, (list, tuple)) else [path]
    out = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)) or not str(item).strip():
            raise OptionError(f"option 'path': expected a path or URI, got {item!r}")
        text = os.fspath(item).strip()
        out.append(os.path.expanduser(text) if "://" not in text else text)
    return out


def _extension_glob(extensions: Sequence[str]) -> str:
    names = []
    for ext in extensions:
        ext = str(ext).lstrip(".").lower()
        names += [ext, ext.upper()]
    return "*.{" + ",".join(dict.fromkeys(names)) + "}"


def _read_files(spark: Any, paths: List[str], glob: Optional[str]) -> Any:
    reader = spark.read.format("binaryFile").option("recursiveFileLookup", "true")
    if glob:
        reader = reader.option("pathGlobFilter", glob)
    return reader.load(paths)


class _Source:
    """The source rows, as a function of whether the bytes are needed."""

    def __init__(self, spark: Any, path: Any, extensions: Sequence[str]):
        from pyspark.sql import functions as F
        self.spark = spark
        self.frame: Optional[Any] = None
        self.image_col = CONTENT_COL
        self._indexed: Optional[List[str]] = None
        if is_dataframe(path):
            self.description = "DataFrame"
            cols = set(path.columns)
            if IMAGE_COL in cols and dict(path.dtypes)[IMAGE_COL].startswith("struct"):
                self.image_col = IMAGE_COL
                self.frame = path.select(F.col(f"{IMAGE_COL}.origin").alias(PATH_COL), IMAGE_COL)
            elif {PATH_COL, CONTENT_COL} <= cols:
                self.frame = path.select(PATH_COL, CONTENT_COL)
            else:
                raise DataError(
                    "a DataFrame source needs 'path' and 'content' columns (a binaryFile "
                    f"frame) or an 'image' struct (an image-source frame); it has: "
                    f"{', '.join(path.columns)}")
            self.paths: List[str] = []
        else:
            self.paths = _paths(path)
            self.description = ", ".join(self.paths)
            self.glob = _extension_glob(extensions)

    def rows(self) -> Any:
        """path + the image column (bytes or struct); lazily, nothing is read yet."""
        if self.frame is not None:
            return self.frame
        return _read_files(self.spark, self.paths, self.glob).select(PATH_COL, CONTENT_COL)

    def listing(self) -> Any:
        """path only (for a binaryFile read, Spark then skips the file contents)."""
        if self.frame is not None:
            return self.frame.select(PATH_COL)
        return _read_files(self.spark, self.paths, self.glob).select(PATH_COL)

    def indexed_files(self) -> List[str]:
        """The files Spark's file index lists (URIs), zero-byte ones included."""
        if self.frame is not None:
            return []
        if self._indexed is None:
            self._indexed = _read_files(self.spark, self.paths, self.glob).inputFiles()
        return self._indexed

    def empty_files(self, scanned: Optional[int] = None) -> List[str]:
        """Zero-byte files: Spark's file scans skip them, so find them from the file
        index (``inputFiles``) when it lists more files than the scan returns
        (*scanned*: rows the scan returned, when already known)."""
        if self.frame is not None:
            return []
        from urllib.parse import unquote
        listed = self.indexed_files()
        if len(listed) <= (scanned if scanned is not None else self.listing().count()):
            return []
        files = sorted({unquote(re.sub(r"^([A-Za-z][\w+.-]*):///", r"\1:/", f)) for f in listed})
        indexed = self.spark.createDataFrame([(f,) for f in files], f"{PATH_COL} string")
        missing = indexed.join(self.listing(), on=PATH_COL, how="left_anti").collect()
        return sorted(r[0] for r in missing)

    def explain_empty(self) -> DataError:
        """Why there is nothing to load: an empty folder, or files that are not images."""
        what = f"option 'path' ({self.description})"
        if self.frame is not None:
            return DataError("the DataFrame given as 'path' has no rows")
        with missing_path_errors(self.paths):
            others = [r[0] for r in _read_files(self.spark, self.paths, None)
                      .select(PATH_COL).limit(3).collect()]
        if not others:
            return DataError(f"{what}: no files there (empty folder?)")
        names = ", ".join(o.rsplit("/", 1)[-1] for o in others)
        return DataError(f"{what}: no image files (extensions: {self.glob}); found other "
                         f"files such as {names}")


# --------------------------------------------------------------------------- main entry

def load_images(path: Any = None, *, labels: Any = "folders",
                id_column: str = "ImageID", label_column: str = "LabelName",
                confidence_column: Optional[str] = "Confidence", min_confidence: float = 0.5,
                classes: Optional[Sequence[str]] = None, multi_label: str = "drop",
                sample: Optional[float] = None, per_class: Optional[int] = None,
                split: Any = 0.8, seed: int = 42, check: str = "header",
                extensions: Sequence[str] = IMAGE_EXTENSIONS,
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
        ``id_column`` (matched to the file name without extension), ``label_column``
        and optionally ``confidence_column`` (Open Images style).
    min_confidence
        Label-table rows with a confidence below this are ignored (positive labels only).
    classes
        Keep only these classes (and order the class indices as given).
    multi_label
        Images carrying several of the chosen labels (label table): ``drop`` them
        (counted in ``stats['multi_label']``), keep them once under the ``first`` class
        in class order, or keep ``all`` (one row per label).
    sample, per_class
        Keep a fraction of each class, and/or at most N images per class (seeded).
    split
        Train fraction (``0.8``), or ``[train, test]`` / ``[train, validation, test]``
        fractions; stratified per class and seeded; ``1`` keeps everything in train.
    check
        ``header`` (read each header and end marker), ``decode`` (decode every image:
        slow), or ``none`` (trust the files; the featurizer reports failures).
    """
    from pyspark.sql import functions as F

    from .labels import LabelTable, folder_label

    _check_options(sample, per_class, check, multi_label)
    fractions = _fractions(split)
    if spark is None:
        spark = path.sparkSession if is_dataframe(path) else None
    if spark is None:
        from ..session import get_spark
        spark = get_spark()
    source = _Source(spark, path, extensions)
    seed = int(seed)

    # 1. listing: rows with their class name (no bytes read for binaryFile sources)
    label_mode = labels if isinstance(labels, str) and labels.lower() in LABEL_SOURCES else None
    table: Optional[LabelTable] = None
    if label_mode is None:
        table = LabelTable.read(spark, labels, id_column=id_column, label_column=label_column,
                                confidence_column=confidence_column,
                                min_confidence=min_confidence)
        label_mode = "table"
    label_mode = label_mode.lower()
    if label_mode == "none" and classes:
        raise OptionError("option 'classes' needs labels (labels: folders or a label table)")

    stats: Dict[str, Any] = {"multi_label_policy": multi_label}
    with missing_path_errors(source.paths):
        rows = source.rows()
        if label_mode == "folders":
            class_names = _folder_classes(source, classes)
            rows = rows.withColumn(LABEL_NAME_COL, folder_label(F.col(PATH_COL)))
            if classes:
                rows = rows.filter(F.col(LABEL_NAME_COL).isin(list(class_names)))
        elif label_mode == "table":
            class_names = table.choose(classes)
            rows, stats_table = table.attach(rows, class_names, multi_label)
            stats.update(stats_table, **table.skipped)
        else:
            class_names = []
            rows = rows.withColumn(LABEL_NAME_COL, F.lit(None).cast("string"))

        # 2. check: one pass over the files; only paths, sizes and reasons kept
        # many small files make many small tasks; the header check needs far fewer
        # (the result frames keep Spark's own partitioning)
        n_files = len(source.indexed_files())
        to_check = rows
        if n_files > FILES_PER_CHECK_TASK:
            to_check = rows.coalesce(max(2, math.ceil(n_files / FILES_PER_CHECK_TASK)))
        checked = _checked(to_check, source.image_col, check).persist()
        try:
            groups, invalid = _group_stats(checked)
            listed = (sum(g["n"] + g["bad"] for g in groups.values())
                      if label_mode == "folders" and not classes else None)
            invalid += _empty_files(source, label_mode, class_names if classes else None,
                                    groups, listed)
            invalid.sort()
            if not groups and not invalid:
                raise source.explain_empty()
            valid_counts = {g: s["n"] for g, s in groups.items() if s["n"] > 0}
            if not valid_counts:
                example = "; ".join(f"{p.rsplit('/', 1)[-1]}: {r}"
                                    for p, r in invalid[:3])
                raise DataError(f"no valid images in {source.description}: "
                                f"{len(invalid)} invalid file(s) ({example})")
            if label_mode in ("folders", "table") and not classes:
                class_names = sorted(valid_counts)
            if label_mode == "none":
                fractions_used: Tuple[float, ...] = (1.0,)
            else:
                fractions_used = fractions

            # 3. plan: how many images per class and split
            plan = {g: _class_plan(valid_counts.get(g, 0), sample, per_class, fractions_used)
                    for g in (class_names or [""])}
            # 4. assign: keys at the planned ranks become thresholds
            thresholds, previews = _thresholds(checked, plan, seed)
        finally:
            checked.unpersist()

    frame = _assemble(rows, source.image_col, class_names, invalid, thresholds, seed,
                      spark, label_mode)
    labelled = label_mode != "none"
    train, validation, test = _splits(frame, fractions_used, labelled)
    counts = _counts_frame(plan, groups, fractions_used, class_names, invalid, labelled)
    import pandas as pd
    invalid_df = pd.DataFrame(invalid, columns=[PATH_COL, "reason"])
    size_stats = _size_stats(groups)
    total = sum(sum(p) for p in plan.values())
    stats.update(size_stats, images=total, invalid=len(invalid),
                 sampled_out=sum(valid_counts.values()) - total)
    images = ImageSet(df=frame, train=train, test=test, validation=validation,
                      classes=list(class_names), invalid=invalid_df, counts=counts,
                      image_col=source.image_col, source=source.description,
                      labels=label_mode if label_mode != "table" else "table",
                      seed=seed, fractions=fractions_used, stats=stats,
                      preview_paths={g: previews.get(g, []) for g in (class_names or [""])})
    images.previews = thumbnails(images)  # what the display shows, made here (in scope)
    return images


# --------------------------------------------------------------------------- steps

def _folder_classes(source: _Source, classes: Optional[Sequence[str]]) -> List[str]:
    """The requested classes, checked against the folder names (a cheap listing)."""
    if not classes:
        return []
    from pyspark.sql import functions as F

    from .labels import check_class_subset, folder_label
    found = [r[0] for r in source.listing().select(folder_label(F.col(PATH_COL)).alias("c"))
             .distinct().collect()]
    return check_class_subset(classes, found, where="folders")


def _checked(rows: Any, image_col: str, check: str) -> Any:
    """Light rows: path, class, the header check and the file's size (no bytes kept).

    ``bytes`` (null with ``check='none'``, which reads no content) lets the featurizer
    size its partitions in memory as well as in images.
    """
    from pyspark.sql import functions as F
    group = F.coalesce(F.col(LABEL_NAME_COL), F.lit("")).alias(_GROUP)
    content = F.col(CONTENT_COL)
    size = F.length(content)
    if image_col == IMAGE_COL:
        img = F.col(IMAGE_COL)
        size = F.length(img["data"])
        ok = img.isNotNull() & (img["width"] > 0) & (img["height"] > 0) & (size > 0)
        result = F.struct(
            img["width"].alias("width"), img["height"].alias("height"),
            F.lit(None).cast("string").alias("mode"), F.lit("spark-image").alias("format"),
            F.when(ok, F.lit(None)).otherwise(
                F.lit("the Spark image source could not decode it")).alias("reason"))
    elif check == "none":
        size = F.lit(None).cast("long")
        result = F.struct(*(F.lit(None).cast(t).alias(n) for n, t in
                            (("width", "int"), ("height", "int"), ("mode", "string"),
                             ("format", "string"), ("reason", "string"))))
    elif check == "decode":
        udf = F.udf(check_decode, _CHECK_SCHEMA, useArrow=False)
        result = udf(content)
    else:
        udf = F.udf(check_bytes, _CHECK_SCHEMA, useArrow=False)
        head = F.substring(content, 1, HEAD_BYTES)
        tail = F.when(size > HEAD_BYTES,
                      F.substring(content, -TAIL_BYTES, TAIL_BYTES)).otherwise(content)
        result = udf(head, tail, size)
    return (rows.select(PATH_COL, group, result.alias("c"), size.alias("bytes"))
            .select(PATH_COL, _GROUP, "c.*", "bytes"))


def _empty_files(source: _Source, label_mode: str, classes: Optional[List[str]],
                 groups: Dict[str, Dict[str, Any]], listed: Optional[int]
                 ) -> List[Tuple[str, str]]:
    """Zero-byte files as invalid entries (counted per class for folder labels)."""
    out = []
    for path in source.empty_files(listed):
        if label_mode == "folders":
            parts = path.rstrip("/").rsplit("/", 2)
            name = parts[-2] if len(parts) >= 2 else ""
            if classes and name not in classes:
                continue
            stats = groups.setdefault(name, {"n": 0, "bad": 0, "wmin": None, "wmax": None,
                                             "hmin": None, "hmax": None})
            stats["bad"] += 1
        out.append((path, "empty file (0 bytes)"))
    return out


def _group_stats(checked: Any) -> Tuple[Dict[str, Dict[str, Any]], List[Tuple[str, str]]]:
    """Per class: valid count, invalid count, size range; and the invalid files. One job."""
    from pyspark.sql import functions as F
    valid = F.col("reason").isNull()
    rows = checked.groupBy(_GROUP).agg(
        F.sum(F.when(valid, 1).otherwise(0)).alias("n"),
        F.sum(F.when(valid, 0).otherwise(1)).alias("bad"),
        F.min("width").alias("wmin"), F.max("width").alias("wmax"),
        F.min("height").alias("hmin"), F.max("height").alias("hmax"),
        F.sum(F.when(valid, F.col("bytes"))).alias("bytes"),
        F.collect_list(F.when(~valid, F.struct(PATH_COL, "reason"))).alias("invalid"),
    ).collect()
    groups = {r[_GROUP]: {"n": int(r["n"]), "bad": int(r["bad"]), "wmin": r["wmin"],
                          "wmax": r["wmax"], "hmin": r["hmin"], "hmax": r["hmax"],
                          "bytes": r["bytes"]} for r in rows}
    invalid = sorted((x[0], x[1]) for r in rows for x in r["invalid"])
    return groups, invalid


def _class_plan(n: int, sample: Optional[float], per_class: Optional[int],
                fractions: Sequence[float]) -> List[int]:
    """Images per split (in split order) for one class of *n* valid images."""
    return split_sizes(sample_size(n, sample, per_class), fractions)


def _key(seed: int) -> Any:
    from pyspark.sql import functions as F
    return F.xxhash64(F.lit(seed), F.col(PATH_COL))


def _thresholds(checked: Any, plan: Dict[str, List[int]], seed: int
                ) -> Tuple[Dict[str, List[Optional[int]]], Dict[str, List[str]]]:
    """Per class, the key at each cumulative split rank; and the preview paths.

    Within a class, images are ordered by key; the image at rank ``train`` is the last
    train image, and so on. Returns ``{class: [key_or_None per split]}`` where None
    means that split is empty for the class.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    wanted: Dict[str, List[int]] = {}
    for g, sizes in plan.items():
        cum, total = [], 0
        for s in sizes:
            total += s
            cum.append(total)
        wanted[g] = cum
    ranks = sorted({r for cum in wanted.values() for r in cum if r > 0}
                   | set(range(1, PREVIEWS_PER_CLASS + 1)))
    window = Window.partitionBy(_GROUP).orderBy(_KEY)
    rows = (checked.filter(F.col("reason").isNull())
            .filter(F.col(_GROUP).isin(list(plan)))
            .withColumn(_KEY, _key(seed))
            .withColumn("_rank", F.row_number().over(window))
            .filter(F.col("_rank").isin(ranks))
            .select(_GROUP, PATH_COL, _KEY, "_rank").collect())
    at: Dict[str, Dict[int, Tuple[int, str]]] = {}
    for r in rows:
        at.setdefault(r[_GROUP], {})[int(r["_rank"])] = (int(r[_KEY]), r[PATH_COL])
    thresholds: Dict[str, List[Optional[int]]] = {}
    previews: Dict[str, List[str]] = {}
    for g, cum in wanted.items():
        got = at.get(g, {})
        thresholds[g] = [got[c][0] if c > 0 else None for c in cum]
        kept = cum[-1]
        previews[g] = [got[i][1] for i in range(1, min(PREVIEWS_PER_CLASS, kept) + 1) if i in got]
    return thresholds, previews


def _assemble(rows: Any, image_col: str, classes: List[str], invalid: List[Tuple[str, str]],
              thresholds: Dict[str, List[Optional[int]]], seed: int, spark: Any,
              label_mode: str) -> Any:
    """The result frame: valid, sampled rows with label index and split, by expressions."""
    from pyspark.sql import functions as F
    frame = rows
    bad = [p for p, _ in invalid]
    if bad and len(bad) <= _ISIN_LIMIT:
        frame = frame.filter(~F.col(PATH_COL).isin(bad))
    elif bad:
        bad_df = spark.createDataFrame([(p,) for p in bad], f"{PATH_COL} string")
        frame = frame.join(F.broadcast(bad_df), on=PATH_COL, how="left_anti")
    group = F.coalesce(F.col(LABEL_NAME_COL), F.lit(""))
    key = _key(seed)
    n_splits = len(next(iter(thresholds.values()))) if thresholds else 1
    limits = []
    for i in range(n_splits):
        pairs = []
        for g, keys in thresholds.items():
            if keys[i] is not None:
                pairs += [F.lit(g), F.lit(keys[i])]
        limits.append(F.create_map(*pairs)[group] if pairs else F.lit(None).cast("long"))
    # the last cumulative threshold is the sample cut; earlier ones are the split cuts
    frame = frame.filter(key <= limits[-1])
    names = ["train", "test"] if n_splits == 2 else (["train", "validation", "test"]
                                                     if n_splits == 3 else ["train"])
    split_col = F.lit(names[-1])
    for i in reversed(range(n_splits - 1)):
        split_col = F.when(limits[i].isNotNull() & (key <= limits[i]), F.lit(names[i])) \
            .otherwise(split_col)
    if label_mode == "none":
        split_col = F.lit(None).cast("string")
        label = F.lit(None).cast("double")
    else:
        pairs = []
        for i, name in enumerate(classes):
            pairs += [F.lit(name), F.lit(float(i))]
        label = F.create_map(*pairs)[F.col(LABEL_NAME_COL)]
    return frame.select(PATH_COL, image_col, label.alias(LABEL_COL), LABEL_NAME_COL,
                        split_col.alias(SPLIT_COL))


def _splits(frame: Any, fractions: Sequence[float], labelled: bool
            ) -> Tuple[Any, Optional[Any], Optional[Any]]:
    from pyspark.sql import functions as F
    if not labelled or len(fractions) == 1:
        return frame, None, None
    train = frame.filter(F.col(SPLIT_COL) == "train")
    test = frame.filter(F.col(SPLIT_COL) == "test")
    validation = frame.filter(F.col(SPLIT_COL) == "validation") if len(fractions) == 3 else None
    return train, validation, test


def _counts_frame(plan: Dict[str, List[int]], groups: Dict[str, Dict[str, Any]],
                  fractions: Sequence[float], classes: List[str],
                  invalid: List[Tuple[str, str]], labelled: bool) -> Any:
    import pandas as pd
    names = {1: ["train"], 2: ["train", "test"], 3: ["train", "validation", "test"]}[len(fractions)]
    if not labelled:
        names = ["images"]
    index = classes if labelled else ["(unlabelled)"]
    keys = classes if labelled else [""]
    data = []
    for g in keys:
        sizes = plan.get(g, [0] * len(names))
        data.append(list(sizes) + [sum(sizes), int(groups.get(g, {}).get("bad", 0))])
    counts = pd.DataFrame(data, index=pd.Index(index, name="class"),
                          columns=names + ["total", "invalid"])
    return counts


def _size_stats(groups: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    def pick(key: str, fn: Any) -> Optional[int]:
        values = [s[key] for s in groups.values() if s.get(key) is not None]
        return int(fn(values)) if values else None
    sized = [(s["bytes"], s["n"]) for s in groups.values() if s.get("bytes") and s["n"]]
    mean_bytes = (int(sum(b for b, _ in sized) / sum(n for _, n in sized)) if sized else None)
    return {"width_min": pick("wmin", min), "width_max": pick("wmax", max),
            "height_min": pick("hmin", min), "height_max": pick("hmax", max),
            "mean_bytes": mean_bytes}


__all__ = ["load_images", "split_sizes", "sample_size", "check_bytes"]
