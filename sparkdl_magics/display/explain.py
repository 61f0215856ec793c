"""HTML for an Explanation: a grid of image | heatmap overlay | labels, mistakes first.

Renders what :mod:`sparkdl_magics.explanation` computed (thumbnails and overlays are
PNGs on the result). Cells shrink as the grid grows, so 12 images show large and 48
still fit a notebook column in a few rows; a wrong prediction has a red frame.
"""
from __future__ import annotations

from typing import Any

from ..results import Explanation
from .html import escape, png_img, untrained_banner

#: Side (px) of each picture in a cell: large for a few images, smaller for many.
LARGE, SMALL = 128, 88
MANY = 16
NO_IMAGE = "<div style='width:{0}px;height:{0}px;background:#eee;display:inline-block'></div>"


def _picture(png: Any, side: int, title: str) -> str:
    if not png:
        return NO_IMAGE.format(side)
    return png_img(bytes(png), style=f"width:{side}px;height:auto;image-rendering:auto",
                   title=title)


def _caption(row: Any) -> str:
    prob = row.get("probability")
    prob_text = "" if prob is None or prob != prob else f" {prob:.2f}"
    lines = [f"<b>{escape(row['predicted'])}</b>{prob_text}"]
    if row.get("true") is not None:
        lines.append(f"true: {escape(row['true'])}")
    if row.get("explained") not in (None, row["predicted"]):
        lines.append(f"map of: {escape(row['explained'])}")
    if row.get("error"):
        lines.append(f"<span style='color:#b00'>{escape(row['error'])}</span>")
    return "<br/>".join(lines)


def explanation_html(ex: Explanation) -> str:
    side = LARGE if len(ex.rows) <= MANY else SMALL
    cells = []
    for _, row in ex.rows.iterrows():
        wrong = row.get("correct") is False
        border = "2px solid #c00" if wrong else "1px solid #ddd"
        path = escape(row.get("path") or "")
        cells.append(
            f"<div style='border:{border};padding:3px;text-align:center' title=\"{path}\">"
            f"{_picture(row.get('thumbnail'), side, 'image')} "
            f"{_picture(row.get('overlay'), side, f'{ex.method} heatmap')}"
            f"<div style='font-size:{12 if side == LARGE else 11}px;line-height:1.25'>"
            f"{_caption(row)}</div></div>")
    wrong = sum(1 for c in ex.rows["correct"] if c is False)
    head = (f"<h4>Explanation: {escape(ex.method)} heatmaps of {len(ex.rows)} images"
            f"{' (' + escape(ex.model_name) + ')' if ex.model_name else ''}</h4>"
            f"<p>class shown: {escape(ex.target)}; {wrong} mistake{'s' if wrong != 1 else ''}"
            " first (red frame); heatmap: blue = no evidence, red = most evidence</p>")
    grid = (f"<div style='display:grid;grid-template-columns:repeat(auto-fill,"
            f"minmax({2 * side + 16}px,1fr));gap:6px'>" + "".join(cells) + "</div>")
    notes = "".join(f"<p><i>Note: {escape(n)}</i></p>" for n in ex.notes)
    banner = untrained_banner(ex.untrained, "the heatmaps show where random features fire")
    return "<div>" + head + banner + notes + grid + "</div>"
