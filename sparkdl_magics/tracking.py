"""MLflow tracking of fits, fine-tunes and evaluations, where the user tracks.

Stages call :func:`log_fit`, :func:`log_finetune` and :func:`log_evaluation` with their
result; each logs only when :func:`active` says so: ``track=True/False`` given to the
stage wins, then :data:`TRACK` (the ``%config``-style switch,
``sparkdl_magics.tracking.TRACK``), else tracking is on exactly when a tracking URI is
configured — ``MLFLOW_TRACKING_URI``, ``mlflow.set_tracking_uri`` (mlflow already
imported by the user), or a Databricks runtime — and ``mlflow`` is importable. Elsewhere
mlflow is never imported and nothing is written (no ``mlruns/`` or ``mlflow.db``).

A fit logs one run: the backbone, its weights and precision, the feature size, the
classifier and its params, the image set (source, classes, counts per split), a grid as
one nested run per point with its tuning score (the chosen one tagged), the pipeline as
an MLflow Spark model (classic sessions) and the exported Keras network as an MLflow
pyfunc model (``keras_model``: a pandas column of encoded image files in, class
probabilities out, loaded without Spark: :mod:`sparkdl_magics.pyfunc_model`) where the
classifier can be exported. A fine-tune logs its per-epoch history as metric steps and
its ``.keras`` file. An evaluation logs its metrics on the model's run (prefixed with the
data's name when it is not the model's own test split), the confusion matrix and the
mistakes as artifacts. Tracking never fails the user's work: a failure to log is one
warning line. The run id is kept on the result (``run_id``) and named in one line.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import warnings
from typing import Any, Dict, Optional

from .errors import EnvironmentProblem

#: The switch: None follows the tracking URI; True / False force it (a stage's
#: ``track=`` option still wins over it).
TRACK: Optional[bool] = None
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"


class TrackingWarning(UserWarning):
    """Logging to MLflow failed; the model itself is fine."""


def uri_configured() -> bool:
    """A tracking URI the user chose, found without importing mlflow when it is absent."""
    if os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return True
    if "mlflow" not in sys.modules:  # set_tracking_uri needs mlflow imported
        return False
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set
    return bool(is_tracking_uri_set())


def active(track: Optional[bool] = None) -> bool:
    """Whether this call logs (see the module docstring for the order)."""
    choice = track if track is not None else TRACK
    if choice is False:
        return False
    if choice is None and not uri_configured():
        return False
    try:
        import mlflow  # noqa: F401
    except ImportError:
        if choice:
            raise EnvironmentProblem("option 'track': MLflow is not installed "
                                     "(pip install 'sparkdl_magics[mlflow]')") from None
        return False
    return True


def run_line(run_id: str) -> str:
    """One line naming the run: experiment, run id, and a link when the server is http."""
    import mlflow
    run = mlflow.get_run(run_id)
    experiment = mlflow.get_experiment(run.info.experiment_id)
    line = f"MLflow: experiment '{experiment.name}', run {run_id}"
    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        line += (f" — {uri.rstrip('/')}/#/experiments/{run.info.experiment_id}"
                 f"/runs/{run_id}")
    return line


def _guarded(what: str):
    """Run a logging function; on any failure one warning line, never an error."""
    def wrap(function):
        def call(*args, **kwargs):
            try:  # MLflow prints its own two "View run" lines: ours is the one line
                with contextlib.redirect_stdout(io.StringIO()):
                    return function(*args, **kwargs)
            # Broad on purpose: MLflow, its server and the flavours fail in many ways
            # (HTTP, file systems, Spark), and none may fail the user's training.
            except Exception as exc:  # noqa: BLE001
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                warnings.warn_explicit(f"MLflow: {what} not logged ({first})",
                                       TrackingWarning, filename="sparkdl_magics",
                                       lineno=0, module="sparkdl_magics")
                return None
        return call
    return wrap


def _flat(params: Dict[str, Any]) -> Dict[str, str]:
    return {k: (json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v))[:6000]
            for k, v in params.items() if v is not None}


def _image_params(images: Any, classes: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"images.classes": list(classes)}
    if images is None:
        return out
    out["images.source"] = images.source
    for split, count in images.split_sizes().items():
        out[f"images.{split}"] = count
    return out


def _backbone_params(model: Any) -> Dict[str, Any]:
    params: Dict[str, Any] = {"backbone": model.model_name}
    features = getattr(model, "features", None)
    if features is not None:
        params.update({"weights": features.weights, "feature_size": features.feature_dim})
    if model.has_featurizer:
        stage = model.pipeline_model.stages[0]
        if hasattr(stage, "getPrecision"):
            params["precision"] = stage.getPrecision()
    return params


# --------------------------------------------------------------------------- fit

@_guarded("the fit")
def log_fit(model: Any, track: Optional[bool] = None) -> Optional[str]:
    """One run for a :class:`~sparkdl_magics.results.FittedModel`; its run id."""
    if not active(track):
        return None
    import mlflow
    features = model.features
    images = features.images if features is not None else None
    params = {**_backbone_params(model), "classifier": model.classifier,
              **{f"classifier.{k}": v for k, v in model.params.items()},
              "metric": model.metric, "tuning": model.tuning or "none",
              "train_count": model.train_count, **_image_params(images, model.classes)}
    with mlflow.start_run(run_name=f"fit {model.classifier}") as run:
        mlflow.log_params(_flat(params))
        mlflow.set_tag("sparkdl_magics.stage", "fit")
        if model.grid is not None:
            _log_grid(model)
        _log_spark_model(model)
        _log_exported(model)
    model.run_id = run.info.run_id
    return model.run_id


def _log_grid(model: Any) -> None:
    import mlflow
    grid = model.grid
    keys = [c for c in grid.columns if c not in ("chosen",) and not c.endswith("_std")
            and c != model.metric]
    for i, row in grid.iterrows():
        with mlflow.start_run(run_name=f"grid point {i}", nested=True):
            mlflow.log_params(_flat({k: _plain(row[k]) for k in keys}))
            mlflow.log_metric(f"cv_{model.metric}", float(row[model.metric]))
            mlflow.set_tag("chosen", str(bool(row["chosen"])).lower())


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _log_spark_model(model: Any) -> None:
    """The pipeline as an MLflow Spark model (images in, class names out); classic only."""
    import mlflow
    from .session import is_connect
    df = model.features.test if model.features is not None else None
    if df is None or is_connect(df.sparkSession):
        mlflow.set_tag("spark_model", "not logged: MLflow's Spark flavour needs a classic "
                                      "session")
        return
    from mlflow.models import infer_signature
    from .results import PATH_COL, PREDICTION_NAME_COL
    images = model.features.images
    signature = None
    if images is not None and model.has_featurizer:
        example = images.df.select(PATH_COL, images.image_col).limit(2)
        out = model.pipeline_model.transform(example).select(PREDICTION_NAME_COL)
        signature = infer_signature(example.toPandas(), out.toPandas())
    import mlflow.spark
    # Requirements given: inferring them reloads the model in a new Spark (a minute)
    mlflow.spark.log_model(model.pipeline_model, artifact_path="spark_model",
                           signature=signature,
                           pip_requirements=_requirements(SPARK_MODEL_NEEDS))


def _log_exported(model: Any) -> None:
    """The exported Keras network as an MLflow pyfunc model (``keras_model``): encoded
    image files in, class probabilities out, loaded without Spark (see
    :mod:`sparkdl_magics.pyfunc_model`); when the classifier is layers."""
    import mlflow
    from .errors import DataError
    from .export import describe, network
    try:
        net = network(model)
    except DataError as exc:
        mlflow.set_tag("keras_model", f"not logged: {exc}")
        return
    with tempfile.TemporaryDirectory(prefix="sparkdl-export-") as folder:
        path = os.path.join(folder, "model.keras")
        net.save(path)
        info = describe(model, net)
        with open(os.path.join(folder, "model.json"), "w") as out:
            json.dump(info, out, indent=1)
        here = os.path.dirname(os.path.abspath(__file__))
        decoding = os.path.join(folder, "sparkdl_imaging.py")  # its decoding rules
        shutil.copyfile(os.path.join(here, "imaging.py"), decoding)
        with warnings.catch_warnings():  # its signature says what an example would
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            mlflow.pyfunc.log_model(
                name=EXPORTED_MODEL, python_model=os.path.join(here, "pyfunc_model.py"),
                artifacts={"network": path, "info": os.path.join(folder, "model.json")},
                code_paths=[decoding], signature=_image_signature(info["classes"]),
                pip_requirements=_requirements(EXPORTED_MODEL_NEEDS))


#: The run's exported network as an MLflow model (``runs:/<run id>/keras_model``).
EXPORTED_MODEL = "keras_model"


def _image_signature(classes: Any) -> Any:
    """Encoded image files in (column ``image``), one float column per class out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    return ModelSignature(inputs=Schema([ColSpec(DataType.binary, "image")]),
                          outputs=Schema([ColSpec(DataType.double, str(c))
                                          for c in classes]))


#: What each logged model needs where it is loaded (pinned to the versions used here).
SPARK_MODEL_NEEDS = ("mlflow", "pyspark", "sparkdl_magics")
EXPORTED_MODEL_NEEDS = ("mlflow", "keras", "tensorflow", "pillow", "numpy", "pandas")


def _requirements(names: Any) -> Any:
    """``name==version`` for each of *names* installed here."""
    from importlib import metadata
    out = []
    for name in names:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue  # e.g. another Keras backend than TensorFlow
    return out


# --------------------------------------------------------------------------- finetune

@_guarded("the fine-tune")
def log_finetune(model: Any, track: Optional[bool] = None) -> Optional[str]:
    """One run for a fine-tuned model: options, per-epoch metrics as steps, the file."""
    if not active(track):
        return None
    import mlflow
    params = {"backbone": model.model_name, "preprocess": model.preprocess,
              "input_size": list(model.input_size), "workers": model.workers,
              "unfreeze": model.unfreeze, "head": list(model.head),
              "epochs": _epochs_trained(model.history),
              **_image_params(model.images, model.classes)}
    with mlflow.start_run(run_name="finetune") as run:
        mlflow.log_params(_flat(params))
        mlflow.set_tag("sparkdl_magics.stage", "finetune")
        if model.history is not None:
            for i, row in model.history.reset_index(drop=True).iterrows():
                step = int(row["epoch"]) if _is_number(row.get("epoch")) else int(i)
                mlflow.log_metrics({k: float(v) for k, v in row.items()
                                    if k != "epoch" and _is_number(v)}, step=step)
        if model.model_file and os.path.exists(model.model_file):
            mlflow.log_artifact(model.model_file, artifact_path="finetuned")
        _log_exported(model)
    model.run_id = run.info.run_id
    return model.run_id


def _epochs_trained(history: Any) -> int:
    """Epochs run (epoch 0, the model before training, is not one)."""
    if history is None or not len(history):
        return 0
    if "epoch" in history:
        return int(history["epoch"].max())
    return len(history)


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return float(value) == float(value)  # NaN: not logged
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- evaluate

@_guarded("the evaluation")
def log_evaluation(model: Any, evaluation: Any, own_data: bool,
                   track: Optional[bool] = None) -> Optional[str]:
    """Metrics (and confusion matrix, mistakes) on the model's run, or a new run when
    the model has none; other data than the model's test split is prefixed by name."""
    if not active(track):
        return None
    import mlflow
    prefix = "" if own_data else f"{evaluation.name or 'data'}_"
    run_id = getattr(model, "run_id", None)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else "evaluate") as run:
        metrics = {f"{prefix}{k}": float(v) for k, v in evaluation.metrics.items()
                   if _is_number(v)}
        per_class = getattr(evaluation, "per_class", None)
        if per_class is not None and {"class", "f1"} <= set(per_class.columns):
            for name, value in zip(per_class["class"], per_class["f1"]):
                metrics[f"{prefix}f1_{_metric_name(name)}"] = float(value)
        mlflow.log_metrics(metrics)
        if getattr(evaluation, "confusion", None) is not None:
            mlflow.log_text(evaluation.confusion.to_csv(), f"{prefix}confusion_matrix.csv")
        if getattr(evaluation, "errors", None) is not None and len(evaluation.errors):
            _log_mistakes(evaluation.errors, prefix)
    evaluation.run_id = run.info.run_id
    return evaluation.run_id


def _metric_name(name: Any) -> str:
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in str(name))


def _log_mistakes(errors: Any, prefix: str) -> None:
    import mlflow
    table = errors.drop(columns=[c for c in ("thumbnail",) if c in errors.columns])
    mlflow.log_text(table.to_csv(index=False), f"{prefix}mistakes/mistakes.csv")
    if "thumbnail" in errors.columns:
        with tempfile.TemporaryDirectory(prefix="sparkdl-mistakes-") as folder:
            for i, png in enumerate(errors["thumbnail"]):
                if png:
                    with open(os.path.join(folder, f"{i:03d}.png"), "wb") as out:
                        out.write(png)
            mlflow.log_artifacts(folder, artifact_path=f"{prefix}mistakes")


__all__ = ["TRACK", "active", "uri_configured", "run_line", "log_fit", "log_finetune",
           "log_evaluation", "TrackingWarning"]
