"""How progress is shown: the mode (widget, text, none, auto) and its timings."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

MODES = ("auto", "widget", "text", "none")


@dataclass
class Settings:
    """Module-wide progress settings (``configure`` changes them)."""

    mode: str = "auto"
    poll_interval: float = 0.5  # seconds between status-tracker polls / view refreshes
    text_interval: float = 5.0  # text mode: at most one progress line this often
    text_delay: float = 2.0  # text mode: no running lines for cells shorter than this


settings = Settings(mode=os.environ.get("SPARKDL_PROGRESS", "auto").strip().lower() or "auto")

def configure(mode: Optional[str] = None, poll_interval: Optional[float] = None,
              text_interval: Optional[float] = None, text_delay: Optional[float] = None) -> Settings:
    """Change how progress is shown: ``configure(mode='text')``; returns the settings."""
    if mode is not None:
        mode = str(mode).strip().lower()
        if mode not in MODES:
            from ..errors import OptionError
            raise OptionError(f"progress mode {mode!r}: expected one of {', '.join(MODES)}")
        settings.mode = mode
    if poll_interval is not None:
        settings.poll_interval = float(poll_interval)
    if text_interval is not None:
        settings.text_interval = float(text_interval)
    if text_delay is not None:
        settings.text_delay = float(text_delay)
    return settings


def resolve_mode(mode: Optional[str] = None) -> str:
    """``widget``, ``text`` or ``none``: *mode* or the setting, with ``auto`` resolved."""
    mode = (mode or settings.mode or "auto").lower()
    if mode not in MODES:
        mode = "auto"
    if mode != "auto":
        return mode
    return "widget" if _widget_frontend() else "text"


def _widget_frontend() -> bool:
    """True inside a Jupyter kernel (comms available) with ipywidgets importable."""
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        return False
    if shell is None or getattr(shell, "kernel", None) is None:
        return False  # terminal IPython, plain Python, test shells
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
