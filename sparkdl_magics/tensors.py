"""Apply any Keras model to a column of arrays (tensor inputs), batched on Spark.

``apply_keras_model(df, model, input_col="x", input_shape=(28, 28, 1))`` runs a Keras
model (a ``.keras`` / ``.h5`` file, a SavedModel folder, or a ``keras.Model`` object,
saved and shipped for you) over ``array<float>`` / ``array<double>`` / nested-array
columns: each Arrow batch becomes one ``(n, *input_shape)`` float32 array, fed to the
model ``batch_size`` rows at a time; the output (flattened per row) lands in
``output_col`` as ``array<float>``. The model file is shipped once with the featurize
core (:func:`sparkdl_magics.weights.ship`, Spark Connect too) and built once per Python
worker (:func:`sparkdl_magics.inference.get_model`). Null inputs give null outputs.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Iterator, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .errors import DataError, OptionError

DEFAULT_BATCH_SIZE = 256


def apply_keras_model(df: Any, model: Any, input_col: str, output_col: str = "prediction",
                      input_shape: Optional[Sequence[int]] = None,
                      batch_size: int = DEFAULT_BATCH_SIZE, unsafe: bool = False,
                      spark: Any = None) -> Any:
    """*df* with ``output_col`` = the model's output for each row of ``input_col``.

    ``input_shape``: the shape of one example (without the batch axis) the flat or
    nested array is reshaped to; default: the model's own input shape.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, NumericType

    from .inference import ModelSpec
    from .session import task_cores
    from .weights import ship
    if input_col not in df.columns:
        raise DataError(f"option 'input_col': no column {input_col!r} (columns: "
                        f"{', '.join(df.columns)})")
    dtype = df.schema[input_col].dataType
    inner = dtype
    while isinstance(inner, ArrayType):
        inner = inner.elementType
    if not isinstance(dtype, ArrayType) or not isinstance(inner, NumericType):
        raise DataError(f"option 'input_col': column {input_col!r} is {dtype.simpleString()}; "
                        "expected an array of numbers (e.g. array<float>)")
    shape = _check_shape(input_shape)
    if int(batch_size) < 1:
        raise OptionError(f"option 'batch_size': must be at least 1 (got {batch_size})")
    spark = spark or df.sparkSession
    path = _model_path(model)
    spec = ModelSpec(model="", model_file=ship(spark, path), preprocess="none",
                     safe_mode=not unsafe)
    udf = tensor_udf(spec, shape, int(batch_size), task_cores(spark))
    return df.withColumn(output_col, udf(F.col(input_col)))


def _check_shape(shape: Optional[Sequence[int]]) -> Optional[Tuple[int, ...]]:
    if shape is None:
        return None
    try:
        dims = tuple(int(d) for d in (shape if isinstance(shape, (list, tuple)) else [shape]))
    except (TypeError, ValueError):
        raise OptionError(f"option 'input_shape': expected a list of sizes (got {shape!r})") \
            from None
    if not dims or any(d < 1 for d in dims):
        raise OptionError(f"option 'input_shape': sizes must be positive (got {shape!r})")
    return dims


def _model_path(model: Any) -> str:
    """A file (or SavedModel folder) for *model*; a ``keras.Model`` is saved first."""
    if isinstance(model, (str, os.PathLike)):
        path = os.path.abspath(os.path.expanduser(str(model)))
        if not os.path.exists(path):
            raise OptionError(f"option 'model': no model file at {str(model)!r}")
        return path
    if hasattr(model, "save") and hasattr(model, "inputs"):
        folder = tempfile.mkdtemp(prefix="sparkdl_magics-model-")
        path = os.path.join(folder, f"{getattr(model, 'name', 'model') or 'model'}.keras")
        model.save(path)
        return path
    raise OptionError(f"option 'model': expected a .keras/.h5 path, a SavedModel folder or a "
                      f"keras.Model (got {type(model).__name__})")


def to_batch(values: Sequence[Any], shape: Optional[Tuple[int, ...]]) -> np.ndarray:
    """Array cells (flat or nested numpy/lists) -> one (n, *shape) float32 array."""
    rows = [_dense(v) for v in values]
    if shape is None:
        return np.stack(rows)
    size = int(np.prod(shape))
    for row in rows:
        if row.size != size:
            raise ValueError(f"a row has {row.size} values; input_shape {shape} needs {size}")
    return np.stack([row.reshape(shape) for row in rows])


def _dense(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object:  # nested arrays arrive as arrays of arrays
        array = np.stack([_dense(v) for v in array])
    return array.astype(np.float32, copy=False)


def tensor_udf(spec: Any, shape: Optional[Tuple[int, ...]], batch_size: int,
               threads: int = 1) -> Any:
    """The pandas UDF: array column -> ``array<float>`` model output per row."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("array<float>")
    def apply(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        from . import inference
        loaded = inference.get_model(spec, threads)
        want = shape or tuple(int(d) for d in loaded.model.inputs[0].shape[1:])
        for series in batches:
            out: list = [None] * len(series)
            rows = [i for i, v in enumerate(series) if v is not None]
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                x = to_batch([series.iloc[i] for i in chunk], want)
                y = loaded.run(x)
                for j, i in enumerate(chunk):
                    out[i] = y[j].reshape(-1)
            yield pd.Series(out)
    return apply


__all__ = ["apply_keras_model", "tensor_udf", "to_batch"]
