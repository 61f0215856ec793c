"""The fine-tuned Keras file inside a saved model folder, through Spark's own writers.

A saved FineTunedModel is a saved FittedModel (PipelineModel + metadata) plus its
``.keras`` file as one binary row of a Parquet dataset (``keras_model/``), so the folder
may live wherever Spark writes (``s3a://``, ``dbfs:/``, a Connect server's disk). Loading
writes the file back to a local file and points the pipeline's model stage at it.
"""
from __future__ import annotations

import os
import uuid
from typing import Any

from ..scratch import scratch_dir

#: The sub-folder of a saved fine-tuned model that holds its Keras file.
MODEL_FILE_DIR = "keras_model"


def _dir(path: str) -> str:
    return f"{str(path).rstrip('/')}/{MODEL_FILE_DIR}"


def write_model_file(spark: Any, model_file: str, path: str) -> None:
    with open(model_file, "rb") as f:
        data = f.read()
    (spark.createDataFrame([(os.path.basename(model_file), bytearray(data))],
                           "name string, data binary")
     .coalesce(1).write.mode("overwrite").parquet(_dir(path)))


def read_model_file(spark: Any, path: str) -> str:
    """The saved Keras file, written to a new local file; its path."""
    row = spark.read.parquet(_dir(path)).first()
    folder = scratch_dir("finetuned-")
    local = os.path.join(folder, f"{uuid.uuid4().hex[:8]}-{row['name']}")
    with open(local, "wb") as f:
        f.write(bytes(row["data"]))
    return local


__all__ = ["write_model_file", "read_model_file", "MODEL_FILE_DIR"]
