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

import functools
import os
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from . import defaults
from .errors import DataError, OptionError
from .inference import BatchRunner, ModelSpec, check_batch_size
from .scratch import scratch_dir
from .session import task_cores
from .weights import ship


def apply_keras_model(df: Any, model: Any, input_col: str, output_col: str = "prediction",
                      input_shape: Optional[Sequence[int]] = None,
                      batch_size: int = defaults.TENSOR_BATCH_SIZE, unsafe: bool = False,
                      spark: Any = None) -> Any:
    """*df* with ``output_col`` = the model's output for each row of ``input_col``.

    ``input_shape``: the shape of one example (without the batch axis) the flat or
    nested array is reshaped to; default: the model's own input shape.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, NumericType

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
    batch_size = check_batch_size(batch_size)
    spark = spark or df.sparkSession
    path = _model_path(model)
    spec = ModelSpec(model="", model_file=ship(spark, path), preprocess="none",
                     safe_mode=not unsafe)
    udf = tensor_udf(spec, shape, batch_size, task_cores(spark))
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
        folder = scratch_dir("model-")
        path = os.path.join(folder, f"{getattr(model, 'name', 'model') or 'model'}.keras")
        model.save(path)
        return path
    raise OptionError(f"option 'model': expected a .keras/.h5 path, a SavedModel folder or a "
                      f"keras.Model (got {type(model).__name__})")


def to_batch(values: Sequence[Any], shape: Optional[Tuple[int, ...]]) -> np.ndarray:
    """Array cells (flat or nested numpy/lists) -> one (n, *shape) float32 array."""
    return np.stack([_shaped(v, shape) for v in values])


def _shaped(value: Any, shape: Optional[Tuple[int, ...]]) -> np.ndarray:
    """One array cell as a float32 array of *shape* (None: as it is)."""
    row = _dense(value)
    if shape is None:
        return row
    size = int(np.prod(shape))
    if row.size != size:
        raise ValueError(f"a row has {row.size} values; input_shape {shape} needs {size}")
    return row.reshape(shape)


def _dense(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object:  # nested arrays arrive as arrays of arrays
        array = np.stack([_dense(v) for v in array])
    return array.astype(np.float32, copy=False)


def tensor_udf(spec: Any, shape: Optional[Tuple[int, ...]], batch_size: int,
               threads: int = 1) -> Any:
    """The pandas UDF: array column -> ``array<float>`` model output per row."""
    adapter = functools.partial(_tensor_items, shape=shape)
    return BatchRunner(spec, batch_size, _flat_outputs, adapter, threads,
                       raw=True).udf("array<float>")


def _tensor_items(series: pd.Series, loaded: Any, shape: Optional[Tuple[int, ...]]
                  ) -> Tuple[List[Optional[np.ndarray]], Any]:
    """The batch runner's adapter: each row as one model input, None for a null row.
    Shaped here, not in the decode thread: a row of the wrong size fails the task (a
    wrong ``input_shape`` is no fault of one row)."""
    want = shape or tuple(int(d) for d in loaded.model.inputs[0].shape[1:])
    return [None if v is None else _shaped(v, want) for v in series], _as_is


def _as_is(item: Optional[np.ndarray], size: Any) -> Optional[np.ndarray]:
    return item  # None: no input, so a null output and no error


def _flat_outputs(items: Any, outputs: List[Optional[np.ndarray]], errors: Any) -> pd.Series:
    return pd.Series([None if y is None else y.reshape(-1) for y in outputs])


__all__ = ["apply_keras_model", "tensor_udf", "to_batch"]
