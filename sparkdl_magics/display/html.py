"""Shared pieces of every renderer: escaped tables, inline figures, the UNTRAINED banner.

Everything here turns data into HTML; nothing computes or touches Spark. Every string
that may come from files, labels or options goes through ``html.escape``.
"""
from __future__ import annotations

import base64
import html
import io
from typing import Any, Dict


def escape(value: Any) -> str:
    """Any value as HTML text, quotes escaped too (safe inside attributes)."""
    return html.escape(str(value), quote=True)


def png_img(png: bytes, **attributes: str) -> str:
    """PNG bytes as an inline ``<img>`` (attribute values are escaped)."""
    data = base64.b64encode(png).decode("ascii")
    extra = "".join(f" {k}='{escape(v)}'" for k, v in attributes.items())
    return f"<img src='data:image/png;base64,{data}'{extra}/>"


def figure_png(fig: Any) -> str:
    """A matplotlib figure (from :func:`new_figure`: not kept by pyplot) as an <img>."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=90)
    return png_img(buf.getvalue())


def new_figure(width: float = 4.5, height: float = 3.2) -> Any:
    """A figure outside pyplot's state: no global figure list, no backend choice."""
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height))


def kv_table(items: Dict[str, Any]) -> str:
    """A two-column table of names and values (floats to 4 significant digits)."""
    rows = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th>"
                   f"<td style='text-align:left'>{escape(_fmt(v))}</td></tr>"
                   for k, v in items.items())
    return f"<table>{rows}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def frame_html(df: Any, float_format: str = "{:.4f}") -> str:
    """A pandas frame as escaped HTML (pandas escapes cell text by default)."""
    return df.to_html(index=False, escape=True, float_format=float_format.format, border=0)


def untrained_banner(untrained: bool, consequence: str) -> str:
    """The red UNTRAINED line every result of an untrained backbone carries."""
    if not untrained:
        return ""
    return ("<p style='color:#b00;font-weight:bold'>UNTRAINED: the features come from a "
            f"model with random weights (weights: none); {escape(consequence)}.</p>")
