"""The transfer-learning app: a form that runs load → featurize → fit → evaluate.

``App()`` (or ``%dlapp``) shows a form — image source, label mode, sample and split,
a model from the registry, a classifier and its main parameters — and Run / Cancel
buttons. Run calls the same public API as the magics (:func:`load_images`,
:func:`featurize`, :func:`fit`, :func:`evaluate`) on the attached Spark session, in a
background thread, with the live Spark progress bar of :mod:`sparkdl_magics.progress`;
Cancel cancels exactly the running step's Spark jobs. Results land in tabs (preview
grid, metrics, confusion matrix, misclassified images, the equivalent code).

This module is the pipeline runner and its state; the form and the tabs are the app's
view, :class:`sparkdl_magics.display.app.AppView` (``app.view``; its widgets are also
reachable as ``app.path``, ``app.model``, ``app.outputs``, ...). Everything shown is
data on the app too: ``app.results`` (``images``, ``features``, ``model``,
``evaluation``), ``app.steps`` (one record per step, with its progress snapshot),
``app.status``, ``app.error``, ``app.options()``, ``app.code()`` and
``app.magic_cells()``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional

from . import defaults, progress
from .classifiers import CLASSIFIERS
from .display.app import AppView, metrics_line
from .errors import user_message
from .models import MODELS
from .precision import check as check_precision
from .session import get_spark

#: Main parameters offered per classifier, with Spark MLlib's own defaults.
MAIN_PARAMS: Dict[str, Dict[str, Any]] = {
    "logistic_regression": {"maxIter": 100, "regParam": 0.0, "elasticNetParam": 0.0},
    "random_forest": {"numTrees": 20, "maxDepth": 5},
    "gbt": {"maxIter": 20, "maxDepth": 5, "stepSize": 0.1},
    "linear_svc": {"maxIter": 100, "regParam": 0.0},
    "mlp": {"maxIter": 100, "stepSize": 0.03},
    "naive_bayes": {"smoothing": 1.0},
    "fm": {"maxIter": 100, "stepSize": 1.0, "regParam": 0.0},
}
STEPS = ("load", "featurize", "fit", "evaluate")
#: The key of each step's result in ``app.results``.
RESULT_KEYS = {"load": "images", "featurize": "features", "fit": "model", "evaluate": "evaluation"}


class Cancelled(Exception):
    """The run was cancelled between steps."""


def _from_view(name: str) -> property:
    return property(lambda self: getattr(self.view, name),
                    doc=f"The view's ``{name}`` widget (see :class:`AppView`).")


class App:
    """The form and the pipeline it runs (see the module doc)."""

    # The view's widgets, as attributes of the app (what scripts and tests set and read).
    path = _from_view("path")
    label_mode = _from_view("label_mode")
    label_table = _from_view("label_table")
    id_column = _from_view("id_column")
    label_column = _from_view("label_column")
    sample = _from_view("sample")
    split = _from_view("split")
    seed = _from_view("seed")
    model = _from_view("model")
    weights = _from_view("weights")
    classifier = _from_view("classifier")
    params = _from_view("params")
    run_button = _from_view("run_button")
    cancel_button = _from_view("cancel_button")
    status_html = _from_view("status_html")
    progress_view = _from_view("progress_view")
    outputs = _from_view("outputs")
    widget = _from_view("widget")

    def __init__(self, path: str = "", model: Optional[str] = None,
                 classifier: str = defaults.CLASSIFIER, precision: str = defaults.PRECISION,
                 spark: Any = None):
        names = [m.name for m in MODELS]
        chosen = model if model in names else (defaults.MODEL if defaults.MODEL in names
                                               else names[0])
        self.view = AppView(path=path, models=names, model=chosen, classifiers=list(CLASSIFIERS),
                            classifier=classifier, weights=defaults.WEIGHTS_OFFLINE_SAFE,
                            main_params=MAIN_PARAMS, on_run=self.run, on_cancel=self.cancel)
        self._spark = spark
        #: The number type featurize runs the model in (see :mod:`sparkdl_magics.precision`).
        self.precision = check_precision(precision)
        # -- state (data, not display)
        self.results: Dict[str, Any] = {}
        self.steps: List[Dict[str, Any]] = []
        self.status = "ready"  # ready | running | done | cancelled | failed
        self.error: Optional[BaseException] = None
        self._ran: Optional[Dict[str, Dict[str, Any]]] = None
        self._thread: Optional[threading.Thread] = None
        self._scope: Optional[progress.CellScope] = None
        self._cancel = threading.Event()

    def _ipython_display_(self) -> None:
        self.view._ipython_display_()

    # ------------------------------------------------------------------ what to run
    def options(self) -> Dict[str, Dict[str, Any]]:
        """The API arguments the form describes, per step (what Run will call)."""
        v = self.view
        load: Dict[str, Any] = {"path": v.path.value.strip()}
        if v.label_mode.value == "table":
            load.update(labels=v.label_table.value.strip(), id_column=v.id_column.value,
                        label_column=v.label_column.value)
        else:
            load["labels"] = v.label_mode.value
        if v.sample.value < 1.0:
            load["sample"] = round(float(v.sample.value), 4)
        load.update(split=round(float(v.split.value), 4), seed=int(v.seed.value))
        weights = v.weights.value.strip() or defaults.WEIGHTS_OFFLINE_SAFE
        featurize = {"model": v.model.value, "weights": weights}
        if self.precision != defaults.PRECISION:
            featurize["precision"] = self.precision
        fit = {"classifier": v.classifier.value,
               **{name: widget.value for name, widget in v.params.items()}}
        return {"load": load, "featurize": featurize, "fit": fit, "evaluate": {}}

    def code(self, options: Optional[Dict[str, Dict[str, Any]]] = None) -> str:
        """The Python (public API) equivalent of the last run, or of the form."""
        opts = options or self._ran or self.options()
        load = dict(opts["load"])
        path = load.pop("path")
        lines = ["from sparkdl_magics import load_images, featurize, fit, evaluate", "",
                 f"images = load_images({_args([repr(path)], load)})",
                 f"features = featurize({_args(['images'], opts['featurize'])})",
                 f"model = fit({_args(['features'], opts['fit'])})",
                 "evaluation = evaluate(model)"]
        return "\n".join(lines)

    def magic_cells(self, options: Optional[Dict[str, Dict[str, Any]]] = None) -> List[str]:
        """The equivalent notebook cells (one string per cell)."""
        opts = options or self._ran or self.options()
        return ["%%dlload images\n" + _body(opts["load"]),
                "%%featurize images -> features\n" + _body(opts["featurize"]),
                "%%fit features -> model\n" + _body(opts["fit"]),
                "%%evaluate model"]

    # ------------------------------------------------------------------ running
    def spark(self) -> Any:
        if self._spark is not None:
            return self._spark
        return get_spark()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self, wait: bool = False, timeout: Optional[float] = None) -> "App":
        """Start the pipeline in a background thread (what the Run button does)."""
        if self.running:
            return self
        opts = self.options()
        self._ran = opts
        self._cancel.clear()
        self.results, self.steps, self.error = {}, [], None
        self.view.start(self.code(opts), self.magic_cells(opts))
        self._set_status("running", "running…")
        self._thread = threading.Thread(target=self._pipeline, args=(opts,), daemon=True,
                                        name="sparkdl-app")
        self._thread.start()
        if wait:
            self.wait(timeout)
        return self

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the run ends; True if it did within *timeout*."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def cancel(self) -> None:
        """Cancel the running step's Spark jobs and skip the remaining steps."""
        self._cancel.set()
        scope = self._scope
        if scope is not None:
            scope.cancel()
        if self.running:
            self._set_status("running", "cancelling…")

    def _calls(self, opts: Dict[str, Dict[str, Any]]) -> Dict[str, Callable[[], Any]]:
        """Each step as a call of the public API, on the results of the steps before."""
        from . import evaluate, featurize, fit, load_images
        return {
            "load": lambda: load_images(**opts["load"], spark=self.spark()),
            "featurize": lambda: featurize(self.results["images"], **opts["featurize"]),
            "fit": lambda: fit(self.results["features"], **opts["fit"]),
            "evaluate": lambda: evaluate(self.results["model"]),
        }

    def _pipeline(self, opts: Dict[str, Dict[str, Any]]) -> None:
        calls = self._calls(opts)
        status = "done"
        try:
            spark = self.spark()
            for step in STEPS:
                if self._cancel.is_set():
                    raise Cancelled()
                value = self._run_step(spark, step, calls[step])
                self.results[RESULT_KEYS[step]] = value
                self.view.show_result(step, value)
        # Broad on purpose: this is the run's thread, with no caller to raise to; whatever
        # a step raises (Spark, Keras, our errors, a cancel) is shown and kept on .error.
        except BaseException as exc:  # noqa: BLE001
            status = "cancelled" if self._cancel.is_set() else "failed"
            if status == "failed":
                self.error = exc
        finally:
            self._set_status(status, self._end_message(status))
            self.view.stop()

    def _run_step(self, spark: Any, step: str, call: Callable[[], Any]) -> Any:
        """One step inside its own progress and cancel scope, recorded in ``steps``."""
        self.view.progress_view.reset(step)
        record: Dict[str, Any] = {"step": step, "status": "running"}
        self.steps.append(record)
        self.view.show_steps(self.steps)
        started = time.perf_counter()
        scope = None
        try:
            with progress.cell_scope(spark, f"app-{step}", view=self.view.progress_view,
                                     mode="widget", show=False) as scope:
                self._scope = scope
                value = call()
            record["status"] = "done"
            return value
        finally:
            self._scope = None
            record["seconds"] = round(time.perf_counter() - started, 2)
            record["progress"] = scope.snapshot().as_dict() if scope else {}
            if record["status"] == "running":
                record["status"] = "cancelled" if self._cancel.is_set() else "failed"
            self.view.show_steps(self.steps)

    def _end_message(self, status: str) -> str:
        if status == "done":
            return "done: " + metrics_line(self.results.get("evaluation"))
        if status == "cancelled":
            return "cancelled; the step's Spark jobs were stopped"
        return f"failed: {user_message(self.error) or repr(self.error)}"

    def _set_status(self, status: str, message: str) -> None:
        self.status = status
        self.view.show_status(status, message)


def _args(positional: List[str], kwargs: Dict[str, Any]) -> str:
    return ", ".join(positional + [f"{k}={v!r}" for k, v in kwargs.items()])


def _body(options: Dict[str, Any]) -> str:
    return "".join(f"{k}: {v}\n" for k, v in options.items())
