"""%dlmodels: list the models the featurizer knows (issue 4).

Placeholder until its issue lands: the magic is registered so the framework and help
work, and running it says it is not available yet.
"""
from __future__ import annotations

from typing import Any

from ..errors import SparkDLError
from ..options import MagicCall, MagicSpec
from .runner import Context

SPEC = MagicSpec(name="dlmodels", summary="%dlmodels: list the models the featurizer knows (issue 4). Not implemented yet.", options=(),
                 positional=("name",), is_cell=False)


def run(call: MagicCall, ctx: Context) -> Any:
    raise SparkDLError("%dlmodels is not implemented yet")
