"""HTML for Predictions: the top-K classes of the first rows (computed by the stage)."""
from __future__ import annotations

from ..results import (LABEL_NAME_COL, LABEL_PROBABILITIES_COL, PATH_COL, PREDICT_ERROR_COL,
                       PREDICTED_LABELS_COL, TOP_K_COL, Predictions)
from .html import escape, untrained_banner


def predictions_html(result: Predictions) -> str:
    what = (f"label sets (probability at least {result.threshold:g})" if result.multi_label
            else f"top {result.top_k}")
    head = (f"<div><b>Predictions</b>: {escape(result.model_name)} (weights: "
            f"{escape(result.weights)}), {what}"
            + untrained_banner(result.untrained, "these labels are meaningless"))
    if result.is_streaming:
        return head + "<p>streaming DataFrame: write it with <code>.df.writeStream</code>" \
                      "</p></div>"
    if result.show <= 0:
        return head + "</div>"
    if result.rows is None:
        return head + ("<p>lazy: nothing computed yet (<code>.preview()</code> or "
                       "<code>.to_pandas()</code> runs it)</p></div>")
    rows = result.rows.head(result.show)
    labelled = LABEL_NAME_COL in rows.columns
    body = []
    for r in rows.to_dict("records"):
        text = _label_set_text(r, result.classes or []) if result.multi_label else _top_text(r)
        label = f"<td>{escape(r.get(LABEL_NAME_COL))}</td>" if labelled else ""
        body.append(f"<tr><td>{escape(r.get(PATH_COL, ''))}</td>{label}"
                    f"<td>{text or escape(r.get(PREDICT_ERROR_COL) or '')}</td></tr>")
    label_th = "<th>label</th>" if labelled else ""
    return (head + f"<table><tr><th>path</th>{label_th}<th>{what}</th></tr>"
            + "".join(body) + "</table></div>")


def _top_text(row: dict) -> str:
    top = row.get(TOP_K_COL)
    top = [] if top is None else list(top)
    return ", ".join(f"{escape(c['label'])} ({float(c['probability']):.3f})" for c in top)


def _label_set_text(row: dict, classes: list) -> str:
    """The predicted labels with their probabilities; "(none)" for the empty set."""
    chosen = row.get(PREDICTED_LABELS_COL)
    probs = row.get(LABEL_PROBABILITIES_COL)
    if chosen is None:
        return ""
    p = dict(zip(classes, [] if probs is None else list(probs)))
    return ", ".join(f"{escape(c)} ({float(p[c]):.3f})" if c in p else escape(c)
                     for c in chosen) or "(none)"
