"""The transfer-learning app: widgets that run load → featurize → fit → evaluate.

``App()`` (or ``%dlapp``) shows a form — image source, label mode, sample and split,
a model from the registry, a classifier and its main parameters — and Run / Cancel
buttons. Run calls the same public API as the magics (:func:`load_images`,
:func:`featurize`, :func:`fit`, :func:`evaluate`) on the attached Spark session, in a
background thread, with the live Spark progress bar of :mod:`sparkdl_magics.progress`;
Cancel cancels exactly the running step's Spark jobs. Results land in tabs (preview
grid, metrics, confusion matrix, misclassified images, the equivalent code).

Everything shown is data on the app too: ``app.results`` (``images``, ``features``,
``model``, ``evaluation``), ``app.steps`` (one record per step, with its progress
snapshot), ``app.status``, ``app.error``, ``app.options()``, ``app.code()`` and
``app.magic_cells()``. Only standard ipywidgets are used, so it renders in JupyterLab,
classic Notebook, VS Code and Databricks.
"""
from __future__ import annotations

import html
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from . import progress

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
TABS = ("Preview", "Metrics", "Confusion matrix", "Misclassified", "Model", "Code")
LABEL_MODES = (("one sub-folder per class", "folders"), ("label table (CSV/Parquet)", "table"),
               ("unlabelled", "none"))


class Cancelled(Exception):
    """The run was cancelled between steps."""


def _model_names() -> List[str]:
    try:
        from .models import list_models
        return [str(n) for n in list_models()["model"]]
    except Exception:  # the registry is unavailable: a free-text model name still works
        return ["InceptionV3"]


def _classifier_names() -> List[str]:
    try:
        from .classifiers import CLASSIFIERS
        return list(CLASSIFIERS)
    except Exception:
        return ["logistic_regression"]


def _param_defaults(classifier: str) -> Dict[str, Any]:
    """The main params of *classifier* and their defaults (no Spark needed)."""
    return dict(MAIN_PARAMS.get(classifier, {}))


class App:
    """Widgets that build and run the transfer-learning pipeline (see the module doc)."""

    def __init__(self, path: str = "", model: Optional[str] = None,
                 classifier: str = "logistic_regression", spark: Any = None):
        import ipywidgets as w
        from .display.progress import WidgetProgressView

        self._spark = spark
        wide = w.Layout(width="460px")
        style = {"description_width": "110px"}
        # -- data
        self.path = w.Text(value=str(path), description="Images", placeholder="folder, glob or URI",
                           layout=wide, style=style)
        self.label_mode = w.Dropdown(options=LABEL_MODES, value="folders", description="Labels",
                                     layout=wide, style=style)
        self.label_table = w.Text(description="Label table", placeholder="labels.csv",
                                  layout=wide, style=style)
        self.id_column = w.Text(value="ImageID", description="ID column", style=style)
        self.label_column = w.Text(value="LabelName", description="Label column", style=style)
        self.table_box = w.VBox([self.label_table, w.HBox([self.id_column, self.label_column])],
                                layout=w.Layout(display="none"))
        self.sample = w.FloatSlider(value=1.0, min=0.01, max=1.0, step=0.01, description="Sample",
                                    readout_format=".2f", style=style)
        self.split = w.FloatSlider(value=0.8, min=0.5, max=0.95, step=0.05, description="Train split",
                                   readout_format=".2f", style=style)
        self.seed = w.IntText(value=42, description="Seed", style=style)
        # -- model
        names = _model_names()
        self.model = w.Dropdown(options=names, value=model if model in names else
                                ("InceptionV3" if "InceptionV3" in names else names[0]),
                                description="Model", style=style)
        self.weights = w.Text(value="imagenet", description="Weights",
                              placeholder="imagenet, none, or a weights file", style=style)
        # -- classifier
        self.classifier = w.Dropdown(options=_classifier_names(), value=classifier,
                                     description="Classifier", style=style)
        self.params_box = w.VBox()
        self.params: Dict[str, Any] = {}
        # -- actions and output
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", button_style="warning", icon="stop",
                                      disabled=True)
        self.status_html = w.HTML("ready")
        self.progress_view = WidgetProgressView("")
        self.steps_html = w.HTML("")
        self.outputs = {name: w.Output() for name in TABS}
        self.tabs = w.Tab(children=[self.outputs[n] for n in TABS])
        for i, name in enumerate(TABS):
            self.tabs.set_title(i, name)

        form = w.GridBox(
            [w.VBox([w.HTML("<b>Data</b>"), self.path, self.label_mode, self.table_box,
                     self.sample, self.split, self.seed]),
             w.VBox([w.HTML("<b>Features</b>"), self.model, self.weights,
                     w.HTML("<b>Classifier</b>"), self.classifier, self.params_box])],
            layout=w.Layout(grid_template_columns="repeat(auto-fit, minmax(420px, 1fr))",
                            grid_gap="4px 16px"))
        self.widget = w.VBox([form, w.HBox([self.run_button, self.cancel_button, self.status_html]),
                              self.progress_view.widget, self.steps_html, self.tabs])

        self.label_mode.observe(self._on_label_mode, names="value")
        self.classifier.observe(self._on_classifier, names="value")
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        self._on_classifier({"new": self.classifier.value})

        # -- state (data, not display)
        self.results: Dict[str, Any] = {}
        self.steps: List[Dict[str, Any]] = []
        self.status = "ready"  # ready | running | done | cancelled | failed
        self.error: Optional[BaseException] = None
        self._ran: Optional[Dict[str, Dict[str, Any]]] = None
        self._thread: Optional[threading.Thread] = None
        self._scope: Optional[progress.CellScope] = None
        self._cancel = threading.Event()

    # ------------------------------------------------------------------ display
    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def _on_label_mode(self, change: Dict[str, Any]) -> None:
        self.table_box.layout.display = "" if change["new"] == "table" else "none"

    def _on_classifier(self, change: Dict[str, Any]) -> None:
        import ipywidgets as w
        try:
            defaults = _param_defaults(change["new"])
        except Exception:
            defaults = {}
        self.params = {}
        for name, value in defaults.items():
            if isinstance(value, bool):
                widget = w.Checkbox(value=value, description=name)
            elif isinstance(value, int):
                widget = w.IntText(value=value, description=name)
            elif isinstance(value, float):
                widget = w.FloatText(value=value, description=name)
            else:
                continue
            widget.style = {"description_width": "110px"}
            self.params[name] = widget
        self.params_box.children = tuple(self.params.values())

    # ------------------------------------------------------------------ what to run
    def options(self) -> Dict[str, Dict[str, Any]]:
        """The API arguments the widgets describe, per step (what Run will call)."""
        mode = self.label_mode.value
        load: Dict[str, Any] = {"path": self.path.value.strip()}
        if mode == "table":
            load.update(labels=self.label_table.value.strip(), id_column=self.id_column.value,
                        label_column=self.label_column.value)
        else:
            load["labels"] = mode
        if self.sample.value < 1.0:
            load["sample"] = round(float(self.sample.value), 4)
        load.update(split=round(float(self.split.value), 4), seed=int(self.seed.value))
        weights = self.weights.value.strip() or "imagenet"
        featurize = {"model": self.model.value, "weights": weights}
        fit = {"classifier": self.classifier.value,
               **{name: widget.value for name, widget in self.params.items()}}
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
        from .session import get_spark
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
        for out in self.outputs.values():
            out.outputs = ()
        self._set_status("running", "running…")
        self.run_button.disabled, self.cancel_button.disabled = True, False
        self._show_code(opts)
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

    def _pipeline(self, opts: Dict[str, Dict[str, Any]]) -> None:
        from . import evaluate, featurize, fit, load_images
        calls = {
            "load": lambda: load_images(**opts["load"], spark=self.spark()),
            "featurize": lambda: featurize(self.results["images"], **opts["featurize"]),
            "fit": lambda: fit(self.results["features"], **opts["fit"]),
            "evaluate": lambda: evaluate(self.results["model"]),
        }
        keys = {"load": "images", "featurize": "features", "fit": "model", "evaluate": "evaluation"}
        status = "done"
        try:
            spark = self.spark()
            for step in STEPS:
                if self._cancel.is_set():
                    raise Cancelled()
                self.progress_view.reset(step)
                record: Dict[str, Any] = {"step": step, "status": "running"}
                self.steps.append(record)
                self._show_steps()
                started = time.perf_counter()
                scope = None
                try:
                    with progress.cell_scope(spark, f"app-{step}", view=self.progress_view,
                                             mode="widget", show=False) as scope:
                        self._scope = scope
                        value = calls[step]()
                    record["status"] = "done"
                finally:
                    self._scope = None
                    record["seconds"] = round(time.perf_counter() - started, 2)
                    record["progress"] = scope.snapshot().as_dict() if scope else {}
                    if record["status"] == "running":
                        record["status"] = "cancelled" if self._cancel.is_set() else "failed"
                    self._show_steps()
                self.results[keys[step]] = value
                self._show_result(step, value)
        except BaseException as exc:  # noqa: BLE001 - shown in the app, kept on .error
            status = "cancelled" if self._cancel.is_set() else "failed"
            if status == "failed":
                self.error = exc
        finally:
            if status == "done":
                message = "done: " + _metrics_line(self.results.get("evaluation"))
            elif status == "cancelled":
                message = "cancelled; the step's Spark jobs were stopped"
            else:
                from .errors import user_message
                message = f"failed: {user_message(self.error) or repr(self.error)}"
            self._set_status(status, message)
            self.run_button.disabled, self.cancel_button.disabled = False, True

    # ------------------------------------------------------------------ rendering
    def _set_status(self, status: str, message: str) -> None:
        self.status = status
        color = {"failed": "#b00", "cancelled": "#a60", "done": "#070"}.get(status, "#333")
        self.status_html.value = f"<span style='color:{color}'>{html.escape(message)}</span>"

    def _show_steps(self) -> None:
        rows = []
        for r in self.steps:
            p = r.get("progress") or {}
            tasks = f"{p['tasks_done']}/{p['tasks_total']} tasks" if p else ""
            secs = f"{r['seconds']:.1f} s" if "seconds" in r else ""
            rows.append(f"<tr><td>{html.escape(r['step'])}</td><td>{html.escape(r['status'])}</td>"
                        f"<td>{tasks}</td><td>{secs}</td></tr>")
        self.steps_html.value = f"<table style='font-size:smaller'>{''.join(rows)}</table>"

    def _show_code(self, opts: Dict[str, Dict[str, Any]]) -> None:
        cells = "\n\n".join(self.magic_cells(opts))
        _put(self.outputs["Code"], "<b>Python</b><pre>" + html.escape(self.code(opts)) + "</pre>"
             "<b>Magic cells</b><pre>" + html.escape(cells) + "</pre>",
             self.code(opts))

    def _show_result(self, step: str, value: Any) -> None:
        if step == "load":
            _put(self.outputs["Preview"], _html_of(value), repr(value))
        elif step == "fit":
            _put(self.outputs["Model"], _html_of(value), repr(value))
        elif step == "evaluate":
            from .display import evaluation as show
            _put(self.outputs["Metrics"], _metrics_html(value), repr(value))
            _put(self.outputs["Confusion matrix"], show.confusion_plot(value.confusion),
                 value.confusion.to_string())
            errors = getattr(value, "errors", None)
            if errors is not None and len(errors):
                _put(self.outputs["Misclassified"], show.gallery_html(errors),
                     f"{len(errors)} misclassified images")
            else:
                _put(self.outputs["Misclassified"], "<i>no misclassified images</i>",
                     "no misclassified images")


def _args(positional: List[str], kwargs: Dict[str, Any]) -> str:
    return ", ".join(positional + [f"{k}={v!r}" for k, v in kwargs.items()])


def _body(options: Dict[str, Any]) -> str:
    return "".join(f"{k}: {v}\n" for k, v in options.items())


def _put(out: Any, html_text: str, text: str) -> None:
    """Replace an Output widget's content (thread-safe: sets its outputs directly)."""
    out.outputs = ({"output_type": "display_data", "metadata": {},
                    "data": {"text/html": html_text, "text/plain": text}},)


def _html_of(value: Any) -> str:
    render = getattr(value, "_repr_html_", None)
    return render() if render else f"<pre>{html.escape(repr(value))}</pre>"


def _metrics_html(ev: Any) -> str:
    import pandas as pd
    metrics = pd.DataFrame({"value": ev.metrics}).to_html(float_format="{:.4f}".format)
    per_class = ev.per_class.to_html(float_format="{:.4f}".format) if ev.per_class is not None else ""
    return f"<b>Metrics</b>{metrics}<b>Per class</b>{per_class}"


def _metrics_line(ev: Any) -> str:
    if ev is None:
        return ""
    shown = [f"{k} {ev.metrics[k]:.3f}" for k in ("accuracy", "f1") if k in ev.metrics]
    return ", ".join(shown)
