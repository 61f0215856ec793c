"""Images as a stream: a ``binaryFile`` file-source stream, featurized or predicted.

The featurizer and :func:`~sparkdl_magics.prediction.predict` only add columns (a
batched pandas UDF), so they run on a streaming DataFrame as they do on a static one.
This module adds the two stream ends:

- :func:`read_image_stream` — ``spark.readStream.format("binaryFile")`` with its schema
  (a file-source stream needs one up front), ``path`` / ``content`` columns and an
  optional ``label_name`` from the parent folder;
- :func:`featurize_stream` — the :class:`~sparkdl_magics.featurizer.DeepImageFeaturizer`
  output (features as MLlib vectors, image bytes dropped);
- :func:`run_available_now` — write to a Parquet folder or an in-memory table with an
  ``availableNow`` trigger (every file present now, then stop) and wait for it.

Nothing is lost without a word: the stream leaves out system files (``Thumbs.db``,
``desktop.ini``; Spark's file stream already hides ``._x``, ``.DS_Store`` and hidden
folders), and :func:`unstreamed_files` lists, with a reason, every file under the
folder that the stream does not deliver — including images whose names start with ``_``,
which Spark's file stream cannot see (:func:`~sparkdl_magics.loading.load_images` loads them).

All of it works over Spark Connect.
"""
from __future__ import annotations

from typing import Any, Optional

from .errors import DataError, OptionError, unknown_choice
from .featurizer import ERROR_COL, build_featurizer
from . import defaults
from .frames import image_column
from .results import CONTENT_COL, IMAGE_COL, LABEL_NAME_COL, PATH_COL
from .session import get_spark

BINARY_FILE_SCHEMA = "path string, modificationTime timestamp, length bigint, content binary"
SINKS = ("parquet", "memory")


def read_image_stream(path: str, glob: Optional[str] = None, recursive: bool = True,
                      labels_from_folders: bool = False,
                      max_files_per_trigger: Optional[int] = None, spark: Any = None,
                      skip_system_files: bool = True) -> Any:
    """A streaming DataFrame of image files under *path*: ``path``, ``content``
    (compressed bytes) and, with ``labels_from_folders``, ``label_name``. System files
    are left out (``skip_system_files``); :func:`unstreamed_files` lists what is."""
    from pyspark.sql import functions as F
    from .loading.inventory import is_system_name

    spark = spark or get_spark()
    from .storage import needs_python
    if needs_python(spark, str(path)):
        raise DataError(f"option 'path': cannot stream from {path}: Spark's file stream needs "
                        "a Hadoop file system for the scheme (add the connector, e.g. "
                        "hadoop-aws for s3a://); load_images reads it without one")
    reader = spark.readStream.format("binaryFile").schema(BINARY_FILE_SCHEMA)
    if glob:
        reader = reader.option("pathGlobFilter", glob)
    if recursive:
        reader = reader.option("recursiveFileLookup", "true")
    if max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", int(max_files_per_trigger))
    df = reader.load(str(path)).select(PATH_COL, CONTENT_COL)
    if skip_system_files:
        df = df.filter(~is_system_name(F.col(PATH_COL)))
    if labels_from_folders:
        df = df.withColumn(LABEL_NAME_COL, F.element_at(F.split(PATH_COL, "/"), -2))
    return df


def unstreamed_files(path: str, glob: Optional[str] = None, recursive: bool = True,
                     spark: Any = None) -> Any:
    """The files under *path* that :func:`read_image_stream` (same *glob*, *recursive*)
    does not deliver, each with the reason (pandas: path, reason): system files, names
    Spark's file stream hides (``_x.jpg``), names the glob does not match. Found by the
    workers (one small job); empty with a ``hidden_unchecked`` attribute on storage they
    cannot walk (``s3a:`` ...)."""
    import pandas as pd
    from .loading.inventory import Unlisted, sort_for_streaming

    spark = spark or get_spark()
    unlisted = Unlisted.find(spark, [str(path)], glob, recursive)
    out = pd.DataFrame(sort_for_streaming(unlisted, glob), columns=[PATH_COL, "reason"])
    out.attrs["hidden_unchecked"] = not unlisted.walked
    return out


def featurize_stream(df: Any, model: str = defaults.MODEL,
                     weights: Optional[str] = defaults.WEIGHTS,
                     layer: Optional[str] = None, batch_size: int = defaults.BATCH_SIZE,
                     preprocess: Optional[str] = None, input_col: Optional[str] = None,
                     unsafe: bool = False, precision: str = defaults.PRECISION,
                     engine: str = defaults.ENGINE) -> Any:
    """Pooled features of a (streaming) image DataFrame; failed images keep null
    ``features`` and a reason in ``featurize_error``. Nothing runs until it is written.
    ``precision``: the number type the model runs in (see :mod:`sparkdl_magics.precision`);
    ``engine``: what runs it (see :mod:`sparkdl_magics.engines`)."""
    from . import engines
    from .precision import check
    engine = engines.check_request(engine, check(precision))
    col = input_col or image_column(df)
    featurizer = build_featurizer(model, weights, layer, batch_size, preprocess, unsafe,
                                  input_col=col, error_col=ERROR_COL, precision=precision,
                                  engine=engine)
    out = featurizer.transform(df)
    return out.drop(*[c for c in (CONTENT_COL, IMAGE_COL, col) if c in out.columns])


def run_available_now(df: Any, sink: str = "parquet", path: Optional[str] = None,
                      query_name: Optional[str] = None, checkpoint: Optional[str] = None,
                      timeout: Optional[float] = None) -> Any:
    """Process every file available now into *sink* and stop; returns the finished query.

    ``parquet``: needs *path* (and a *checkpoint* folder, default ``<path>/_checkpoint``).
    ``memory``: an in-memory table named *query_name* (``SELECT * FROM <name>``).
    """
    if not getattr(df, "isStreaming", False):
        raise OptionError("run_available_now needs a streaming DataFrame "
                          "(spark.readStream / read_image_stream)")
    sink = str(sink).lower()
    if sink not in SINKS:
        raise unknown_choice("sink", sink, SINKS)
    writer = df.writeStream.trigger(availableNow=True)
    if sink == "parquet":
        if not path:
            raise OptionError("option 'path': the parquet sink needs a folder to write to")
        writer = writer.format("parquet").option("path", str(path)).option(
            "checkpointLocation", checkpoint or f"{str(path).rstrip('/')}/_checkpoint")
    else:
        if not query_name or not str(query_name).isidentifier():
            raise OptionError("option 'query_name': the memory sink needs a table name")
        writer = writer.format("memory").queryName(str(query_name))
        if checkpoint:
            writer = writer.option("checkpointLocation", checkpoint)
    query = writer.start()
    finished = query.awaitTermination(timeout) if timeout else query.awaitTermination()
    if finished is False:
        query.stop()
        raise OptionError(f"option 'timeout': the stream did not finish in {timeout} s")
    error = query.exception()
    if error is not None:
        raise error
    return query


__all__ = ["read_image_stream", "unstreamed_files", "featurize_stream", "run_available_now",
           "BINARY_FILE_SCHEMA", "SINKS"]
