"""HTML for a FineTunedModel, and the live per-epoch view of ``%%finetune``.

The renderer draws the model's data (summary, per-epoch history table, loss/accuracy
curves). :class:`EpochView` shows epochs while the barrier stage runs: in a notebook one
display updated in place (table + small plot), in a terminal one text line per epoch.
"""
from __future__ import annotations

import html
from typing import Any, Dict, List, Optional

from ..results import FineTunedModel
from .html import figure_png, frame_html, kv_table, new_figure, untrained_banner


def epoch_line(record: Dict[str, Any], epochs: Optional[int] = None) -> str:
    """``epoch 2/5: loss 0.4123 accuracy 0.8750 | val_loss ... (3.1 s, 41 img/s/worker)``."""
    text = f"epoch {record['epoch']}" + (f"/{epochs}" if epochs else "")
    text += f": loss {record['loss']:.4f} accuracy {record['accuracy']:.4f}"
    if record.get("val_loss") is not None:
        text += f" | val_loss {record['val_loss']:.4f} val_accuracy {record['val_accuracy']:.4f}"
    return text + (f" ({record['seconds']:.1f} s, "
                   f"{record['images_per_s_per_worker']:.0f} img/s/worker)")


def history_plot(history: Any) -> Optional[str]:
    """Loss and accuracy per epoch (train, and validation when held out)."""
    if history is None or len(history) < 1:
        return None
    fig = new_figure(7.0, 2.6)
    for i, metric in enumerate(("loss", "accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(history["epoch"], history[metric], marker="o", label="train")
        if f"val_{metric}" in history.columns:
            ax.plot(history["epoch"], history[f"val_{metric}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend(fontsize=7)
    return figure_png(fig)


def finetuned_model_html(model: FineTunedModel) -> str:
    info = {"model": model.classifier, "classes": ", ".join(model.classes),
            "workers": model.workers, "unfrozen backbone layers": model.unfrozen_layers,
            "training images": model.train_count, "seconds": model.seconds,
            "model file": model.model_file}
    for key, value in model.params.items():
        info[f"param {key}"] = value
    parts = [f"<h4>FineTunedModel: {html.escape(model.classifier)}</h4>",
             untrained_banner(model.untrained, "it started from random weights"),
             kv_table(info)]
    for note in model.notes:
        parts.append(f"<p><i>Note: {html.escape(note)}</i></p>")
    if model.history is not None and len(model.history):
        parts.append("<h5>Epochs</h5>")
        parts.append(frame_html(model.history))
        plot = history_plot(model.history)
        if plot:
            parts.append(plot)
    return "<div>" + "".join(parts) + "</div>"


class EpochView:
    """Epochs as they finish: a display updated in place (``widget``), lines (``text``),
    or nothing (``none``). Called from the driver's polling thread."""

    def __init__(self, mode: str, epochs: int):
        self.mode, self.epochs = mode, epochs
        self.records: List[Dict[str, Any]] = []
        self._handle = None

    def __call__(self, record: Dict[str, Any]) -> None:
        self.records.append(record)
        if self.mode == "text":
            print(f"sparkdl_magics: {epoch_line(record, self.epochs)}", flush=True)
        elif self.mode == "widget":
            from IPython.display import HTML, display
            import pandas as pd
            history = pd.DataFrame(self.records)
            body = HTML("<div>" + "<br/>".join(html.escape(epoch_line(r, self.epochs))
                                               for r in self.records)
                        + (history_plot(history) or "") + "</div>")
            if self._handle is None:
                self._handle = display(body, display_id=True)
            else:
                self._handle.update(body)


__all__ = ["finetuned_model_html", "history_plot", "epoch_line", "EpochView"]
