"""DeepImageFeaturizer (a Spark ML Transformer) and ``featurize`` (images -> FeatureSet).

The transformer is a plain ``pyspark.ml`` stage: keyword-only Params, ``_transform``,
MLlib persistence. Its work is one scalar-iterator pandas UDF over the *compressed*
image column (or a Spark image-source struct column): each Arrow batch is decoded,
resized and run through the model ``batchSize`` images at a time in the Python
worker (see :mod:`sparkdl_magics.inference`, which also keeps one model per worker).
Weights are resolved and shipped once per session on the driver
(:mod:`sparkdl_magics.weights`). Output: an MLlib dense vector of pooled features;
a file that cannot be decoded gives null features (and a reason in ``errorCol``).
``precision`` (float32, bfloat16, float16, auto) is the number type the model runs in on
the workers (:mod:`sparkdl_magics.precision`); features are float32 whatever it is. Each
task also says, per row, the type its model really ran in (``precisionCol``, off by
default): ``featurize`` reads it in the job that counts the features, so
``stats['precision']`` is what the tasks used (an ``auto`` model that cannot run at a
reduced type says float32), over Spark Connect too (a column, no accumulator).
``engine`` (keras, openvino, auto: :mod:`sparkdl_magics.engines`) is what runs the model
on the workers; it is reported the same way (``engineCol``, ``stats['engine']``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd
from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from . import defaults, engines
from . import precision as precisions
from .errors import DataError, OptionError
from .frames import image_column
from .inference import ENGINE_FIELD, PRECISION_FIELD, BatchRunner, check_batch_size
from .results import (CONTENT_COL, FEATURES_COL, FEATURIZE_ERROR_COL,
                      FEATURIZE_ENGINE_COL, FEATURIZE_PRECISION_COL, IMAGE_COL, LABEL_COL, LABEL_NAME_COL, PATH_COL,
                      FeatureSet, ImageSet)
from .session import is_dataframe

ERROR_COL = FEATURIZE_ERROR_COL
PRECISION_COL = FEATURIZE_PRECISION_COL
ENGINE_COL = FEATURIZE_ENGINE_COL
_TMP_COL = "__sparkdl_featurize"
#: What the UDF returns per image (and, reported by its runner, the type its model ran in).
UDF_RETURN = "features array<float>, error string"


class DeepImageFeaturizer(Transformer, HasInputCol, HasOutputCol,
                          DefaultParamsReadable, DefaultParamsWritable):
    """Pooled CNN features of an image column, as MLlib vectors.

    ``inputCol``: compressed image bytes (``binaryFile``'s ``content``) or a Spark
    image-source struct (``image``, BGR). ``modelName``: a registry name (see
    ``list_models()``) or a ``.keras`` / ``.h5`` / SavedModel path. ``weights``:
    ``imagenet`` (Keras' cache), ``none`` (seeded, untrained), ``auto`` (ImageNet when
    available, else the untrained fallback with a warning) or a weights file.
    ``layer``: where to cut a user model (default: its penultimate/pooled output).
    ``precision``: ``float32``, ``bfloat16``, ``float16`` or ``auto`` (decided by each
    worker's hardware); saved with the stage, so a loaded pipeline runs the same way.
    ``engine``: ``keras``, ``openvino`` or ``auto`` (see :mod:`sparkdl_magics.engines`).
    """

    modelName = Param(Params._dummy(), "modelName",
                      "registry model name (InceptionV3, ResNet50, ...) or a model file path",
                      typeConverter=TypeConverters.toString)
    weights = Param(Params._dummy(), "weights",
                    "imagenet, none (untrained), or a local weights file",
                    typeConverter=TypeConverters.toString)
    layer = Param(Params._dummy(), "layer", "user models: the layer to cut at ('' = default)",
                  typeConverter=TypeConverters.toString)
    preprocess = Param(Params._dummy(), "preprocess",
                       "user models: none, unit, tf, caffe or torch ('' = none)",
                       typeConverter=TypeConverters.toString)
    batchSize = Param(Params._dummy(), "batchSize", "images per model call",
                      typeConverter=TypeConverters.toInt)
    errorCol = Param(Params._dummy(), "errorCol",
                     "column for the reason an image failed to decode ('' = no column)",
                     typeConverter=TypeConverters.toString)
    unsafe = Param(Params._dummy(), "unsafe",
                   "user models: allow Python code (Lambda layers) when loading",
                   typeConverter=TypeConverters.toBoolean)
    precision = Param(Params._dummy(), "precision",
                      "number type the model runs in: float32, bfloat16, float16 or auto",
                      typeConverter=TypeConverters.toString)
    precisionCol = Param(Params._dummy(), "precisionCol",
                         "column for the number type each row's model ran in ('' = no column)",
                         typeConverter=TypeConverters.toString)
    engine = Param(Params._dummy(), "engine", "what runs the model: keras, openvino or auto",
                   typeConverter=TypeConverters.toString)
    engineCol = Param(Params._dummy(), "engineCol",
                      "column for the engine each row's model ran in ('' = no column)",
                      typeConverter=TypeConverters.toString)

    @keyword_only
    def __init__(self, *, inputCol: str = CONTENT_COL, outputCol: str = FEATURES_COL,
                 modelName: str = defaults.MODEL, weights: str = defaults.WEIGHTS, layer: str = "",
                 preprocess: str = "", batchSize: int = defaults.BATCH_SIZE, errorCol: str = "",
                 unsafe: bool = False, precision: str = defaults.PRECISION,
                 precisionCol: str = "", engine: str = defaults.ENGINE, engineCol: str = ""):
        super().__init__()
        self._setDefault(inputCol=CONTENT_COL, outputCol=FEATURES_COL, modelName=defaults.MODEL,
                         weights=defaults.WEIGHTS, layer="", preprocess="",
                         batchSize=defaults.BATCH_SIZE, errorCol="", unsafe=False,
                         precision=defaults.PRECISION, precisionCol="",
                         engine=defaults.ENGINE, engineCol="")
        self._resolved_cache: Dict[Tuple, Any] = {}
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str = CONTENT_COL, outputCol: str = FEATURES_COL,
                  modelName: str = defaults.MODEL, weights: str = defaults.WEIGHTS, layer: str = "",
                  preprocess: str = "", batchSize: int = defaults.BATCH_SIZE,
                  errorCol: str = "", unsafe: bool = False,
                  precision: str = defaults.PRECISION,
                  precisionCol: str = "", engine: str = defaults.ENGINE,
                  engineCol: str = "") -> "DeepImageFeaturizer":
        kwargs = self._input_kwargs
        if "batchSize" in kwargs:
            kwargs["batchSize"] = check_batch_size(kwargs["batchSize"])
        if "precision" in kwargs:
            kwargs["precision"] = precisions.check(kwargs["precision"])
        if "engine" in kwargs:
            kwargs["engine"] = engines.check(kwargs["engine"])
        return self._set(**kwargs)

    # getters, MLlib style
    def getModelName(self) -> str:
        return self.getOrDefault(self.modelName)

    def getWeights(self) -> str:
        return self.getOrDefault(self.weights)

    def getLayer(self) -> str:
        return self.getOrDefault(self.layer)

    def getBatchSize(self) -> int:
        return self.getOrDefault(self.batchSize)

    def getErrorCol(self) -> str:
        return self.getOrDefault(self.errorCol)

    def getPrecision(self) -> str:
        return self.getOrDefault(self.precision)

    def getPrecisionCol(self) -> str:
        return self.getOrDefault(self.precisionCol)

    def getEngine(self) -> str:
        return self.getOrDefault(self.engine)

    def getEngineCol(self) -> str:
        return self.getOrDefault(self.engineCol)

    # ---- driver side
    def resolve(self, spark: Any = None) -> Any:
        """Resolve model and weights once per session (ships files to executors); the
        spec carries this stage's precision and engine."""
        from .weights import _session_id, resolve_spec
        if not hasattr(self, "_resolved_cache"):  # instances made by MLlib's loader
            self._resolved_cache = {}
        key = (self.getModelName(), self.getWeights(), self.getLayer(),
               self.getOrDefault(self.preprocess), self.getOrDefault(self.unsafe),
               _session_id(spark) if spark is not None else None)
        if key not in self._resolved_cache:
            self._resolved_cache[key] = resolve_spec(
                self.getModelName(), self.getWeights(), self.getLayer() or None,
                self.getOrDefault(self.preprocess) or None,
                unsafe=self.getOrDefault(self.unsafe), spark=spark)
        return engines.with_engine(precisions.with_precision(self._resolved_cache[key],
                                                             self.getPrecision()),
                                   self.getEngine())

    def _transform(self, dataset: Any) -> Any:
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as F
        from pyspark.sql.types import BinaryType, StructType

        from .session import task_cores
        spark = dataset.sparkSession
        resolved = self.resolve(spark)
        in_col = self.getInputCol()
        if in_col not in dataset.columns:
            raise DataError(f"the images have no column {in_col!r} (columns: "
                            f"{', '.join(dataset.columns)})")
        dtype = dataset.schema[in_col].dataType
        if not isinstance(dtype, (BinaryType, StructType)):  # the runner reads either
            raise DataError(f"column {in_col!r} is {dtype.simpleString()}; expected image "
                            "bytes (binaryFile 'content') or an image struct ('image')")
        udf = features_udf(resolved.spec, self.getBatchSize(), task_cores(spark))
        tmp = F.col(_TMP_COL)
        out = dataset.withColumn(_TMP_COL, udf(F.col(in_col)))
        out = out.withColumn(self.getOutputCol(), F.when(
            tmp["features"].isNotNull(), array_to_vector(tmp["features"])))
        if self.getErrorCol():
            out = out.withColumn(self.getErrorCol(), tmp["error"])
        if self.getPrecisionCol():
            out = out.withColumn(self.getPrecisionCol(), tmp[PRECISION_FIELD])
        if self.getEngineCol():
            out = out.withColumn(self.getEngineCol(), tmp[ENGINE_FIELD])
        return out.drop(_TMP_COL)


def build_featurizer(model: str = defaults.MODEL, weights: Optional[str] = defaults.WEIGHTS,
                     layer: Optional[str] = None, batch_size: int = defaults.BATCH_SIZE,
                     preprocess: Optional[str] = None, unsafe: bool = False,
                     input_col: str = CONTENT_COL, error_col: str = "",
                     precision: str = defaults.PRECISION,
                     engine: str = defaults.ENGINE) -> DeepImageFeaturizer:
    """The :class:`DeepImageFeaturizer` for the API's arguments (``featurize``,
    ``featurize_stream``): ``weights=None`` means untrained, ``None`` layer/preprocess
    mean the model's own."""
    extra = {"errorCol": error_col} if error_col else {}
    return DeepImageFeaturizer(inputCol=input_col, modelName=str(model),
                               weights="none" if weights is None else str(weights),
                               layer=layer or "", preprocess=preprocess or "",
                               batchSize=batch_size, unsafe=bool(unsafe), precision=precision,
                               engine=engine, **extra)


def features_udf(spec: Any, batch_size: int, threads: int = 1) -> Any:
    """The pandas UDF: image column (bytes or image structs) -> struct<features
    array<float>, error string, precision string, engine string>.

    Reusable for any :class:`~sparkdl_magics.inference.ModelSpec` (``include_top`` gives
    class scores instead of features). Only *spec* (a few hundred bytes) travels.
    """
    return BatchRunner(spec, batch_size, _features_frame, threads=threads,
                       report_precision=True, report_engine=True).udf(UDF_RETURN)


def _features_frame(items: Any, features: List[Any], errors: List[Optional[str]]) -> pd.DataFrame:
    return pd.DataFrame({"features": features, "error": errors})


# --------------------------------------------------------------------------- featurize

def featurize(images: Any, model: str = defaults.MODEL, weights: Optional[str] = defaults.WEIGHTS,
              layer: Optional[str] = None, batch_size: int = defaults.BATCH_SIZE,
              cache: Optional[str] = "memory", preprocess: Optional[str] = None,
              input_col: Optional[str] = None, unsafe: bool = False,
              augment: Any = None, seed: int = defaults.SEED, partitions: Any = "auto",
              precision: str = defaults.PRECISION, engine: str = defaults.ENGINE,
              spark: Any = None) -> FeatureSet:
    """Features for every split of *images* (an ImageSet, or a DataFrame of images).

    ``cache``: ``memory`` (persist MEMORY_AND_DISK, the default), ``none`` (recompute
    when used), or a folder path (each split written as Parquet and read back). Images
    that fail to decode are dropped from the splits and listed in ``FeatureSet.invalid``.
    Only counts and the (small) invalid list come back to the driver. ``augment``: add
    seeded flipped/rotated copies of the train images (see :mod:`sparkdl_magics.augment`).
    ``partitions``: ``auto`` spreads each split evenly over the task slots (a shuffle
    of the paths, or of the compressed bytes where Spark read them, for a few waves of
    tasks; a merge for many; see
    :mod:`sparkdl_magics.partitioning`), ``0`` keeps the input's partitions, a number
    sets them. ``precision``: ``float32``, ``bfloat16``, ``float16`` or ``auto`` (see
    :mod:`sparkdl_magics.precision`); ``stats['precision']`` says what ran. ``engine``:
    ``keras`` (the default), ``openvino`` or ``auto`` (see :mod:`sparkdl_magics.engines`);
    ``stats['engine']`` says which engine the tasks ran.
    """
    from .partitioning import check_partitions
    from .session import ensure_usable
    started = time.perf_counter()  # the whole call: what the cell's progress bar times too
    partitions = check_partitions(partitions)
    precision = precisions.check(precision)
    engine = engines.check_request(engine, precision)
    splits, classes = _splits_of(images)
    spark = spark or splits["train"].sparkSession
    ensure_usable(spark)
    col = input_col or (images.image_col if isinstance(images, ImageSet) else None) \
        or image_column(splits["train"])
    featurizer, resolved = _resolved_featurizer(
        spark, build_featurizer(model, weights, layer, batch_size, preprocess, unsafe, col,
                                precision=precision, engine=engine))
    cache_mode, cache_path = _cache_choice(cache)
    sizes, mean_bytes = _split_sizes(images, splits)
    job = _SplitJob(spark, featurizer.copy()._set(errorCol=ERROR_COL,  # shares the spec
                                                  precisionCol=PRECISION_COL,
                                                  engineCol=ENGINE_COL),
                    col, resolved.spec, augment, seed, partitions, sizes, mean_bytes,
                    cache_mode, cache_path, resolved.model_name,
                    images.content_of if isinstance(images, ImageSet) else None)
    _declare_images(job, splits)
    model_seconds = time.perf_counter() - started
    out, counts, n_bad, invalid_frames, ran, ran_engines = _featurize_splits(job, splits)
    seconds = time.perf_counter() - started
    invalid = _merge_load_invalid(images, _invalid_table(invalid_frames))
    stats = _stats(counts, n_bad, len(invalid), resolved, seconds, job)
    stats["model_seconds"] = round(model_seconds, 2)
    stats["precision"] = precisions.report(resolved.model_name, precision, ran)
    stats["engine"] = engines.describe(engine, ran_engines)
    return FeatureSet(train=out["train"], test=out.get("test"), classes=classes,
                      featurizer=featurizer, images=images if isinstance(images, ImageSet) else None,
                      model_name=resolved.model_name, weights=resolved.weights,
                      validation=out.get("validation"), invalid=invalid, stats=stats,
                      untrained=resolved.untrained)


def _resolved_featurizer(spark: Any, featurizer: DeepImageFeaturizer
                         ) -> Tuple[DeepImageFeaturizer, Any]:
    """Resolve the model once (ships the weights); ``auto`` weights are pinned to what
    was used, so a saved pipeline loads the same weights."""
    resolved = featurizer.resolve(spark)
    if featurizer.getWeights().strip().lower() == "auto":
        featurizer.setParams(weights=resolved.weights)
    return featurizer, resolved


@dataclass
class _SplitJob:
    """What featurizing one split needs; the same for every split of one call."""

    spark: Any
    featurizer: DeepImageFeaturizer  # with errorCol set
    col: str
    spec: Any
    augment: Any
    seed: int
    partitions: Any
    sizes: Dict[str, int]
    mean_bytes: Optional[float]
    cache_mode: str
    cache_path: Optional[str]
    model_name: str = ""
    #: the image set's :attr:`~sparkdl_magics.results.ImageSet.content_of`, if any
    content_of: Any = None

    def images(self, name: str) -> int:
        """Images the model runs on for split *name* (augmented copies included)."""
        n = self.sizes.get(name, 0)
        return n * (1 + self.copies()) if name == "train" else n

    def copies(self) -> int:
        if not self.augment:
            return 0
        from .augment import parse_augment
        aug = parse_augment(self.augment)
        return aug.copies if aug is not None else 0

    def reads_in_task(self, df: Any) -> bool:
        """Whether the model's tasks read the files (the image set can; only the paths
        are shuffled)."""
        return (self.content_of is not None and self.col == CONTENT_COL
                and CONTENT_COL in df.columns)

    def plan(self, name: str, df: Any) -> Tuple[str, Optional[int]]:
        from .partitioning import partition_plan
        return partition_plan(df, self.sizes.get(name), self.mean_bytes, self.partitions,
                              self.spark, reads_in_task=self.reads_in_task(df))

    def features(self, name: str, df: Any, plan: Tuple[str, Optional[int]]) -> Any:
        """One split's features (+ ``featurize_error``), cached as asked; lazy (a
        Parquet cache runs the model here)."""
        how, count = plan
        if how == "repartition" and self.reads_in_task(df):
            # shuffle the paths, read the bytes in the model's tasks (Python reads them),
            # a partition at a time as before (its chunks overlap decoding and the model)
            from .partitioning import IMAGES_PER_PARTITION
            df = self.content_of(df.drop(CONTENT_COL).repartition(count),
                                 max(IMAGES_PER_PARTITION, self.featurizer.getBatchSize()))
        elif how == "repartition":
            df = df.repartition(count)
        elif how == "coalesce":
            df = df.coalesce(count)
        feats = self.featurizer.transform(df).drop(
            *[c for c in (CONTENT_COL, IMAGE_COL, self.col) if c in df.columns])
        if self.augment and name == "train":  # seeded transformed copies, same bytes
            from .augment import augmented_rows
            from .session import task_cores
            extra = augmented_rows(df, self.col, self.spec, self.augment, self.seed,
                                   self.featurizer.getBatchSize(), task_cores(self.spark))
            feats = feats.unionByName(extra, allowMissingColumns=True)
        return _cached(feats, self.cache_mode, self.cache_path, name)


def _featurize_splits(job: _SplitJob, splits: Dict[str, Any]
                      ) -> Tuple[Dict[str, Any], Dict[str, int], int, List[Any], Tuple[str, ...],
                                 Tuple[str, ...]]:
    """Per split: features of the valid images, their count; in all: the invalid count,
    the invalid rows (pandas, one frame per split that has any), the number types the
    tasks' models ran in and the engines that ran them."""
    out: Dict[str, Any] = {}
    counts: Dict[str, int] = {}
    invalid_frames = []
    ran: set = set()
    ran_engines: set = set()
    n_bad = 0
    from .progress import work
    for name, df in splits.items():
        if df is None:
            continue
        plan = job.plan(name, df)
        n = job.images(name)
        # the split's Spark jobs say what they do (Spark UI, progress detail), and the
        # bar counts its images at the model's stage: the one after the scan when the
        # images were shuffled into even partitions, with one task per partition
        with work(job.spark, f"featurize: {job.model_name} on {n:,} {name} images", items=n,
                  tasks=plan[1] if not job.copies() else None,
                  shuffled=plan[0] == "repartition"):
            feats = job.features(name, df, plan)
            total, bad, bad_rows, types, used = _count_invalid(feats)
        counts[name] = total - bad
        ran.update(types)
        ran_engines.update(used)
        n_bad += bad
        if bad:
            invalid_frames.append(bad_rows.assign(split=name))
        out[name] = feats.filter(feats[FEATURES_COL].isNotNull()).drop(ERROR_COL, PRECISION_COL,
                                                                        ENGINE_COL)
    return out, counts, n_bad, invalid_frames, tuple(sorted(ran)), tuple(sorted(ran_engines))


def _invalid_table(frames: List[Any]) -> Any:
    import pandas as pd
    if not frames:
        return pd.DataFrame({PATH_COL: [], "reason": [], "split": []})
    return pd.concat(frames, ignore_index=True)


def _stats(counts: Dict[str, int], n_bad: int, n_invalid: int, resolved: Any,
           seconds: float, job: _SplitJob) -> Dict[str, Any]:
    n_images = sum(counts.values()) + n_bad
    measured = seconds > 0 and job.cache_mode != "none"  # "none": nothing ran yet
    return {
        "images": int(sum(counts.values())),
        "invalid": int(n_invalid),
        "per_split": counts,
        "feature_dim": resolved.feature_dim,
        "seconds": round(seconds, 2),
        "images_per_s": round(n_images / seconds, 2) if measured else None,
        "batch_size": int(job.featurizer.getBatchSize()),
        "cache": job.cache_path or job.cache_mode,
        "untrained": resolved.untrained,
    }


def _split_sizes(images: Any, splits: Dict[str, Any]) -> Tuple[Dict[str, int], Optional[float]]:
    """Images per split (counted here, one small job each, where the image set does not
    know them: the progress bar's total is fixed before the model runs) and the mean
    file size when known."""
    from .partitioning import size_of
    sizes, mean_bytes = _known_size(images)
    for name, df in splits.items():
        if df is not None and name not in sizes and not df.isStreaming:
            sizes[name], counted = size_of(df)
            mean_bytes = mean_bytes or counted
    return sizes, mean_bytes


def _declare_images(job: "_SplitJob", splits: Dict[str, Any]) -> None:
    """Tell the cell's progress bar (if any) how many images the model will run on."""
    from .progress import current_scope
    scope = current_scope()
    if scope is not None:
        scope.set_items(sum(job.images(n) for n, df in splits.items() if df is not None),
                        unit="images", counted=True)


def _known_size(images: Any) -> Tuple[Dict[str, int], Optional[float]]:
    """Images per split and mean file size, when the image set knows them (a loaded
    one does; a DataFrame, or a set built by hand without counts, is counted here)."""
    if not isinstance(images, ImageSet):
        return {}, None
    return images.split_sizes(), images.stats.get("mean_bytes")


def _splits_of(images: Any) -> Tuple[Dict[str, Any], List[str]]:
    if isinstance(images, ImageSet):
        splits = {"train": images.train, "test": images.test,
                  "validation": images.validation}
        if splits["train"] is None:
            raise DataError("the image set has no train split")
        return splits, list(images.classes or [])
    if is_dataframe(images):
        classes: List[str] = []
        if LABEL_NAME_COL in images.columns and LABEL_COL in images.columns:
            rows = images.select(LABEL_COL, LABEL_NAME_COL).distinct().collect()
            classes = [r[1] for r in sorted(rows, key=lambda r: r[0])]
        return {"train": images}, classes
    raise DataError(f"cannot featurize a {type(images).__name__}: expected an image set "
                    "from %%dlload / load_images, or a DataFrame of images")


def _cache_choice(cache: Optional[str]) -> Tuple[str, Optional[str]]:
    text = "none" if cache is None or cache is False else str(cache).strip()
    if text.lower() in ("memory", "true", "memory_and_disk"):
        return "memory", None
    if text.lower() in ("none", "false", "no"):
        return "none", None
    if "/" in text or "\\" in text or "." in text or ":" in text:
        return "parquet", text
    raise OptionError(f"option 'cache': got {text!r} (valid: memory, none, or a folder path "
                      "for Parquet)")


def _cached(feats: Any, mode: str, path: Optional[str], split: str) -> Any:
    if mode == "memory":
        from pyspark import StorageLevel
        return feats.persist(StorageLevel.MEMORY_AND_DISK)
    if mode == "parquet":
        target = f"{path.rstrip('/')}/{split}"
        feats.write.mode("overwrite").parquet(target)
        return feats.sparkSession.read.parquet(target)
    return feats


def _count_invalid(feats: Any) -> Tuple[int, int, Any, List[str], List[str]]:
    """(rows, invalid rows, invalid [path, reason] as pandas, the number types the
    tasks' models ran in, the engines that ran them) — one job, then a small one."""
    from pyspark.sql import functions as F
    row = feats.agg(F.count(F.lit(1)).alias("n"),
                    F.sum(F.when(F.col(FEATURES_COL).isNull(), 1).otherwise(0)).alias("bad"),
                    F.collect_set(PRECISION_COL).alias("ran"),
                    F.collect_set(ENGINE_COL).alias("engines")).collect()[0]
    total, bad = int(row["n"] or 0), int(row["bad"] or 0)
    rows = None
    if bad:
        path = F.col(PATH_COL) if PATH_COL in feats.columns else F.lit(None).cast("string")
        rows = (feats.filter(F.col(FEATURES_COL).isNull())
                .select(path.alias(PATH_COL), F.col(ERROR_COL).alias("reason"))
                .limit(10_000).toPandas())
    return total, bad, rows, list(row["ran"] or []), list(row["engines"] or [])


def _merge_load_invalid(images: Any, invalid: Any) -> Any:
    """Files the loader already found invalid are listed too."""
    import pandas as pd
    earlier = images.invalid if isinstance(images, ImageSet) else None
    if earlier is None or earlier.empty:
        return invalid.reset_index(drop=True)
    earlier = earlier.assign(split="load") if "split" not in earlier.columns else earlier
    return pd.concat([earlier, invalid], ignore_index=True)


__all__ = ["DeepImageFeaturizer", "featurize", "features_udf", "FeatureSet", "ERROR_COL"]
