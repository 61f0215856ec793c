"""The exported network as an MLflow pyfunc model: image files in, probabilities out.

MLflow's Keras/TensorFlow flavour predicts on numeric tensors, not on image files in a
pandas frame, so :mod:`sparkdl_magics.tracking` logs the exported ``.keras`` network
with this file as its code (MLflow's models-from-code: the file is copied into the
model and run where it loads; nothing is pickled). Loaded with
``mlflow.pyfunc.load_model("runs:/<run id>/keras_model")`` it needs Keras, Pillow,
numpy and pandas, never Spark nor this package:

- input: a pandas frame with a column ``image`` of encoded image files (bytes: JPEG,
  PNG, ...; base64 strings over MLflow's REST serving). They are decoded with the
  rules the Spark path uses (RGB, Pillow's bilinear resize to the network's input
  size), from the copy of ``imaging.py`` logged next to this file;
- output: one float column per class, in class order, holding its probability (a
  linear SVC's score: see ``describe.output`` in the model's ``info`` artifact).

An image that cannot be decoded fails the call in one line naming its row.
``model.unwrap_python_model().network`` is the plain Keras model.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd
import mlflow
from mlflow.pyfunc import PythonModel

try:  # the copy logged with the model (where this package is not installed) ...
    from sparkdl_imaging import InvalidImage, decode_array
except ImportError:  # ... or this package's, where the model is being logged
    from sparkdl_magics.imaging import InvalidImage, decode_array

#: The input column: encoded image files.
IMAGE_COLUMN = "image"
#: Images decoded and predicted at once (bounds the decoded batch's memory).
BATCH = 64


class ExportedNetwork(PythonModel):
    """The exported Keras network behind the Spark path's image decoding."""

    def load_context(self, context: Any) -> None:
        import keras
        self.network = keras.saving.load_model(context.artifacts["network"])  # safe mode
        with open(context.artifacts["info"]) as source:
            info = json.load(source)
        self.classes: List[str] = [str(c) for c in info["classes"]]
        _, height, width, _ = info["input_shape"]
        self.size = (int(width), int(height))

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: Optional[Dict[str, Any]] = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame) or IMAGE_COLUMN not in model_input:
            got = list(model_input.columns) if isinstance(model_input, pd.DataFrame) \
                else type(model_input).__name__
            raise ValueError(f"input: a pandas frame with a column '{IMAGE_COLUMN}' of "
                             f"encoded image files (bytes), got {got}")
        files = model_input[IMAGE_COLUMN].tolist()
        rows = [self._predict(files[start:start + BATCH], start)
                for start in range(0, len(files), BATCH)]
        values = np.concatenate(rows) if rows else np.zeros((0, len(self.classes)))
        return pd.DataFrame(values.astype("float64"), columns=self.classes,
                            index=model_input.index)

    def _predict(self, files: List[Any], first: int) -> np.ndarray:
        batch = []
        for i, data in enumerate(files):
            try:
                batch.append(decode_array(_as_bytes(data), self.size))
            except InvalidImage as exc:
                raise ValueError(f"input row {first + i}: {exc}") from None
        images = np.stack(batch).astype("float32")
        return np.asarray(self.network.predict(images, verbose=0), dtype="float64")


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise InvalidImage(f"not encoded image bytes (a {type(data).__name__})")


mlflow.models.set_model(ExportedNetwork())
