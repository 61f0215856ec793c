"""HTML for Evaluation and Comparison: metrics, per-class table, confusion heatmap,
ROC/PR curves and the misclassified gallery. Renders what evaluation computed."""
from __future__ import annotations

import math
from typing import Any, List

from ..results import Comparison, Evaluation
from .html import (escape, figure_png, frame_html, kv_table, new_figure, png_img,
                   untrained_banner)


#: The confusion heatmap's matrix side, in inches: grows with the classes between these
#: bounds, so 10 classes get large cells and 50 still fit a notebook column (~800 px).
CONFUSION_SIDE_MIN = 3.5
CONFUSION_SIDE_MAX = 9.0
CONFUSION_INCH_PER_CLASS = 0.5
#: Below this size (points) a cell's count is not printed: the colour says it.
MIN_CELL_FONT = 6.0
MAX_LABEL_CHARS = 18


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[:MAX_LABEL_CHARS - 1] + "…"


def confusion_figure(confusion: Any) -> Any:
    """The confusion heatmap as a matplotlib Figure (rows: true class, columns: predicted).

    Sized to the number of classes within bounds; each non-zero cell shows its count in
    a font scaled to the cell (zeros stay blank); whole-number colorbar ticks; tick
    labels rotated and sized to fit. No title: the heading above it names it.
    """
    from matplotlib.ticker import MaxNLocator
    classes = [_short(str(c)) for c in confusion.index]
    predicted = [_short(str(c)) for c in confusion.columns]
    values = confusion.to_numpy()
    n_rows, n_cols = values.shape if values.ndim == 2 else (0, 0)
    n = max(n_rows, n_cols, 1)
    side = min(CONFUSION_SIDE_MAX, max(CONFUSION_SIDE_MIN, CONFUSION_INCH_PER_CLASS * n))
    cell_pt = side * 72.0 / n
    fig = new_figure(side + 1.3, side)
    ax = fig.add_subplot(111)
    high = float(values.max()) if values.size else 0.0
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=max(high, 1.0))
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    bar.set_label("images", fontsize=9)
    bar.ax.tick_params(labelsize=8)
    label_pt = max(6.0, min(10.0, 0.7 * cell_pt))
    step = max(1, math.ceil(1.15 * label_pt / cell_pt))  # every step-th label when crowded
    longest = max((len(c) for c in predicted), default=1)
    rotation = 0 if longest <= 2 or (longest <= 4 and n <= 8) else (45 if n <= 15 else 90)
    ax.set_xticks(range(0, n_cols, step))
    ax.set_xticklabels(predicted[::step], fontsize=label_pt, rotation=rotation,
                       ha="right" if rotation == 45 else "center",
                       rotation_mode="anchor" if rotation == 45 else "default")
    ax.set_yticks(range(0, n_rows, step))
    ax.set_yticklabels(classes[::step], fontsize=label_pt)
    ax.set_xlabel("predicted", fontsize=10)
    ax.set_ylabel("true", fontsize=10)
    whole = bool(values.size) and bool((values == values.astype(int)).all())
    texts = [[(str(int(v)) if whole else f"{v:.3g}") if v else "" for v in row]
             for row in values]
    digits = max((len(t) for row in texts for t in row), default=1) or 1
    font = min(12.0, 0.55 * cell_pt, 0.85 * cell_pt / (0.6 * digits))
    if font >= MIN_CELL_FONT:
        for i in range(n_rows):
            for j in range(n_cols):
                if texts[i][j]:
                    ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=font,
                            color="white" if values[i, j] > high / 2 else "black")
    return fig


def confusion_plot(confusion: Any) -> str:
    return figure_png(confusion_figure(confusion))


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


def gallery_cell(row: Any, caption: str, width: int = 110) -> str:
    """One image of a mistakes gallery: its thumbnail (or a grey box), the path on hover,
    and *caption* (HTML, already escaped) under it."""
    thumb = row.get("thumbnail")
    img = png_img(thumb) if thumb else NO_THUMBNAIL
    return (f"<div style='display:inline-block;margin:4px;text-align:center;width:{width}px;"
            f"vertical-align:top' title=\"{escape(row.get('path') or '')}\">{img}<br/>"
            f"<small>{caption}</small></div>")


def gallery_html(errors: Any) -> str:
    cells, explained = [], []
    for _, row in errors.iterrows():
        prob = row.get("probability")
        prob_text = "" if prob is None or prob != prob else f" ({prob:.2f})"
        caption = (f"true: {escape(row['true'])}<br/>"
                   f"predicted: {escape(row['predicted'])}{prob_text}")
        cells.append(gallery_cell(row, caption))
        if row.get("overlay") is not None:
            explained.append(gallery_cell({"thumbnail": row["overlay"], "path": row.get("path")},
                                          caption))
    toggle = ("<details><summary>explain: where the model looked (heatmap of the "
              "predicted class)</summary><div>" + "".join(explained) + "</div></details>"
              if explained else "")
    return "<div>" + "".join(cells) + "</div>" + toggle


def evaluation_head(kind: str, ev: Any) -> List[str]:
    """The top of an evaluation: its title, the UNTRAINED banner, the metrics and notes."""
    title = f"{kind}{': ' + ev.name if ev.name else ''}"
    return ([f"<h4>{escape(title)}</h4>",
             untrained_banner(ev.untrained, "these figures are those of random features"),
             kv_table(ev.metrics)]
            + [f"<p><i>Note: {escape(note)}</i></p>" for note in ev.notes])


def evaluation_html(ev: Evaluation) -> str:
    parts = evaluation_head("Evaluation", ev)
    parts += ["<h5>Per class</h5>", frame_html(ev.per_class),
              "<h5>Confusion matrix</h5>", confusion_plot(ev.confusion)]
    if ev.roc is not None:
        parts.append(curves_plot(ev))
    if ev.errors is not None and len(ev.errors):
        parts += ["<h5>Most confident mistakes</h5>", gallery_html(ev.errors)]
    return "<div>" + "".join(parts) + "</div>"


def comparison_html(comp: Comparison) -> str:
    return "<div><h4>Model comparison</h4>" + frame_html(comp.table) + "</div>"
