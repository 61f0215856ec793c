"""Even inference partitions: every task slot gets the same share of images."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import SMALL, binary_images, write_weights


def partition_sizes(df):
    from pyspark.sql import functions as F
    rows = df.groupBy(F.spark_partition_id().alias("p")).count().collect()
    return sorted(r["count"] for r in rows)


# --------------------------------------------------------------------------- the plan

def test_plan_is_whole_waves_of_small_partitions():
    from sparkdl_magics.partitioning import IMAGES_PER_PARTITION, plan_partitions
    assert plan_partitions(160, 2) == 2  # one wave of 80 + 80
    assert plan_partitions(10_000, 2) == 80  # 40 waves, 125 images each
    assert plan_partitions(3, 8) == 3  # never more partitions than images
    assert plan_partitions(0, 4) == 1
    for images in (1, 7, 255, 256, 257, 5_000, 123_457):
        for slots in (1, 2, 3, 16):
            n = plan_partitions(images, slots)
            assert n == images or n % slots == 0
            assert -(-images // n) <= IMAGES_PER_PARTITION


def test_large_files_make_smaller_partitions():
    from sparkdl_magics.partitioning import BYTES_PER_PARTITION, images_per_partition, \
        plan_partitions
    five_mb = 5 * 1024 * 1024
    per = images_per_partition(five_mb)
    assert per == BYTES_PER_PARTITION // five_mb and per * five_mb <= BYTES_PER_PARTITION
    assert plan_partitions(1_000, 2, five_mb) > plan_partitions(1_000, 2)
    assert images_per_partition(None) == images_per_partition(0) == 128


def test_files_read_in_the_task_make_bigger_partitions(spark):
    """Where the model's task reads the files (only paths are shuffled), the partitions
    hold up to READ_IN_TASK_IMAGES_PER_PARTITION images, whatever the files' size: 300
    photos on two slots are one wave of 150, not two of 75."""
    from sparkdl_magics.partitioning import (READ_IN_TASK_IMAGES_PER_PARTITION,
                                             partition_plan)
    df = spark.range(1)  # the plan reads only the sizes it is given
    five_mb = 5 * 1024 * 1024
    assert partition_plan(df, 300, None, None, spark) == ("repartition", 4)
    assert partition_plan(df, 300, five_mb, None, spark, reads_in_task=True) == \
        ("repartition", 2)
    many = 20 * READ_IN_TASK_IMAGES_PER_PARTITION
    assert partition_plan(df, many, None, None, spark, reads_in_task=True) == \
        ("coalesce", 20)  # 10 waves of 2 x 512


def test_partitions_option_values():
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.partitioning import check_partitions
    assert check_partitions("auto") is None and check_partitions(None) is None
    assert check_partitions(0) == 0 and check_partitions("12") == 12
    for bad in ("many", -1, True, 2.5j):
        with pytest.raises(OptionError, match="partitions"):
            check_partitions(bad)


def test_master_strings_give_their_cores():
    import os
    from sparkdl_magics.session import master_cores
    assert master_cores("local[3]") == 3 and master_cores("local[4,2]") == 4
    assert master_cores("local[*]") == master_cores("local") == os.cpu_count()
    assert master_cores("local-cluster[2, 3, 1024]") == 6
    assert master_cores("spark://host:7077") is None and master_cores(None) is None


# --------------------------------------------------------------------------- on Spark

def test_task_slots_in_every_mode(spark_any):
    from sparkdl_magics.session import task_slots
    assert task_slots(spark_any) == 2  # local[2], local-cluster[2,1,...], Connect on local[2]


def test_uneven_input_becomes_equal_partitions_one_per_slot(spark, image_folder):
    from sparkdl_magics.partitioning import even_partitions, size_of
    df = binary_images(spark, image_folder).coalesce(1)
    assert size_of(df) == (36, None)
    spread = even_partitions(df)
    assert spread.rdd.getNumPartitions() == 2 and partition_sizes(spread) == [18, 18]
    raw = spark.read.format("binaryFile").load(str(image_folder / "daisy"))
    n, mean_bytes = size_of(raw)  # binaryFile's length column: no content read
    sizes = [p.stat().st_size for p in (image_folder / "daisy").iterdir()]
    assert n == len(sizes) and mean_bytes == pytest.approx(np.mean(sizes))
    kept = binary_images(spark, image_folder).repartition(5)
    assert even_partitions(kept, partitions=0) is kept
    assert even_partitions(kept, partitions=3).rdd.getNumPartitions() == 3


def test_many_waves_merge_partitions_without_a_shuffle(spark, image_folder):
    from sparkdl_magics.partitioning import MANY_WAVES, even_partitions, plan_partitions
    df = binary_images(spark, image_folder).repartition(60)
    planned = plan_partitions(5_000, 2)  # as if the 36 rows were 5,000 images
    assert planned >= MANY_WAVES * 2
    merged = even_partitions(df, images=5_000)
    assert merged.rdd.getNumPartitions() == planned
    plan = merged._jdf.queryExecution().executedPlan().toString()
    assert f"Coalesce {planned}" in plan  # merged, not shuffled again:
    assert f"RoundRobinPartitioning({planned})" not in plan and "(60)" in plan
    assert merged.count() == 36
    few = even_partitions(binary_images(spark, image_folder).repartition(3), images=5_000)
    assert few.rdd.getNumPartitions() == 3  # fewer partitions than planned: left as is


def test_featurize_spreads_each_split_and_keeps_every_image(spark, image_folder, tmp_path):
    from sparkdl_magics.featurizer import featurize
    from sparkdl_magics.loading import load_images
    images = load_images(str(image_folder), split=0.75, seed=3)
    assert images.stats["mean_bytes"] == pytest.approx(np.mean(
        [p.stat().st_size for p in image_folder.rglob("*") if p.is_file()]), abs=1)
    weights = write_weights(SMALL, tmp_path)
    fs = featurize(images, SMALL, str(weights), batch_size=8)
    sizes = images.split_sizes()
    for name, df in (("train", fs.train), ("test", fs.test)):
        assert df.rdd.getNumPartitions() == 2  # <=128 images: one wave on local[2]
        assert sum(partition_sizes(df)) == sizes[name] == fs.stats["per_split"][name]
    kept = featurize(images, SMALL, str(weights), batch_size=8, partitions=0, cache="none")
    assert {r["path"] for r in kept.train.select("path").collect()} == \
        {r["path"] for r in fs.train.select("path").collect()}


def test_partitions_option_is_checked_when_the_cell_is_parsed(ip, spark, image_folder):
    from IPython.core.error import UsageError
    ip.user_ns["flowers"] = binary_images(spark, image_folder)
    with pytest.raises(UsageError, match="partitions") as err:
        ip.run_cell("%%featurize flowers\npartitions: lots\n")
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="partitions"):
        ip.run_cell("%%predict flowers\npartitions: -2\n")


def test_canonical_layout_is_two_partitions_unless_the_fit_is_large(spark):
    """Small fits get the exact two-partition layout; a large one is not held to two tasks,
    and either way the rows' values alone decide where each row goes."""
    from pyspark.sql import functions as F
    from sparkdl_magics.partitioning import CANONICAL_ROWS_PER_PARTITION, canonical_layout
    df = spark.range(40).select((F.col("id") % 3).alias("label"), F.col("id").alias("x"))
    small = canonical_layout(df, ["label", "x"])
    large = canonical_layout(df, ["label", "x"], rows=2 * CANONICAL_ROWS_PER_PARTITION + 1)
    assert small.rdd.getNumPartitions() == 2
    assert large.rdd.getNumPartitions() == 3

    def layout(frame):
        return sorted(frame.withColumn("p", F.spark_partition_id())
                      .select("p", "label", "x").collect())
    reordered = canonical_layout(df.orderBy(F.desc("x")).repartition(5), ["label", "x"])
    assert layout(small) == layout(reordered)
