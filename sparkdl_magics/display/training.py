"""HTML for a FittedModel: chosen params, the grid (table + plot), objective history."""
from __future__ import annotations

import html
from typing import Any, Optional

from ..results import FittedModel
from .html import figure_png, frame_html, kv_table, new_figure, untrained_banner


def grid_plot(grid: Any, metric: str) -> Optional[str]:
    keys = [c for c in grid.columns if c not in ("chosen", metric) and not c.endswith("_std")]
    if grid is None or len(grid) < 2:
        return None
    fig = new_figure()
    ax = fig.add_subplot(111)
    scores = grid[metric].to_numpy(dtype=float)
    numeric = len(keys) == 1 and all(isinstance(v, (int, float)) for v in grid[keys[0]])
    if numeric:
        x = grid[keys[0]].to_numpy(dtype=float)
        order = x.argsort()
        ax.plot(x[order], scores[order], marker="o")
        ax.set_xlabel(keys[0])
        if (x > 0).all() and x.max() / max(x.min(), 1e-300) >= 100:
            ax.set_xscale("log")
        best = grid["chosen"].to_numpy()
        ax.scatter(x[best], scores[best], s=120, facecolors="none", edgecolors="red",
                   label="chosen")
    else:
        labels = [", ".join(f"{k}={row[k]}" for k in keys) for _, row in grid.iterrows()]
        colors = ["tab:red" if c else "tab:blue" for c in grid["chosen"]]
        ax.barh(range(len(scores)), scores, color=colors)
        ax.set_yticks(range(len(scores)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xlabel(metric)
    if numeric:
        ax.set_ylabel(metric)
        ax.legend(loc="best", fontsize=8)
    ax.set_title("grid search")
    return figure_png(fig)


def history_plot(history: Any) -> Optional[str]:
    if not history or len(history) < 2:
        return None
    fig = new_figure(4.0, 2.8)
    ax = fig.add_subplot(111)
    ax.plot(range(len(history)), history, marker=".")
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective (loss)")
    ax.set_title("training objective")
    return figure_png(fig)


def fitted_model_html(model: FittedModel) -> str:
    info = {"classifier": model.classifier, "classes": ", ".join(model.classes)}
    if model.model_name:
        info["features"] = f"{model.model_name} ({model.num_features}-dim)"
    elif model.num_features:
        info["features"] = f"{model.num_features}-dim"
    if model.train_count:
        info["training rows"] = model.train_count
    if model.tuning:
        info["tuning"] = model.tuning
    for key, value in model.params.items():
        info[f"param {key}"] = value
    parts = [f"<h4>FittedModel: {html.escape(model.classifier)}</h4>",
             untrained_banner(model.untrained, "its predictions mean nothing"), kv_table(info)]
    for note in model.notes:
        parts.append(f"<p><i>Note: {html.escape(note)}</i></p>")
    if model.grid is not None:
        parts.append("<h5>Grid search</h5>")
        parts.append(frame_html(model.grid))
        plot = grid_plot(model.grid, model.metric)
        if plot:
            parts.append(plot)
    plot = history_plot(model.objective_history)
    if plot:
        parts.append(plot)
    return "<div>" + "".join(parts) + "</div>"
