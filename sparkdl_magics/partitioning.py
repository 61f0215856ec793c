"""Even partitions for model inference: every task slot gets the same share of images.

A CNN costs 10–100 ms per image per core, so how the images are partitioned decides
how busy the cores are. Spark's file scan packs files by bytes (``maxPartitionBytes``,
``openCostInBytes``): 160 JPEGs of 70 KB are read as 5 partitions of 32, which 2
cores run in 3 waves with one core idle in the last — measured 17.8 vs 22.3 images/s
for ResNet50 on ``local[2]``. A round-robin repartition into a multiple of the task
slots costs one shuffle of the compressed bytes (small next to the CNN) and gives
partitions within a few images of each other. Where Python reads the files (a local
folder, a bucket: :mod:`sparkdl_magics.loading.stored`) only the paths are shuffled and
each file is read in the model's own task (:attr:`~sparkdl_magics.results.ImageSet.content_of`):
measured on 48 phone photos (4032x3024, 116 MB), ResNet50 bfloat16, ``local[2]``, 19.6 ->
34.9 images/s (``benchmarks/featurize.py``).

With many waves (:data:`MANY_WAVES` or more) a partition more or less at the end costs
little, and shuffling gigabytes of bytes costs memory and time: then the scan's
partitions are merged with ``coalesce`` instead (no shuffle; when the input already
has fewer partitions, it is left as is). Measured on 10,000 JPEGs, MobileNetV3Small,
``local[2]``: 313 scan partitions 140 images/s; repartition(80) 190 images/s but the
local JVM grew from 1.3 to 2.5 GB moving the bytes through the shuffle.

Partitions hold at most :data:`IMAGES_PER_PARTITION` images and about
:data:`BYTES_PER_PARTITION` of compressed bytes (when the mean file size is known),
because a pandas UDF receives a whole partition of that size as one Arrow batch: the
Python worker's memory is bounded by the partition, not by the dataset.

Classifiers are the other way round: cheap next to the CNN, but their results depend on
the rows' layout (:func:`canonical_layout` gives them one that depends on the rows alone).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

from .errors import OptionError
from .session import task_slots

#: Most images in one inference partition (one Arrow batch in the Python worker).
IMAGES_PER_PARTITION = 128
#: Most images in one partition whose files are read in the model's own task (only the
#: paths are shuffled: :attr:`~sparkdl_magics.results.ImageSet.content_of`). There the
#: read chunk bounds the Python worker's memory, not the partition, and every task costs a
#: fixed start and a last partial batch: measured on 300 photos (500x375), ResNet50
#: bfloat16, ``local[2]``, 2 partitions of 150 ran 100.7 images/s against 91.3 for 4 of 75.
READ_IN_TASK_IMAGES_PER_PARTITION = 512
#: Compressed bytes aimed at per partition when the mean image size is known.
BYTES_PER_PARTITION = 64 * 1024 * 1024
#: From this many waves of tasks on, merge partitions (coalesce) instead of shuffling.
MANY_WAVES = 8
#: Partitions of :func:`canonical_layout`: two partial sums add up alike in either order.
CANONICAL_PARTITIONS = 2
#: Up to this many rows a fit runs on the exact two-partition layout; above it (a fit of a
#: large collection on a cluster) on one partition per this many rows, still placed by the
#: rows' values, so that a big fit is not held to two tasks.
CANONICAL_ROWS_PER_PARTITION = 250_000


def images_per_partition(mean_bytes: Optional[float] = None) -> int:
    """Images per partition: :data:`IMAGES_PER_PARTITION`, fewer for large files."""
    if not mean_bytes or mean_bytes <= 0:
        return IMAGES_PER_PARTITION
    return max(1, min(IMAGES_PER_PARTITION, int(BYTES_PER_PARTITION // mean_bytes)))


def plan_partitions(images: int, slots: int, mean_bytes: Optional[float] = None,
                    per_partition: Optional[int] = None) -> int:
    """How many partitions for *images*: whole waves of *slots*, each partition small
    (at most *per_partition* images; default :func:`images_per_partition`).

    >>> plan_partitions(160, 2)     # one wave: 2 x 80
    2
    >>> plan_partitions(10_000, 2)  # 40 waves of 2 x 125
    80
    """
    if images <= 0:
        return 1
    slots = max(1, int(slots))
    per = per_partition or images_per_partition(mean_bytes)
    waves = math.ceil(images / (slots * per))
    return max(1, min(images, slots * waves))


def size_of(df: Any) -> Tuple[int, Optional[float]]:
    """(rows, mean bytes per row or None) in one job; bytes only from a ``length``
    column (binaryFile's metadata), so no file content is read."""
    from pyspark.sql import functions as F
    if "length" in df.columns:
        row = df.agg(F.count(F.lit(1)).alias("n"), F.avg("length").alias("b")).collect()[0]
        return int(row["n"]), (float(row["b"]) if row["b"] is not None else None)
    return int(df.count()), None


def even_partitions(df: Any, images: Optional[int] = None, mean_bytes: Optional[float] = None,
                    partitions: Optional[int] = None, spark: Any = None) -> Any:
    """*df* spread evenly over the task slots for inference (see the module docstring).

    *partitions*: ``None`` plans from *images* (counted when not given) and the
    session's task slots — a round-robin repartition for a few waves, a coalesce for
    many; ``0`` keeps *df*'s own partitioning; ``N`` repartitions to N. A streaming
    DataFrame is returned as is (each micro-batch is its own job).
    """
    how, count = partition_plan(df, images, mean_bytes, partitions, spark)
    if how == "repartition":
        return df.repartition(count)
    if how == "coalesce":
        return df.coalesce(count)
    return df


def partition_plan(df: Any, images: Optional[int] = None, mean_bytes: Optional[float] = None,
                   partitions: Optional[int] = None, spark: Any = None,
                   reads_in_task: bool = False) -> Tuple[str, Optional[int]]:
    """What :func:`even_partitions` does: ``("repartition", N)`` (a shuffle: the model
    runs in the stage after the scan), ``("coalesce", N)`` (no shuffle) or
    ``("keep", None)``. N is the inference stage's task count; the progress bar counts
    the images of its completed tasks (:func:`sparkdl_magics.progress.work`).
    *reads_in_task*: the files are read in the model's task (partitions of up to
    :data:`READ_IN_TASK_IMAGES_PER_PARTITION`, whatever the files' size)."""
    if partitions is not None:
        partitions = check_partitions(partitions)
    if partitions == 0 or df.isStreaming:
        return "keep", None
    if partitions is None:
        if images is None:
            images, counted_bytes = size_of(df)
            mean_bytes = mean_bytes or counted_bytes
        slots = task_slots(spark or df.sparkSession)
        partitions = plan_partitions(images, slots, mean_bytes,
                                     READ_IN_TASK_IMAGES_PER_PARTITION if reads_in_task else None)
        if partitions >= MANY_WAVES * slots:
            return "coalesce", int(partitions)
    return "repartition", int(partitions)


def canonical_layout(df: Any, cols: Sequence[str], rows: Optional[int] = None) -> Any:
    """*df*'s *cols* in partitions, and an order within them, that the rows' values alone
    decide: the same rows give the same layout wherever they came from.

    Why: MLlib's fits (and a metric's sum) add per-row terms partition by partition, then
    add the partitions' sums on the driver in the order their tasks finish. Floating-point
    sums depend on that order, and a badly conditioned fit (features with almost no
    variance, as an untrained network gives) turns last-bit differences into other
    coefficients and other predictions. The features' partitions come from round-robin
    shuffles, which Spark orders by a hash of the whole row, absolute path included, so
    the same images in another folder trained another model. Here each row goes to the
    partition of a hash of *cols* and each partition is sorted by it (rows with equal
    values are interchangeable). :data:`CANONICAL_PARTITIONS` is two: the driver adds two
    partial sums exactly alike in either order, three or more not. The cost is one
    shuffle of the columns (features, not images) and a classifier on two cores, small
    next to featurizing. Given *rows* above :data:`CANONICAL_ROWS_PER_PARTITION`, one
    partition per that many rows instead: the same placement by value, but the driver's
    sum of more than two partials may then differ in its last bits from run to run.
    """
    from pyspark.sql import functions as F
    key = F.xxhash64(*cols)
    partitions = max(CANONICAL_PARTITIONS, -(-int(rows or 0) // CANONICAL_ROWS_PER_PARTITION))
    return (df.select(*cols).repartition(partitions, key)
            .sortWithinPartitions(key))


def check_partitions(value: Any) -> Optional[int]:
    """The ``partitions`` option: ``auto``/None, 0 (keep the input's), or a count."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("auto", "")):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0 or isinstance(value, bool):
        raise OptionError(f"option 'partitions': expected auto, 0 (keep the input's "
                          f"partitions) or a number of partitions (got {value!r})")
    return number


__all__ = ["even_partitions", "partition_plan", "plan_partitions", "images_per_partition", "size_of",
           "check_partitions", "canonical_layout", "IMAGES_PER_PARTITION",
           "READ_IN_TASK_IMAGES_PER_PARTITION",
           "BYTES_PER_PARTITION", "MANY_WAVES", "CANONICAL_PARTITIONS",
           "CANONICAL_ROWS_PER_PARTITION"]
