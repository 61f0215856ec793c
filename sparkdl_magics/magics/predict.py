"""%%predict: top-K ImageNet labels with a pretrained model (issue 4).

Placeholder until its issue lands: the magic is registered so the framework and help
work, and running it says it is not available yet.
"""
from __future__ import annotations

from typing import Any

from ..errors import SparkDLError
from ..options import MagicCall, MagicSpec
from .runner import Context

SPEC = MagicSpec(name="predict", summary="%%predict: top-K ImageNet labels with a pretrained model (issue 4). Not implemented yet.", options=(),
                 positional=("name",), is_cell=True)


def run(call: MagicCall, ctx: Context) -> Any:
    raise SparkDLError("%predict is not implemented yet")
