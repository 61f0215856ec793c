"""HTML for Evaluation and Comparison: metrics, per-class table, confusion heatmap,
ROC/PR curves and the misclassified gallery. Renders what evaluation computed."""
from __future__ import annotations

import html
from typing import Any

from ..results import Comparison, Evaluation
from .html import figure_png, frame_html, kv_table, new_figure, png_img, untrained_banner


def confusion_plot(confusion: Any) -> str:
    classes = [str(c) for c in confusion.index]
    values = confusion.to_numpy()
    size = max(3.0, 0.45 * len(classes) + 2.0)
    fig = new_figure(size + 1.0, size)
    ax = fig.add_subplot(111)
    image = ax.imshow(values, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)))
    ax.set_yticklabels(classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 25:
        high = values.max() if values.size else 0
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, str(values[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if high and values[i, j] > high / 2 else "black")
    ax.set_title("confusion matrix")
    return figure_png(fig)


def curves_plot(ev: Any) -> str:
    fig = new_figure(8.0, 3.2)
    ax = fig.add_subplot(121)
    ax.plot(ev.roc["fpr"], ev.roc["tpr"], label=f"AUC = {ev.metrics['auc']:.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC (positive: {ev.classes[1]})")
    ax.legend(loc="lower right", fontsize=8)
    ax = fig.add_subplot(122)
    ax.step(ev.pr["recall"], ev.pr["precision"], where="post",
            label=f"AP = {ev.metrics['pr_auc']:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.05)
    ax.set_title("precision-recall")
    ax.legend(loc="lower left", fontsize=8)
    return figure_png(fig)


NO_THUMBNAIL = "<div style='width:96px;height:64px;background:#eee'></div>"


def gallery_html(errors: Any) -> str:
    cells = []
    for _, row in errors.iterrows():
        thumb = row.get("thumbnail")
        img = png_img(thumb) if thumb else NO_THUMBNAIL
        prob = row.get("probability")
        prob_text = "" if prob is None or prob != prob else f" ({prob:.2f})"
        title = html.escape(str(row.get("path") or ""), quote=True)
        cells.append(
            f"<div style='display:inline-block;margin:4px;text-align:center;width:110px;"
            f"vertical-align:top' title=\"{title}\">{img}<br/>"
            f"<small>true: {html.escape(str(row['true']))}<br/>"
            f"predicted: {html.escape(str(row['predicted']))}{prob_text}</small></div>")
    return "<div>" + "".join(cells) + "</div>"


def evaluation_html(ev: Evaluation) -> str:
    title = f"Evaluation{': ' + ev.name if ev.name else ''}"
    parts = [f"<h4>{html.escape(title)}</h4>",
             untrained_banner(ev.untrained, "these figures are those of random features"),
             kv_table(ev.metrics)]
    for note in ev.notes:
        parts.append(f"<p><i>Note: {html.escape(note)}</i></p>")
    parts += ["<h5>Per class</h5>", frame_html(ev.per_class),
              "<h5>Confusion matrix</h5>", confusion_plot(ev.confusion)]
    if ev.roc is not None:
        parts.append(curves_plot(ev))
    if ev.errors is not None and len(ev.errors):
        parts += ["<h5>Most confident mistakes</h5>", gallery_html(ev.errors)]
    return "<div>" + "".join(parts) + "</div>"


def comparison_html(comp: Comparison) -> str:
    return "<div><h4>Model comparison</h4>" + frame_html(comp.table) + "</div>"
