"""%dlmodels: the models %%featurize knows, with size, feature dim and local weights.

Parse → ``sparkdl_magics.models.list_models`` → show (a pandas DataFrame).
"""
from __future__ import annotations

from typing import Any

from ..options import MagicCall, MagicSpec, Option, as_str
from .runner import Context

SPEC = MagicSpec(
    name="dlmodels",
    summary="List the pretrained models %%featurize can use: input size, feature dim, "
            "parameters/size, preprocessing, and whether ImageNet weights are in Keras' "
            "local cache.",
    is_cell=False,
    positional=("filter",),
    options=(
        Option("family", None, "only this family (classic, resnet, mobile, efficientnet, "
               "densenet, convnext, nasnet)", as_str),
    ),
)


def run(call: MagicCall, ctx: Context) -> Any:
    from ..models import list_models
    table = list_models()
    if call.positional:
        table = table[table["model"].str.contains(call.positional[0], case=False)]
    if call.options["family"]:
        table = table[table["family"].str.lower() == call.options["family"].lower()]
    return table.reset_index(drop=True)
