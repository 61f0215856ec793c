"""HTML for multi-label results: a MultiLabelModel (labels, positives, params) and a
MultiLabelEvaluation (metrics, per-label table and chart, ROC curves, the images with
the most wrong labels). Renders what the stages computed; computes nothing."""
from __future__ import annotations

from typing import Any

from ..results import MultiLabelEvaluation, MultiLabelModel
from .evaluation import evaluation_head, gallery_cell
from .html import escape, figure_png, frame_html, kv_table, new_figure, untrained_banner

#: Labels drawn in the ROC plot (the per-label table lists all of them).
MAX_CURVES = 12


def multilabel_model_html(model: MultiLabelModel) -> str:
    facts = {"classifier": f"{model.classifier}, one per label",
             "labels": len(model.classes), "threshold": model.threshold,
             "features": f"{model.model_name} ({model.num_features}-dim)"
             if model.model_name else model.num_features,
             "training images": model.train_count, **model.params}
    positives = ", ".join(f"{escape(c)} {n}" for c, n in model.positives.items())
    parts = ["<div><h4>Multi-label model</h4>",
             untrained_banner(model.untrained, "its predictions are those of random features"),
             kv_table(facts), f"<p>training images per label: {positives}</p>"]
    parts += [f"<p><i>Note: {escape(n)}</i></p>" for n in model.notes]
    return "".join(parts) + "</div>"


def per_label_plot(ev: MultiLabelEvaluation) -> str:
    table = ev.per_label
    fig = new_figure(max(4.5, 0.5 * len(table) + 2.5), 3.2)
    ax = fig.add_subplot(121)
    x = range(len(table))
    width = 0.27
    for j, col in enumerate(("roc_auc", "average_precision", "f1")):
        ax.bar([i + (j - 1) * width for i in x], table[col].fillna(0), width, label=col)
    ax.set_xticks(list(x))
    ax.set_xticklabels([str(c) for c in table["label"]], rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("per label")
    ax = fig.add_subplot(122)
    for label, roc in list(ev.roc.items())[:MAX_CURVES]:
        auc = ev.per_label.set_index("label").loc[label, "roc_auc"]
        ax.plot(roc["fpr"], roc["tpr"], label=f"{label} ({auc:.2f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC per label")
    ax.legend(fontsize=7, loc="lower right")
    return figure_png(fig)


def worst_images_html(errors: Any) -> str:
    cells = [gallery_cell(row, f"{int(row['wrong_labels'])} wrong<br/>"
                               f"true: {escape(row['true'])}<br/>"
                               f"predicted: {escape(row['predicted'])}", width=130)
             for _, row in errors.iterrows()]
    return "<div>" + "".join(cells) + "</div>"


def multilabel_evaluation_html(ev: MultiLabelEvaluation) -> str:
    parts = evaluation_head("Multi-label evaluation", ev)
    parts += ["<h5>Per label</h5>", frame_html(ev.per_label)]
    if len(ev.per_label):
        parts.append(per_label_plot(ev))
    if ev.errors is not None and len(ev.errors):
        parts += ["<h5>Images with the most wrong labels</h5>", worst_images_html(ev.errors)]
    return "<div>" + "".join(parts) + "</div>"
