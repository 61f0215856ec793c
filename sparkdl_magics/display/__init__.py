"""Display: one renderer per result, widgets, plots and progress views.

Renderers turn a result's data into HTML; they never compute (no Spark jobs): what a
display needs (thumbnails, preview rows) was computed by the stage, inside the cell's
progress and cancel scope. :func:`to_html` is what every result's ``_repr_html_`` calls.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

from .. import results
from .evaluation import comparison_html, evaluation_html
from .explain import explanation_html
from .features import featureset_html
from .finetune import finetuned_model_html
from .html import kv_table
from .imageset import render_html as imageset_html
from .multilabel import multilabel_evaluation_html, multilabel_model_html
from .predictions import predictions_html
from .training import fitted_model_html


def session_html(info: results.SessionInfo) -> str:
    return kv_table({k: v for k, v in info.as_dict().items() if v is not None})


#: The renderer of each result class.
RENDERERS: Dict[type, Callable[[Any], str]] = {
    results.ImageSet: imageset_html,
    results.FeatureSet: featureset_html,
    results.Predictions: predictions_html,
    results.FineTunedModel: finetuned_model_html,  # before FittedModel, its base class
    results.FittedModel: fitted_model_html,
    results.Evaluation: evaluation_html,
    results.Comparison: comparison_html,
    results.SessionInfo: session_html,
    results.MultiLabelModel: multilabel_model_html,
    results.MultiLabelEvaluation: multilabel_evaluation_html,
    results.Explanation: explanation_html,
}


def to_html(result: Any) -> str:
    """The rich HTML of any result object of :mod:`sparkdl_magics.results`."""
    for cls, render in RENDERERS.items():
        if isinstance(result, cls):
            return render(result)
    raise TypeError(f"no renderer for {type(result).__name__}")
