"""The fine-tuned model as a Spark ML pipeline, so every FittedModel path accepts it.

``[DeepImageFeaturizer(model file, cut at the softmax) → ProbabilityArgmax →
IndexToString]``: the featurizer stage runs the saved ``.keras`` file through the one
batch runner (shipped to executors like any user model file), writing the class
probabilities as an MLlib vector in ``probability``; :class:`ProbabilityArgmax` adds the
class index ``prediction``; IndexToString the class name. Evaluation, prediction and
saving then treat it as they treat an MLlib classifier pipeline.
"""
from __future__ import annotations

from typing import Any, List

from pyspark import keyword_only
from pyspark.ml import PipelineModel, Transformer
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from ..results import CLASS_INDEX_COL, CONTENT_COL, PREDICTION_NAME_COL, PROBABILITIES_COL
from .network import OUTPUT_LAYER


class ProbabilityArgmax(Transformer, HasInputCol, HasOutputCol,
                        DefaultParamsReadable, DefaultParamsWritable):
    """The index (a double, as MLlib's classifiers give it) of the largest probability."""

    @keyword_only
    def __init__(self, *, inputCol: str = PROBABILITIES_COL, outputCol: str = CLASS_INDEX_COL):
        super().__init__()
        self._setDefault(inputCol=PROBABILITIES_COL, outputCol=CLASS_INDEX_COL)
        self._set(**self._input_kwargs)

    def _transform(self, dataset: Any) -> Any:
        from pyspark.ml.functions import vector_to_array
        from pyspark.sql import functions as F
        probs = vector_to_array(F.col(self.getInputCol()))
        index = F.array_position(probs, F.array_max(probs)) - 1
        return dataset.withColumn(self.getOutputCol(), F.when(
            F.col(self.getInputCol()).isNotNull(), index.cast("double")))


def pipeline(model_file: str, classes: List[str], preprocess: str, batch_size: int,
             input_col: str = CONTENT_COL) -> Any:
    """The PipelineModel that applies the fine-tuned model file to an image column."""
    from pyspark.ml.feature import IndexToString

    from ..featurizer import DeepImageFeaturizer
    featurizer = DeepImageFeaturizer(inputCol=input_col, outputCol=PROBABILITIES_COL,
                                     modelName=model_file, weights="none", layer=OUTPUT_LAYER,
                                     preprocess=preprocess, batchSize=batch_size)
    names = IndexToString(inputCol=CLASS_INDEX_COL, outputCol=PREDICTION_NAME_COL,
                          labels=list(classes))
    return PipelineModel(stages=[featurizer, ProbabilityArgmax(), names])


__all__ = ["ProbabilityArgmax", "pipeline"]
