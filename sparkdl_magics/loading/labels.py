"""Where labels come from: parent folder names, or a label table joined on the file name.

A label table is a CSV or Parquet file (or a Spark / pandas DataFrame) with one row per
(image, label), Open Images style: ``ImageID,LabelName,Confidence``. The image id is the
file name without its extension. Rows below ``min_confidence`` are ignored (Open Images
marks negative labels with confidence 0). Images with several of the chosen labels are
counted and, by policy, dropped, kept once under the first class (in class order), or
kept once per label.

This module is also the loader's *listing* step: the source rows with their class name
(no bytes read), see :func:`label_source` and :func:`listing`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import DataError, OptionError, did_you_mean, missing_path_errors
from ..results import LABEL_NAME_COL, LABELS_COL, PATH_COL
from .choices import LABEL_SOURCES

_ID = "_image_id"
_N = "_n_labels"
_FIRST = "_first_label"
_SET = "_label_set"


def folder_label(path_col: Any) -> Any:
    """The parent folder's name of each path (a Spark column expression)."""
    from pyspark.sql import functions as F
    return F.regexp_extract(path_col, r"([^/]+)/[^/]+$", 1)


def file_id(path_col: Any) -> Any:
    """The file name without its extension (``.../000a1249af2bc5f0.jpg`` -> the id)."""
    from pyspark.sql import functions as F
    return F.regexp_extract(path_col, r"([^/]*?)(\.[^./]*)?$", 1)


def check_class_subset(classes: Sequence[str], found: Sequence[str], where: str) -> List[str]:
    """The requested classes in the order given, each checked against those found."""
    available = sorted({str(f) for f in found if f})
    out: List[str] = []
    for c in classes:
        name = str(c)
        if name not in available:
            shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
            raise OptionError(f"option 'classes': no class {name!r} in the {where}"
                              f"{did_you_mean(name, available)} (found: {shown or 'none'})")
        if name not in out:
            out.append(name)
    return out


def _column(df: Any, name: Optional[str], option: str, required: bool = True) -> Optional[str]:
    if name and name in df.columns:
        return name
    if not required:
        return None
    raise OptionError(f"option '{option}': the label table has no column {name!r}"
                      f"{did_you_mean(str(name), df.columns)} (columns: {', '.join(df.columns)})")


#: How a label table's image ids may name a file, most specific first (the rank is
#: what a match is reported as when an id names a file in two ways).
ID_FORMS = ("absolute path", "relative path", "file name", "stem")
_FORM = "_id_form"
_NFILES = "_n_files"
#: Ids shown as examples of label rows without an image, or of ambiguous ids.
EXAMPLES = 5


def normalised_id(col: Any) -> Any:
    """A table id as a match key: trimmed, ``\\`` as ``/``, no ``file:`` scheme, no ``./``."""
    from pyspark.sql import functions as F
    text = F.regexp_replace(F.trim(col.cast("string")), r"\\", "/")
    text = F.regexp_replace(text, r"^file:(//)?", "")
    return F.regexp_replace(text, r"^(\./)+", "")


def file_keys(path_col: Any) -> Any:
    """Every id that names the file at *path_col*, with its form's rank in
    :data:`ID_FORMS`: its absolute path (URI, or path without ``file:``), each path
    relative to a folder above it, its file name and its stem (a Spark array of
    ``struct(key, form)``)."""
    from pyspark.sql import functions as F
    path = F.regexp_replace(path_col, r"^file:(//)?", "")
    parts = F.split(path, "/")
    n = F.size(parts)

    def suffix(k: Any) -> Any:
        form = F.when(k == 1, 0).when(k == n, 2).otherwise(1)
        return F.struct(F.array_join(F.slice(parts, k, n - k + 1), "/").alias("key"),
                        form.alias("form"))
    suffixes = F.transform(F.sequence(F.lit(1), n), suffix)
    extra = F.array(F.struct(path_col.alias("key"), F.lit(0).alias("form")),
                     F.struct(file_id(path_col).alias("key"), F.lit(3).alias("form")))
    return F.concat(suffixes, extra)


@dataclass
class LabelTable:
    """(image id, label) pairs after the confidence filter, as a Spark DataFrame."""

    pairs: Any  # columns _image_id (normalised), label_name
    description: str
    #: label-table rows ignored as unusable: ``no_id`` (empty image id), ``bad_confidence``
    #: (a confidence that is not a number); counted so nothing is dropped silently
    skipped: Dict[str, int] = field(default_factory=dict)
    #: every usable image id of the table (before the confidence filter): an image the
    #: table names but gives no chosen label has the empty label set (multi_label keep)
    ids: Any = None
    #: the label that means "no label" (NIH's ``No Finding``): an empty label set
    empty_label: Optional[str] = None

    @classmethod
    def read(cls, spark: Any, labels: Any, *, id_column: str, label_column: str,
             confidence_column: Optional[str], min_confidence: Optional[float],
             label_separator: Optional[str] = None,
             empty_label: Optional[str] = None) -> "LabelTable":
        from pyspark.sql import functions as F
        df, description = _read_table(spark, labels)
        df = _clean_header(df)
        id_col = _column(df, id_column, "id_column")
        label_col = _column(df, label_column, "label_column")
        conf_col = _column(df, confidence_column, "confidence_column", required=False)
        skipped = _unusable_rows(df, id_col, conf_col)
        image_id = normalised_id(F.col(id_col)).alias(_ID)
        usable = F.col(id_col).isNotNull() & (F.trim(F.col(id_col).cast("string")) != "")
        if conf_col:
            conf = F.col(conf_col)
            usable = usable & ~(conf.isNotNull() & (F.trim(conf.cast("string")) != "")
                                & _number(conf_col).isNull())
        ids = df.filter(usable).select(image_id).distinct()
        if conf_col and min_confidence is not None:
            df = df.filter(_number(conf_col) >= float(min_confidence))
        label = F.col(label_col).cast("string")
        if label_separator:
            label = F.explode(F.split(label, "\\Q" + label_separator + "\\E"))
        pairs = (df.filter(usable).select(image_id, label.alias(LABEL_NAME_COL))
                 .withColumn(LABEL_NAME_COL, F.trim(F.col(LABEL_NAME_COL)))
                 .filter(F.col(_ID).isNotNull() & (F.col(_ID) != "")
                         & F.col(LABEL_NAME_COL).isNotNull() & (F.col(LABEL_NAME_COL) != ""))
                 .distinct())
        return cls(pairs, description, skipped, ids, empty_label)

    def choose(self, classes: Optional[Sequence[str]]) -> List[str]:
        """The requested classes (checked against the table), or all of the table's
        (never the empty label)."""
        found = [r[0] for r in self.pairs.select(LABEL_NAME_COL).distinct().collect()]
        if self.empty_label is not None:
            if self.empty_label not in found:
                shown = ", ".join(sorted(found)[:20])
                raise OptionError(f"option 'empty_label': no label {self.empty_label!r} in "
                                  f"the label table {self.description}"
                                  f"{did_you_mean(self.empty_label, found)} (labels: {shown})")
            found = [f for f in found if f != self.empty_label]
        if not found:
            raise DataError(f"the label table {self.description} has no labels "
                            "(after the min_confidence filter)")
        if classes:
            if self.empty_label is not None and self.empty_label in classes:
                raise OptionError(f"option 'classes': {self.empty_label!r} is the "
                                  "empty_label (an empty label set), not a class")
            return check_class_subset(classes, found, where=f"label table {self.description}")
        return sorted(found)

    def match(self, files: Any, source: str) -> Tuple[Any, Dict[str, Any]]:
        """``(_image_id, path)`` of the ids that name exactly one file, and what the
        matching found: how many ids matched in each form, the ids that match no file
        and those that match several (ambiguous: left out, never guessed).

        Every file is listed under each key that names it (:func:`file_keys`) and the
        table's ids are joined on them, so ids may be stems, file names, paths relative
        to any folder above the file (``imgs/id001.jpg``) or absolute paths, even mixed.
        Two small jobs (three or four when there are examples to show).
        """
        from pyspark.sql import functions as F
        keys = files.select(PATH_COL, F.explode(file_keys(F.col(PATH_COL))).alias("k"))
        keys = keys.select(PATH_COL, F.col("k.key").alias(_ID), F.col("k.form").alias(_FORM))
        pairs = keys.join(self.ids, on=_ID, how="inner").groupBy(_ID, PATH_COL) \
            .agg(F.min(_FORM).alias(_FORM))
        per_id = pairs.groupBy(_ID).agg(F.count("*").alias(_NFILES), F.min(_FORM).alias(_FORM),
                                        F.min(PATH_COL).alias(PATH_COL))
        summary = self.ids.join(per_id, on=_ID, how="left")
        aggs = [F.count("*").alias("ids"),
                F.sum(F.when(F.col(_NFILES).isNull(), 1).otherwise(0)).alias("missing"),
                F.sum(F.when(F.col(_NFILES) > 1, 1).otherwise(0)).alias("ambiguous")]
        aggs += [F.sum(F.when((F.col(_NFILES) == 1) & (F.col(_FORM) == i), 1).otherwise(0))
                 .alias(f"form{i}") for i in range(len(ID_FORMS))]
        row = summary.agg(*aggs).first()
        by_form = {ID_FORMS[i]: int(row[f"form{i}"] or 0) for i in range(len(ID_FORMS))
                   if row[f"form{i}"]}
        stats: Dict[str, Any] = {"id_match": by_form}
        missing, ambiguous = int(row["missing"] or 0), int(row["ambiguous"] or 0)
        if missing:
            stats["missing_images"] = missing
            stats["missing_examples"] = [r[0] for r in summary.filter(
                F.col(_NFILES).isNull()).select(_ID).orderBy(_ID).limit(EXAMPLES).collect()]
        if ambiguous:
            shown = summary.filter(F.col(_NFILES) > 1).select(_ID).orderBy(_ID).limit(EXAMPLES)
            found = pairs.join(shown, on=_ID).select(_ID, PATH_COL).collect()
            paths: Dict[str, List[str]] = {}
            for r in found:
                paths.setdefault(r[_ID], []).append(r[PATH_COL])
            stats["ambiguous_ids"] = ambiguous
            stats["ambiguous_examples"] = {k: sorted(v) for k, v in sorted(paths.items())}
        if not by_form:
            raise self._nothing_matched(files, source, int(row["ids"] or 0), stats)
        good = per_id.filter(F.col(_NFILES) == 1).select(_ID, PATH_COL)
        return good, stats

    def _nothing_matched(self, files: Any, source: str, n_ids: int,
                         stats: Dict[str, Any]) -> DataError:
        """No id names a file: say what the ids and the files look like."""
        names = [r[0].rsplit("/", 1)[-1] for r in files.limit(3).collect()]
        if not names:
            return DataError(f"no image files in {source} (the label table "
                             f"{self.description} has {n_ids} ids)")
        if stats.get("ambiguous_ids"):
            return DataError(
                f"every id of the label table {self.description} that names a file names "
                f"several ({stats['ambiguous_ids']} ambiguous ids, e.g. "
                f"{next(iter(stats['ambiguous_examples']))!r}): give ids as paths relative "
                "to the folder (a/b.jpg) or absolute paths")
        ids = ", ".join(repr(i) for i in stats.get("missing_examples", [])[:3])
        return DataError(
            f"option 'id_column': none of the {n_ids} ids of the label table "
            f"{self.description} names an image file in {source} (ids such as {ids}; files "
            f"such as {', '.join(repr(n) for n in names)}); ids may be file stems, file "
            "names, paths relative to the folder, or absolute paths")

    def attach(self, rows: Any, files: Any, source: str, classes: List[str],
               multi_label: str) -> Tuple[Any, Dict[str, Any]]:
        """*rows* with ``label_name`` from the table (and ``labels``, the label set in
        class order, for ``multi_label: keep``), and what the matching and labelling
        found (:meth:`match`; images with several labels, with none)."""
        from pyspark.sql import functions as F
        good, stats = self.match(files, source)
        index = F.create_map(*[x for i, c in enumerate(classes) for x in (F.lit(c), F.lit(i))])
        pairs = self.pairs.filter(F.col(LABEL_NAME_COL).isin(list(classes)))
        per_id = pairs.groupBy(_ID).agg(
            F.count("*").alias(_N), F.min(index[F.col(LABEL_NAME_COL)]).alias(_FIRST),
            F.array_sort(F.collect_list(F.struct(index[F.col(LABEL_NAME_COL)].alias("i"),
                                                 F.col(LABEL_NAME_COL).alias("n"))))
            .alias(_SET))
        counted = (files.join(good, on=PATH_COL, how="left").join(per_id, on=_ID, how="left")
                   .agg(F.sum(F.when(F.col(_ID).isNull(), 1).otherwise(0)).alias("unmatched"),
                        F.sum(F.when(F.col(_ID).isNotNull() & F.col(_N).isNull(), 1)
                              .otherwise(0)).alias("empty"),
                        F.sum(F.when(F.col(_N) > 1, 1).otherwise(0)).alias("multi"))
                   .first())
        unmatched, empty = int(counted["unmatched"] or 0), int(counted["empty"] or 0)
        stats["multi_label"] = int(counted["multi"] or 0)
        with_id = rows.join(good, on=PATH_COL, how="inner")
        keep = [c for c in rows.columns] + [LABEL_NAME_COL]
        if multi_label == "keep":
            stats.update(unlabelled=unmatched, empty_label_set=empty)
            joined = with_id.join(per_id, on=_ID, how="left")
            names = F.transform(F.col(_SET), lambda x: x["n"])
            labels = F.coalesce(names, F.array().cast("array<string>"))
            joined = joined.withColumn(LABELS_COL, labels)
            # the stratum of the split: the first label in class order ("" for none)
            joined = joined.withColumn(LABEL_NAME_COL, F.when(
                F.size(F.col(LABELS_COL)) > 0, F.col(LABELS_COL)[0]).otherwise(F.lit("")))
            return joined.select(*keep, LABELS_COL), stats
        stats["unlabelled"] = unmatched + empty
        if multi_label == "all":
            out = with_id.join(pairs, on=_ID, how="inner")
        else:
            joined = with_id.join(per_id, on=_ID, how="inner")
            if multi_label == "drop":
                joined = joined.filter(F.col(_N) == 1)
            names = F.array(*[F.lit(c) for c in classes])
            out = joined.withColumn(LABEL_NAME_COL, F.element_at(names, F.col(_FIRST) + 1))
        return out.select(*keep), stats


def _clean_header(df: Any) -> Any:
    """Column names without a UTF-8 byte-order mark, a stray CR or spaces around them
    (a CSV saved by Excel on Windows)."""
    clean = [c.replace("\ufeff", "").strip() for c in df.columns]
    if clean == list(df.columns) or len(set(clean)) != len(clean):
        return df
    return df.toDF(*clean)


def _number(name: str) -> Any:
    """The column as a double, null where it is not a number (a plain cast fails the
    whole job under ANSI mode, Spark 4's default)."""
    from pyspark.sql import functions as F
    return F.expr("try_cast(`{}` AS DOUBLE)".format(name.replace("`", "``")))


def _unusable_rows(df: Any, id_col: str, conf_col: Optional[str]) -> Dict[str, int]:
    """Rows without an image id, and rows whose confidence is not a number (one job)."""
    from pyspark.sql import functions as F
    no_id = F.col(id_col).isNull() | (F.trim(F.col(id_col).cast("string")) == "")
    aggs = [F.sum(F.when(no_id, 1).otherwise(0)).alias("no_id")]
    if conf_col:
        conf = F.col(conf_col)
        bad = conf.isNotNull() & (F.trim(conf.cast("string")) != "") & _number(conf_col).isNull()
        aggs.append(F.sum(F.when(bad, 1).otherwise(0)).alias("bad_confidence"))
    row = df.agg(*aggs).first()
    return {k: int(row[k] or 0) for k in row.asDict() if row[k]}


def _read_table(spark: Any, labels: Any) -> Tuple[Any, str]:
    """A Spark DataFrame from a CSV/Parquet path, a Spark DataFrame or a pandas one."""
    from pyspark.sql import DataFrame

    if isinstance(labels, DataFrame):
        return labels, "(DataFrame)"
    try:
        import pandas as pd
        if isinstance(labels, pd.DataFrame):
            return spark.createDataFrame(labels.astype(str)), "(pandas DataFrame)"
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(labels, str) or not labels.strip():
        raise OptionError(f"option 'labels': expected folders, none, or a CSV/Parquet label "
                          f"table, got {labels!r}")
    path = labels.strip()
    lower = path.lower().rstrip("/")
    from ..storage import is_remote_url, spark_reads, store_for
    if is_remote_url(path) and lower.endswith((".csv", ".csv.gz", ".tsv", ".txt", ".parquet",
                                               ".pq")) and not spark_reads(spark, path):
        from .stored import table_frame  # a bucket Spark cannot read: Python reads it
        return table_frame(spark, store_for(path), path), repr(path)
    with missing_path_errors([path], option="labels"):
        if lower.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            sep = "\t" if lower.endswith(".tsv") else ","
            df = spark.read.option("header", "true").option("sep", sep).csv(path)
        elif lower.endswith((".parquet", ".pq")) or (
                "." not in lower.rsplit("/", 1)[-1] and not did_you_mean(path, LABEL_SOURCES)):
            df = spark.read.parquet(path)
        else:
            raise OptionError(
                f"option 'labels': {path!r} is not folders, none, or a .csv/.tsv/.parquet "
                f"label table{did_you_mean(path, LABEL_SOURCES)}")
        df.columns  # noqa: B018 - resolves the schema now, so a missing file fails here
    return df, repr(path)


# --------------------------------------------------------------------------- listing

@dataclass
class Listing:
    """The source rows with their class name (``label_name``), before any file is read."""

    rows: Any
    mode: str  # folders, table or none
    #: the classes asked for (checked, in the order given), or the table's: a guess
    #: until the check step has counted the valid images (see :meth:`classes_found`)
    classes: List[str]
    named: bool  # whether the caller named the classes
    stats: Dict[str, Any]
    #: ``multi_label: keep``: each image keeps its label set (``labels``); its
    #: ``label_name`` is then the split's stratum, the first label in class order
    #: (``""`` for the empty set), until :func:`.assign.assemble` writes the set there
    multi: bool = False

    @property
    def labelled(self) -> bool:
        return self.mode != "none"

    @property
    def named_classes(self) -> Optional[List[str]]:
        """The classes the caller named (checked), or None for all."""
        return self.classes if self.named else None

    def classes_found(self, valid: Dict[str, int]) -> List[str]:
        """The final classes: those named, else every class with a valid image (for a
        label set, the table's: :func:`.assign.label_counts` keeps those present)."""
        if self.labelled and not self.named and not self.multi:
            return sorted(valid)
        return self.classes

    def strata(self, valid: Dict[str, int]) -> List[str]:
        """The groups the split is stratified by: the classes; for label sets, the
        first labels (in class order) that have valid images, and ``""`` (the empty
        set) when some image has none."""
        if not self.multi:
            return self.classes_found(valid)
        return [c for c in self.classes if c in valid] + ([""] if "" in valid else [])


def label_source(spark: Any, labels: Any, classes: Optional[Sequence[str]],
                 **table_options: Any) -> Tuple[str, Optional[LabelTable]]:
    """(``folders`` / ``none`` / ``table``, the label table read when it is one)."""
    if isinstance(labels, str) and labels.lower() in LABEL_SOURCES:
        mode, table = labels.lower(), None
    else:
        mode, table = "table", LabelTable.read(spark, labels, **table_options)
    if mode == "none" and classes:
        raise OptionError("option 'classes' needs labels (labels: folders or a label table)")
    return mode, table


def listing(source: Any, mode: str, table: Optional[LabelTable],
            classes: Optional[Sequence[str]], multi_label: str) -> Listing:
    """The listing step: *source*'s rows labelled by *mode* (lazy, but for the checks
    of *classes* against the folders or the table)."""
    from pyspark.sql import functions as F
    stats: Dict[str, Any] = {"multi_label_policy": multi_label}
    rows = source.rows()
    if mode == "folders":
        chosen = _folder_classes(source, classes)
        rows = rows.withColumn(LABEL_NAME_COL, folder_label(F.col(PATH_COL)))
        if classes:
            rows = rows.filter(F.col(LABEL_NAME_COL).isin(list(chosen)))
    elif mode == "table":
        assert table is not None
        chosen = table.choose(classes)
        rows, counted = table.attach(rows, source.listing(), source.description, chosen,
                                     multi_label)
        stats.update(counted, **table.skipped)
        if table.empty_label is not None:
            stats["empty_label"] = table.empty_label
    else:
        chosen = []
        rows = rows.withColumn(LABEL_NAME_COL, F.lit(None).cast("string"))
    return Listing(rows, mode, chosen, bool(classes), stats,
                   multi=mode == "table" and multi_label == "keep")


def _folder_classes(source: Any, classes: Optional[Sequence[str]]) -> List[str]:
    """The requested classes, checked against the folder names (a cheap listing)."""
    if not classes:
        return []
    from pyspark.sql import functions as F
    found = [r[0] for r in source.listing().select(folder_label(F.col(PATH_COL)).alias("c"))
             .distinct().collect()]
    return check_class_subset(classes, found, where="folders")
