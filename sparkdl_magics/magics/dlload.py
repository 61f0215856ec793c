"""%%dlload: load a labelled image collection into Spark (issue 3).

Placeholder until its issue lands: the magic is registered so the framework and help
work, and running it says it is not available yet.
"""
from __future__ import annotations

from typing import Any

from ..errors import SparkDLError
from ..options import MagicCall, MagicSpec
from .runner import Context

SPEC = MagicSpec(name="dlload", summary="%%dlload: load a labelled image collection into Spark (issue 3). Not implemented yet.", options=(),
                 positional=("name",), is_cell=True)


def run(call: MagicCall, ctx: Context) -> Any:
    raise SparkDLError("%dlload is not implemented yet")
