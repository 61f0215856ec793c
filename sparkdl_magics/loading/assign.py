"""The assign step: the planned sizes become key thresholds, then column expressions.

Every image gets a seeded key, ``xxhash64(seed, split key)``: the path below the loaded
folder or prefix for files Python lists (a folder and its copy in a bucket split alike),
else the path. Within a class the images are
ordered by key and the keys at the planned ranks are collected (one job); the result
frames compare each row's key with those thresholds, so they stay narrow, re-computable
and independent of partitioning: the same seed gives the same split everywhere.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..results import (LABEL_COL, LABEL_NAME_COL, LABEL_VECTOR_COL, LABELS_COL, PATH_COL,
                       SPLIT_COL)
from .checks import GROUP, SPLIT_KEY_COL
from .plan import SPLIT_NAMES
from .previews import PER_CLASS as PREVIEWS_PER_CLASS

#: Above this many invalid files, they are removed with an anti-join instead of a list.
_ISIN_LIMIT = 2000

_KEY = "_key"

Thresholds = Dict[str, List[Optional[int]]]


def _key(seed: int) -> Any:
    """The seeded key of each image: a hash of its split key (:data:`.checks.SPLIT_KEY_COL`)."""
    from pyspark.sql import functions as F
    return F.xxhash64(F.lit(seed), F.col(SPLIT_KEY_COL))


def _cumulative(sizes: Sequence[int]) -> List[int]:
    """[3, 1, 1] -> [3, 4, 5]: the rank of the last image of each split."""
    cum, total = [], 0
    for s in sizes:
        total += s
        cum.append(total)
    return cum


def thresholds(checked: Any, plan: Dict[str, List[int]], seed: int
               ) -> Tuple[Thresholds, Dict[str, List[str]]]:
    """Per class, the key at each cumulative split rank; and the preview paths.

    Within a class, images are ordered by key; the image at rank ``train`` is the last
    train image, and so on. Returns ``{class: [key_or_None per split]}`` where None
    means that split is empty for the class.
    """
    wanted = {g: _cumulative(sizes) for g, sizes in plan.items()}
    ranks = sorted({r for cum in wanted.values() for r in cum if r > 0}
                   | set(range(1, PREVIEWS_PER_CLASS + 1)))
    at = _keys_at(checked, list(plan), ranks, seed)
    keys: Thresholds = {}
    previews: Dict[str, List[str]] = {}
    for g, cum in wanted.items():
        got = at.get(g, {})
        keys[g] = [got[c][0] if c > 0 else None for c in cum]
        kept = cum[-1]
        previews[g] = [got[i][1] for i in range(1, min(PREVIEWS_PER_CLASS, kept) + 1) if i in got]
    return keys, previews


def _keys_at(checked: Any, groups: List[str], ranks: List[int], seed: int
             ) -> Dict[str, Dict[int, Tuple[int, str]]]:
    """``{class: {rank: (key, path)}}`` for the valid images at *ranks*. One job."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    window = Window.partitionBy(GROUP).orderBy(_KEY, PATH_COL)  # ties: one order
    rows = (checked.filter(F.col("reason").isNull())
            .filter(F.col(GROUP).isin(groups))
            .withColumn(_KEY, _key(seed))
            .withColumn("_rank", F.row_number().over(window))
            .filter(F.col("_rank").isin(ranks))
            .select(GROUP, PATH_COL, _KEY, "_rank").collect())
    at: Dict[str, Dict[int, Tuple[int, str]]] = {}
    for r in rows:
        at.setdefault(r[GROUP], {})[int(r["_rank"])] = (int(r[_KEY]), r[PATH_COL])
    return at


def assemble(rows: Any, image_col: str, classes: List[str], invalid: List[Tuple[str, str]],
             keys: Thresholds, seed: int, spark: Any, labelled: bool, multi: bool = False,
             with_content: Any = None) -> Any:
    """The result frame: valid, sampled rows with label index and split, by expressions.

    *multi* (``multi_label: keep``): the rows carry their label set (``labels``) and
    their ``label_name`` is the split stratum; the frame gets ``labels`` and ``label_name``
    the set joined with ``|`` (``""``: the empty set), and a null ``label`` (one class
    index does not describe a set; :func:`with_label_vector` adds the multi-hot vector).
    """
    from pyspark.sql import functions as F
    frame = _without(rows, [p for p, _ in invalid], spark)
    key = _key(seed)
    limits = _limits(keys)
    # the last cumulative threshold is the sample cut; earlier ones are the split cuts
    frame = frame.filter(key <= limits[-1])
    if with_content is not None:
        frame = with_content(frame)
    if multi:
        return frame.select(PATH_COL, image_col, F.lit(None).cast("double").alias(LABEL_COL),
                            F.array_join(LABELS_COL, "|").alias(LABEL_NAME_COL), LABELS_COL,
                            _split_column(key, limits).alias(SPLIT_COL))
    if labelled:
        split_col, label = _split_column(key, limits), _label_column(classes)
    else:
        split_col, label = F.lit(None).cast("string"), F.lit(None).cast("double")
    return frame.select(PATH_COL, image_col, label.alias(LABEL_COL), LABEL_NAME_COL,
                        split_col.alias(SPLIT_COL))


def with_label_vector(frame: Any, classes: List[str]) -> Any:
    """``label_vector``: the multi-hot label set in class order (array<double>), next
    to ``labels``."""
    from pyspark.sql import functions as F
    vector = F.array(*[F.when(F.array_contains(LABELS_COL, c), 1.0).otherwise(0.0)
                       for c in classes]) if classes else F.array().cast("array<double>")
    return frame.withColumn(LABEL_VECTOR_COL, vector)


#: The counts-table row of images with the empty label set.
NO_LABEL = "(no label)"


def label_counts(frame: Any, rows: Any, invalid: List[Tuple[str, str]], classes: List[str],
                 fractions: Sequence[float], named: bool) -> Tuple[List[str], Any]:
    """Label sets: (the classes, the counts table): per label, the images carrying it
    in each split, their total and the invalid files carrying it; a ``(no label)`` row
    for the empty set. Unless *named*, labels without an image are left out. One job on
    paths and labels only (two when there are invalid files)."""
    import pandas as pd
    from pyspark.sql import functions as F
    names = list(SPLIT_NAMES[len(fractions)])
    label = F.explode_outer(LABELS_COL).alias("_l")
    got = frame.select(label, SPLIT_COL).groupBy("_l", SPLIT_COL).count().collect()
    table: Dict[str, Dict[str, int]] = {}
    for r in got:
        table.setdefault(r["_l"] if r["_l"] is not None else NO_LABEL, {})[r[SPLIT_COL]] = \
            int(r["count"])
    bad: Dict[str, int] = {}
    if invalid:
        paths = [p for p, _ in invalid]
        for r in (rows.filter(F.col(PATH_COL).isin(paths)).select(label)
                  .groupBy("_l").count().collect()):
            bad[r["_l"] if r["_l"] is not None else NO_LABEL] = int(r["count"])
    kept = list(classes) if named else [c for c in classes if c in table or c in bad]
    index = kept + ([NO_LABEL] if NO_LABEL in table or NO_LABEL in bad else [])
    data = []
    for c in index:
        sizes = [table.get(c, {}).get(s, 0) for s in names]
        data.append(sizes + [sum(sizes), bad.get(c, 0)])
    return kept, pd.DataFrame(data, index=pd.Index(index, name="class"),
                              columns=names + ["total", "invalid"])


def _without(rows: Any, bad: List[str], spark: Any) -> Any:
    """*rows* less the invalid paths (a list filter, or an anti-join when there are many)."""
    from pyspark.sql import functions as F
    if bad and len(bad) <= _ISIN_LIMIT:
        return rows.filter(~F.col(PATH_COL).isin(bad))
    if bad:
        bad_df = spark.createDataFrame([(p,) for p in bad], f"{PATH_COL} string")
        return rows.join(F.broadcast(bad_df), on=PATH_COL, how="left_anti")
    return rows


def _limits(keys: Thresholds) -> List[Any]:
    """Per split, the row's class threshold as a map lookup (null: the split is empty)."""
    from pyspark.sql import functions as F
    group = F.coalesce(F.col(LABEL_NAME_COL), F.lit(""))
    n_splits = len(next(iter(keys.values()))) if keys else 1
    limits = []
    for i in range(n_splits):
        pairs = []
        for g, class_keys in keys.items():
            if class_keys[i] is not None:
                pairs += [F.lit(g), F.lit(class_keys[i])]
        limits.append(F.create_map(*pairs)[group] if pairs else F.lit(None).cast("long"))
    return limits


def _split_column(key: Any, limits: List[Any]) -> Any:
    """The split name: the first split whose threshold the key is within."""
    from pyspark.sql import functions as F
    names = SPLIT_NAMES[len(limits)]
    split_col = F.lit(names[-1])
    for i in reversed(range(len(limits) - 1)):
        split_col = F.when(limits[i].isNotNull() & (key <= limits[i]), F.lit(names[i])) \
            .otherwise(split_col)
    return split_col


def _label_column(classes: List[str]) -> Any:
    """The class index (a double, as MLlib expects) from the class name."""
    from pyspark.sql import functions as F
    pairs = []
    for i, name in enumerate(classes):
        pairs += [F.lit(name), F.lit(float(i))]
    return F.create_map(*pairs)[F.col(LABEL_NAME_COL)]


def splits(frame: Any, fractions: Sequence[float], labelled: bool
           ) -> Tuple[Any, Optional[Any], Optional[Any]]:
    """(train, validation, test) views of the result frame; the whole frame when unsplit."""
    from pyspark.sql import functions as F
    if not labelled or len(fractions) == 1:
        return frame, None, None
    train = frame.filter(F.col(SPLIT_COL) == "train")
    test = frame.filter(F.col(SPLIT_COL) == "test")
    validation = frame.filter(F.col(SPLIT_COL) == "validation") if len(fractions) == 3 else None
    return train, validation, test
