"""HTML for an :class:`~sparkdl_magics.results.ImageSet`: summary, class bars, previews.

Everything shown comes from the ImageSet's own data (``counts``, ``invalid``,
``skipped``, ``previews``, made by the loader); every string from files or labels is escaped.
The bar chart is plain HTML/CSS, so it renders in any notebook front end and in
exported HTML without JavaScript.
"""
from __future__ import annotations

from typing import Any, List

from ..results import ImageSet
from .html import escape as _e
from .html import png_img

SPLIT_COLOURS = {"train": "#4c78a8", "validation": "#f58518", "test": "#54a24b",
                 "images": "#4c78a8"}
MAX_CLASSES_SHOWN = 30
MAX_INVALID_SHOWN = 10
#: The preview thumbnails' height in the display (they are stored at up to 96 px).
THUMBNAIL_PX = 40


def render_html(images: ImageSet) -> str:
    parts = [f"<div class='sparkdl-imageset'><p><b>ImageSet</b>: {_e(images.summary())}</p>",
             f"<p style='color:#666;font-size:smaller'>source: {_e(images.source)}</p>",
             _bars(images), _previews(images), _invalid(images), _skipped(images), "</div>"]
    return "".join(parts)


def _bars(images: Any) -> str:
    counts = images.counts
    splits = [c for c in counts.columns if c in SPLIT_COLOURS]
    top = max(int(counts["total"].max()), 1) if len(counts) else 1
    legend = " ".join(f"<span style='display:inline-block;width:10px;height:10px;"
                      f"background:{SPLIT_COLOURS[s]}'></span> {_e(s)}" for s in splits)
    rows: List[str] = []
    for name, row in list(counts.iterrows())[:MAX_CLASSES_SHOWN]:
        segs = "".join(
            f"<div title='{_e(s)}: {int(row[s])}' style='width:{300 * int(row[s]) / top:.1f}px;"
            f"background:{SPLIT_COLOURS[s]};height:14px'></div>" for s in splits if int(row[s]))
        bad = int(row.get("invalid", 0))
        note = f" <span style='color:#b00'>({bad} invalid)</span>" if bad else ""
        per_split = (f" <span style='color:#666'>{_e(_split_text(row, splits))}</span>"
                     if len(splits) > 1 else "")
        rows.append(
            f"<tr><td style='text-align:right;padding-right:6px'>{_e(name)}</td>"
            f"<td style='text-align:left'><div style='display:flex'>{segs}</div></td>"
            f"<td style='text-align:left;white-space:nowrap'>{int(row['total'])}{per_split}"
            f"{note}</td></tr>")
    more = len(counts) - MAX_CLASSES_SHOWN
    if more > 0:
        rows.append(f"<tr><td colspan=3>… and {more} more classes (see .counts)</td></tr>")
    return (f"<div style='font-size:smaller'>{legend}</div>"
            f"<table class='sparkdl-counts'>{''.join(rows)}</table>")


def _split_text(row: Any, splits: List[str]) -> str:
    """The per-split counts of one class, e.g. ``train 40 · test 10``."""
    return " · ".join(f"{s} {int(row[s])}" for s in splits)


def _previews(images: ImageSet) -> str:
    """One compact row per class: its name at the left, small thumbnails after it."""
    rows = []
    for name, items in list(images.previews.items())[:MAX_CLASSES_SHOWN]:
        cells = "".join(png_img(png, title=path, alt=path.rsplit("/", 1)[-1],
                                style=f"margin:1px;max-height:{THUMBNAIL_PX}px;"
                                      f"max-width:{2 * THUMBNAIL_PX}px;vertical-align:middle")
                        for path, png in items if png)
        label = name if name else "(unlabelled)"
        rows.append(f"<tr><td style='text-align:right;padding:0 6px 0 0;font-weight:bold;"
                    f"white-space:nowrap'>{_e(label)}</td>"
                    f"<td style='text-align:left;padding:0'>{cells}</td></tr>")
    if not rows:
        return ""
    more = len(images.previews) - MAX_CLASSES_SHOWN
    if more > 0:
        rows.append(f"<tr><td colspan=2>… and {more} more classes (see .thumbnails())</td></tr>")
    return ("<table class='sparkdl-previews' style='border-collapse:collapse'>"
            + "".join(rows) + "</table>")


def _invalid(images: Any) -> str:
    return _files_with_reasons(images.invalid, "invalid", "invalid file(s), not loaded")


def _skipped(images: Any) -> str:
    """The files that are no images (system files, others), each with its reason."""
    return _files_with_reasons(images.skipped, "skipped", "file(s) skipped, not images")


def _files_with_reasons(files: Any, attribute: str, what: str) -> str:
    """A folded list of (path, reason) rows: the first few, and how many more."""
    if files is None or not len(files):
        return ""
    items = "".join(f"<li>{_e(r.path)}: {_e(r.reason)}</li>"
                    for r in files.head(MAX_INVALID_SHOWN).itertuples())
    more = len(files) - MAX_INVALID_SHOWN
    tail = f"<li>… {more} more (see .{attribute})</li>" if more > 0 else ""
    return (f"<details><summary>{len(files)} {what}</summary>"
            f"<ul>{items}{tail}</ul></details>")
