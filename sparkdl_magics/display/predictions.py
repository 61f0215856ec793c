"""HTML for Predictions: the top-K classes of the first rows (computed by the stage)."""
from __future__ import annotations

from ..results import (LABEL_NAME_COL, PATH_COL, PREDICT_ERROR_COL, TOP_K_COL, Predictions)
from .html import escape, untrained_banner


def predictions_html(result: Predictions) -> str:
    head = (f"<div><b>Predictions</b>: {escape(result.model_name)} (weights: "
            f"{escape(result.weights)}), top {result.top_k}"
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
        top = r.get(TOP_K_COL)
        top = [] if top is None else list(top)
        text = ", ".join(f"{escape(c['label'])} ({float(c['probability']):.3f})" for c in top)
        label = f"<td>{escape(r.get(LABEL_NAME_COL))}</td>" if labelled else ""
        body.append(f"<tr><td>{escape(r.get(PATH_COL, ''))}</td>{label}"
                    f"<td>{text or escape(r.get(PREDICT_ERROR_COL) or '')}</td></tr>")
    label_th = "<th>label</th>" if labelled else ""
    return (head + f"<table><tr><th>path</th>{label_th}<th>top {result.top_k}</th></tr>"
            + "".join(body) + "</table></div>")
