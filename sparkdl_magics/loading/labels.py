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
from ..results import LABEL_NAME_COL, PATH_COL
from .choices import LABEL_SOURCES

_ID = "_image_id"
_N = "_n_labels"
_FIRST = "_first_label"


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


@dataclass
class LabelTable:
    """(image id, label) pairs after the confidence filter, as a Spark DataFrame."""

    pairs: Any  # columns _image_id, label_name
    description: str
    #: label-table rows ignored as unusable: ``no_id`` (empty image id), ``bad_confidence``
    #: (a confidence that is not a number); counted so nothing is dropped silently
    skipped: Dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, spark: Any, labels: Any, *, id_column: str, label_column: str,
             confidence_column: Optional[str], min_confidence: Optional[float]) -> "LabelTable":
        from pyspark.sql import functions as F
        df, description = _read_table(spark, labels)
        id_col = _column(df, id_column, "id_column")
        label_col = _column(df, label_column, "label_column")
        conf_col = _column(df, confidence_column, "confidence_column", required=False)
        skipped = _unusable_rows(df, id_col, conf_col)
        if conf_col and min_confidence is not None:
            df = df.filter(_number(conf_col) >= float(min_confidence))
        pairs = (df.select(F.col(id_col).cast("string").alias(_ID),
                           F.trim(F.col(label_col).cast("string")).alias(LABEL_NAME_COL))
                 .filter(F.col(_ID).isNotNull() & F.col(LABEL_NAME_COL).isNotNull()
                         & (F.col(LABEL_NAME_COL) != ""))
                 .distinct())
        return cls(pairs, description, skipped)

    def choose(self, classes: Optional[Sequence[str]]) -> List[str]:
        """The requested classes (checked against the table), or all of the table's."""
        found = [r[0] for r in self.pairs.select(LABEL_NAME_COL).distinct().collect()]
        if not found:
            raise DataError(f"the label table {self.description} has no labels "
                            "(after the min_confidence filter)")
        if classes:
            return check_class_subset(classes, found, where=f"label table {self.description}")
        return sorted(found)

    def attach(self, rows: Any, classes: List[str], multi_label: str) -> Tuple[Any, Dict[str, int]]:
        """*rows* with ``label_name`` from the table, and how many images had several
        labels or none. One cheap Spark job (paths only) counts them."""
        from pyspark.sql import functions as F
        index = F.create_map(*[x for i, c in enumerate(classes) for x in (F.lit(c), F.lit(i))])
        pairs = self.pairs.filter(F.col(LABEL_NAME_COL).isin(list(classes)))
        per_id = pairs.groupBy(_ID).agg(F.count("*").alias(_N),
                                        F.min(index[F.col(LABEL_NAME_COL)]).alias(_FIRST))
        with_id = rows.withColumn(_ID, file_id(F.col(PATH_COL)))
        counted = (with_id.select(PATH_COL, _ID).join(per_id, on=_ID, how="left")
                   .agg(F.sum(F.when(F.col(_N).isNull(), 1).otherwise(0)).alias("none"),
                        F.sum(F.when(F.col(_N) > 1, 1).otherwise(0)).alias("multi"))
                   .first())
        stats = {"unlabelled": int(counted["none"] or 0), "multi_label": int(counted["multi"] or 0)}
        if multi_label == "all":
            out = with_id.join(pairs, on=_ID, how="inner")
        else:
            joined = with_id.join(per_id, on=_ID, how="inner")
            if multi_label == "drop":
                joined = joined.filter(F.col(_N) == 1)
            names = F.array(*[F.lit(c) for c in classes])
            out = joined.withColumn(LABEL_NAME_COL, F.element_at(names, F.col(_FIRST) + 1))
        keep = [c for c in rows.columns] + [LABEL_NAME_COL]
        return out.select(*keep), stats


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

    @property
    def labelled(self) -> bool:
        return self.mode != "none"

    @property
    def named_classes(self) -> Optional[List[str]]:
        """The classes the caller named (checked), or None for all."""
        return self.classes if self.named else None

    def classes_found(self, valid: Dict[str, int]) -> List[str]:
        """The final classes: those named, else every class with a valid image."""
        if self.labelled and not self.named:
            return sorted(valid)
        return self.classes


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
        rows, counted = table.attach(rows, chosen, multi_label)
        stats.update(counted, **table.skipped)
    else:
        chosen = []
        rows = rows.withColumn(LABEL_NAME_COL, F.lit(None).cast("string"))
    return Listing(rows, mode, chosen, bool(classes), stats)


def _folder_classes(source: Any, classes: Optional[Sequence[str]]) -> List[str]:
    """The requested classes, checked against the folder names (a cheap listing)."""
    if not classes:
        return []
    from pyspark.sql import functions as F
    found = [r[0] for r in source.listing().select(folder_label(F.col(PATH_COL)).alias("c"))
             .distinct().collect()]
    return check_class_subset(classes, found, where="folders")
