"""What the progress sources and the stop button read of a cell's scope: the
:class:`~.scope.CellScope` seen through a protocol, so those modules need not import the
scope module that imports them."""
from __future__ import annotations

import threading
from typing import List, Optional, Protocol

from .snapshot import Work


class Scoped(Protocol):
    """The parts of a :class:`~.scope.CellScope` its sources and SIGINT handler use."""

    label: str
    connect: bool
    works: List[Work]
    active_work: Optional[Work]
    user_interrupted: bool
    _stop: threading.Event

    def cancel(self) -> None: ...


__all__ = ["Scoped"]
