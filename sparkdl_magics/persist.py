"""Saving and loading fitted models, on whatever storage the Spark cluster writes to.

A saved model is a folder Spark writes: the ``PipelineModel`` (``[featurizer] →
classifier → IndexToString``, loadable with ``PipelineModel.load`` alone) and, beside
it in ``sparkdl_magics/``, one JSON line with how the model was chosen (grid, params,
notes) and which sparkdl_magics version saved it. Both go through Spark's own writers,
so a path on the cluster's storage (``s3a://``, ``dbfs:/``, a Connect server's disk)
works the same as a local folder, on classic and Connect sessions.
"""
from __future__ import annotations

import json
from typing import Any, Dict

from . import __version__
from .errors import spark_error_condition
from .results import FineTunedModel, FittedModel, MultiLabelModel
from .session import get_spark

#: The sub-folder of a saved model that holds its metadata (a Spark text dataset).
META_DIR = "sparkdl_magics"


def save_model(model: Any, path: str, overwrite: bool = True) -> str:
    """Write *model* at *path*: its PipelineModel and its metadata, both through Spark
    (in a bucket this Spark cannot write: written locally, then copied by Python)."""
    from .storage import copy_folder, needs_python, staged_folder
    spark = get_spark()
    if needs_python(spark, path):
        with staged_folder(spark, path, "save to") as local:
            _save(model, local, overwrite)
            copy_folder(local, str(path).rstrip("/"))
        return path
    return _save(model, path, overwrite)


def _save(model: Any, path: str, overwrite: bool) -> str:
    writer = model.pipeline_model.write()
    if overwrite:
        writer = writer.overwrite()
    writer.save(path)
    meta = {**_meta(model), "sparkdl_magics_version": __version__}
    if isinstance(model, FineTunedModel):  # its Keras file goes into the folder too
        from .finetuning.saved import write_model_file
        write_model_file(get_spark(), model.model_file, path)
    (get_spark().createDataFrame([(json.dumps(meta, default=str),)], "meta string")
     .coalesce(1).write.mode("overwrite").text(_meta_path(path)))
    return path


def load_model(path: str, spark: Any = None) -> Any:
    """Load a model saved with :func:`save_model` (any session; the magics not needed):
    a FittedModel, or a MultiLabelModel when one was saved there."""
    from .storage import copy_folder, needs_python, staged_folder
    spark = spark or get_spark()
    if needs_python(spark, path):
        with staged_folder(spark, path, "load from", keep=True) as local:
            copy_folder(str(path).rstrip("/"), local)
            return _load(local, spark)
    return _load(path, spark)


def _load(path: str, spark: Any) -> Any:
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import IndexToString
    pipeline_model = PipelineModel.load(path)
    last = pipeline_model.stages[-1]
    classes = list(last.getLabels()) if isinstance(last, IndexToString) else []
    meta = _read_meta(spark, path)
    meta.pop("sparkdl_magics_version", None)
    kind = meta.pop("kind", None)
    if kind == "multi_label":
        return MultiLabelModel(pipeline_model=pipeline_model, **meta)
    if kind == "finetuned":
        return _load_finetuned(spark, path, pipeline_model, classes, meta)
    grid = meta.pop("grid", None)
    if grid is not None:
        import pandas as pd
        grid = pd.DataFrame(grid)
    kind = type(pipeline_model.stages[-2]).__name__
    return FittedModel(pipeline_model=pipeline_model, classes=classes,
                       classifier=meta.pop("classifier", kind), grid=grid, **meta)


def saved_version(path: str, spark: Any) -> Any:
    """The sparkdl_magics version that saved the model at *path* (None if unknown)."""
    return _read_meta(spark, path).get("sparkdl_magics_version")


def _load_finetuned(spark: Any, path: str, pipeline_model: Any, classes: Any,
                    meta: Dict[str, Any]) -> FineTunedModel:
    """A FineTunedModel whose model stage reads the Keras file saved in *path*."""
    import pandas as pd

    from .finetuning.saved import read_model_file
    local = read_model_file(spark, path)
    pipeline_model.stages[0].setParams(modelName=local)
    meta["history"] = pd.DataFrame(meta.get("history") or {})
    meta["input_size"] = tuple(meta.get("input_size") or (224, 224))
    meta["head"] = tuple(meta.get("head") or ())
    return FineTunedModel(pipeline_model=pipeline_model, classes=classes, model_file=local,
                          **meta)


def _meta(model: Any) -> Dict[str, Any]:
    if isinstance(model, FineTunedModel):
        return {"kind": "finetuned", "classifier": model.classifier, "metric": model.metric,
                "params": model.params, "notes": model.notes,
                "objective_history": model.objective_history,
                "num_features": model.num_features, "model_name": model.model_name,
                "train_count": model.train_count, "untrained": model.untrained,
                "preprocess": model.preprocess, "input_size": list(model.input_size),
                "history": None if model.history is None else
                model.history.to_dict(orient="list"),
                "workers": model.workers, "unfreeze": model.unfreeze,
                "unfrozen_layers": model.unfrozen_layers, "head": list(model.head),
                "stopped_early": model.stopped_early, "seconds": model.seconds,
                "best_epoch": model.best_epoch, "checksum": model.checksum}
    if isinstance(model, MultiLabelModel):
        return {"kind": "multi_label", "classes": model.classes, "threshold": model.threshold,
                "classifier": model.classifier, "params": model.params, "notes": model.notes,
                "num_features": model.num_features, "positives": model.positives,
                "model_name": model.model_name, "train_count": model.train_count,
                "untrained": model.untrained}
    return {
        "classifier": model.classifier, "metric": model.metric, "params": model.params,
        "tuning": model.tuning, "notes": model.notes,
        "objective_history": model.objective_history,
        "grid": None if model.grid is None else model.grid.to_dict(orient="list"),
        "num_features": model.num_features, "has_probabilities": model.has_probabilities,
        "model_name": model.model_name, "train_count": model.train_count,
        "untrained": model.untrained,
    }


def _meta_path(path: str) -> str:
    return f"{str(path).rstrip('/')}/{META_DIR}"


def _read_meta(spark: Any, path: str) -> Dict[str, Any]:
    """The metadata line; a model saved by plain ``PipelineModel.save`` has none."""
    try:
        row = spark.read.text(_meta_path(path)).first()
    except Exception as exc:  # only a missing metadata folder means "no metadata"
        if spark_error_condition(exc) == "PATH_NOT_FOUND":
            return {}
        raise
    return json.loads(row[0]) if row is not None else {}


__all__ = ["save_model", "load_model", "saved_version"]
