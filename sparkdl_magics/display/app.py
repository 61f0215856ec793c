"""The app's view: the widget form, the Run / Cancel bar and the result tabs.

:class:`AppView` builds standard ipywidgets only (so it renders in JupyterLab, classic
Notebook, VS Code and Databricks) and renders what :class:`sparkdl_magics.app.App`
hands it: a status, the step records, the equivalent code, each step's result. It
reads nothing from Spark and computes nothing; the app owns the pipeline and its state.
Results go into the tabs through the same renderers as the magics' output.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

from ..results import Evaluation
from . import to_html
from .evaluation import confusion_plot, gallery_html
from .html import escape, frame_html, kv_table, untrained_banner
from .progress import WidgetProgressView

TABS = ("Preview", "Metrics", "Confusion matrix", "Misclassified", "Model", "Code")
LABEL_MODES = (("one sub-folder per class", "folders"), ("label table (CSV/Parquet)", "table"),
               ("unlabelled", "none"))
_STYLE = {"description_width": "110px"}
_STATUS_COLOR = {"failed": "#b00", "cancelled": "#a60", "done": "#070"}
#: No wrapping inside a line of code (nor a number): long lines scroll sideways.
_PRE = "<pre style='white-space:pre;overflow-x:auto'>"


class AppView:
    """The form and the output area of one app; see the module docstring.

    *models* and *classifiers* are the dropdowns' choices; *main_params* gives, per
    classifier, the params the form offers and their defaults; *on_run* / *on_cancel*
    are what the buttons call.
    """

    def __init__(self, *, path: str, models: Sequence[str], model: str,
                 classifiers: Sequence[str], classifier: str, weights: str,
                 main_params: Dict[str, Dict[str, Any]], on_run: Callable[[], Any],
                 on_cancel: Callable[[], Any]):
        import ipywidgets as w
        self._main_params = main_params
        self.params: Dict[str, Any] = {}
        data = self._data_widgets(w, path)
        self.model = w.Dropdown(options=list(models), value=model, description="Model",
                                style=_STYLE)
        self.weights = w.Text(value=weights, description="Weights", style=_STYLE,
                              placeholder="auto, imagenet, none, or a weights file")
        self.classifier = w.Dropdown(options=list(classifiers), value=classifier,
                                     description="Classifier", style=_STYLE)
        self.params_box = w.VBox()
        features = [w.HTML("<b>Features</b>"), self.model, self.weights,
                    w.HTML("<b>Classifier</b>"), self.classifier, self.params_box]
        form = w.GridBox([w.VBox(data), w.VBox(features)],
                         layout=w.Layout(grid_template_columns="repeat(auto-fit, minmax(420px, 1fr))",
                                         grid_gap="4px 16px"))
        self.widget = w.VBox([form, self._output_widgets(w)])
        self.label_mode.observe(self._on_label_mode, names="value")
        self.classifier.observe(self._on_classifier, names="value")
        self.run_button.on_click(lambda _: on_run())
        self.cancel_button.on_click(lambda _: on_cancel())
        self._on_classifier({"new": self.classifier.value})

    def _data_widgets(self, w: Any, path: str) -> List[Any]:
        wide = w.Layout(width="460px")
        self.path = w.Text(value=str(path), description="Images", placeholder="folder, glob or URI",
                           layout=wide, style=_STYLE)
        self.label_mode = w.Dropdown(options=LABEL_MODES, value="folders", description="Labels",
                                     layout=wide, style=_STYLE)
        self.label_table = w.Text(description="Label table", placeholder="labels.csv",
                                  layout=wide, style=_STYLE)
        self.id_column = w.Text(value="ImageID", description="ID column", style=_STYLE)
        self.label_column = w.Text(value="LabelName", description="Label column", style=_STYLE)
        self.table_box = w.VBox([self.label_table, w.HBox([self.id_column, self.label_column])],
                                layout=w.Layout(display="none"))
        self.sample = w.FloatSlider(value=1.0, min=0.01, max=1.0, step=0.01, description="Sample",
                                    readout_format=".2f", style=_STYLE)
        self.split = w.FloatSlider(value=0.8, min=0.5, max=0.95, step=0.05, description="Train split",
                                   readout_format=".2f", style=_STYLE)
        self.seed = w.IntText(value=42, description="Seed", style=_STYLE)
        return [w.HTML("<b>Data</b>"), self.path, self.label_mode, self.table_box,
                self.sample, self.split, self.seed]

    def _output_widgets(self, w: Any) -> Any:
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", button_style="warning", icon="stop",
                                      disabled=True)
        self.status_html = w.HTML("ready")
        self.progress_view = WidgetProgressView("", stats="idle")
        self.steps_html = w.HTML("")
        self.outputs = {name: w.Output() for name in TABS}
        self.tabs = w.Tab(children=[self.outputs[n] for n in TABS])
        for i, name in enumerate(TABS):
            self.tabs.set_title(i, name)
        return w.VBox([w.HBox([self.run_button, self.cancel_button, self.status_html]),
                       self.progress_view.widget, self.steps_html, self.tabs])

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    # ------------------------------------------------------------------ form events
    def _on_label_mode(self, change: Dict[str, Any]) -> None:
        self.table_box.layout.display = "" if change["new"] == "table" else "none"

    def _on_classifier(self, change: Dict[str, Any]) -> None:
        import ipywidgets as w
        kinds = ((bool, w.Checkbox), (int, w.IntText), (float, w.FloatText))  # bool first
        self.params = {}
        for name, value in self._main_params.get(change["new"], {}).items():
            make = next((m for t, m in kinds if isinstance(value, t)), None)
            if make is not None:
                self.params[name] = make(value=value, description=name, style=_STYLE)
        self.params_box.children = tuple(self.params.values())

    # ------------------------------------------------------------------ rendering
    def start(self, python: str, cells: Sequence[str]) -> None:
        """A run starts: empty tabs, buttons swapped, the code it runs shown."""
        for out in self.outputs.values():
            out.outputs = ()
        self.run_button.disabled, self.cancel_button.disabled = True, False
        _put(self.outputs["Code"], "<b>Python</b>" + _PRE + escape(python) + "</pre>"
             "<b>Magic cells</b>" + _PRE + escape("\n\n".join(cells)) + "</pre>", python)

    def stop(self) -> None:
        self.run_button.disabled, self.cancel_button.disabled = False, True

    def show_status(self, status: str, message: str) -> None:
        color = _STATUS_COLOR.get(status, "#333")
        self.status_html.value = f"<span style='color:{color}'>{escape(message)}</span>"

    def show_steps(self, steps: Sequence[Dict[str, Any]]) -> None:
        rows = []
        for r in steps:
            p = r.get("progress") or {}
            tasks = f"{p['tasks_done']}/{p['tasks_total']} tasks" if p else ""
            secs = f"{r['seconds']:.1f} s" if "seconds" in r else ""
            rows.append(f"<tr><td>{escape(r['step'])}</td><td>{escape(r['status'])}</td>"
                        f"<td>{tasks}</td><td>{secs}</td></tr>")
        self.steps_html.value = f"<table style='font-size:smaller'>{''.join(rows)}</table>"

    def show_result(self, step: str, value: Any) -> None:
        """Put a step's result in its tabs (load: Preview; fit: Model; evaluate: the rest)."""
        if step == "load":
            _put(self.outputs["Preview"], to_html(value), repr(value))
        elif step == "fit":
            _put(self.outputs["Model"], to_html(value), repr(value))
        elif step == "evaluate":
            self._show_evaluation(value)

    def _show_evaluation(self, ev: Evaluation) -> None:
        banner = untrained_banner(ev.untrained, "these figures are those of random features")
        _put(self.outputs["Metrics"], metrics_html(ev), repr(ev))
        _put(self.outputs["Confusion matrix"], banner + confusion_plot(ev.confusion),
             ev.confusion.to_string())
        if ev.errors is not None and len(ev.errors):
            _put(self.outputs["Misclassified"], banner + gallery_html(ev.errors),
                 f"{len(ev.errors)} misclassified images")
        else:
            _put(self.outputs["Misclassified"], "<i>no misclassified images</i>",
                 "no misclassified images")


def metrics_html(ev: Evaluation) -> str:
    """The Metrics tab: the metrics and per-class tables exactly as %%evaluate shows them."""
    notes = "".join(f"<p><i>Note: {escape(n)}</i></p>" for n in ev.notes)
    return ("<b>Metrics</b>"
            + untrained_banner(ev.untrained, "these figures are those of random features")
            + kv_table(ev.metrics) + notes
            + ("<b>Per class</b>" + frame_html(ev.per_class) if ev.per_class is not None else ""))


def metrics_line(ev: Optional[Evaluation]) -> str:
    """``accuracy 0.850, f1 0.843``: the headline numbers for the status line."""
    if ev is None:
        return ""
    line = ", ".join(f"{k} {ev.metrics[k]:.3f}" for k in ("accuracy", "f1") if k in ev.metrics)
    return line + (" (UNTRAINED features)" if ev.untrained else "")


def _put(out: Any, html_text: str, text: str) -> None:
    """Replace an Output widget's content (thread-safe: sets its outputs directly)."""
    out.outputs = ({"output_type": "display_data", "metadata": {},
                    "data": {"text/html": html_text, "text/plain": text}},)
