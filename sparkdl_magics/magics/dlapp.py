"""%dlapp: the transfer-learning widget app (load → featurize → fit → evaluate).

``%dlapp`` shows a fresh :class:`~sparkdl_magics.app.App`; ``%dlapp app --path
data/flowers --model ResNet50`` also keeps it as ``app`` (its ``.results``,
``.steps``, ``.code()`` stay reachable as data).
"""
from __future__ import annotations

from typing import Any

from .. import defaults
from ..options import MagicCall, MagicSpec, Option, as_str
from .common import PRECISION
from .runner import Context

SPEC = MagicSpec(
    name="dlapp",
    summary="Show the transfer-learning app: pick images, a model and a classifier, Run, and "
            "see the preview, metrics, confusion matrix and misclassified images in tabs.",
    positional=("name",),
    is_cell=False,
    options=(
        Option("path", "", "image folder, glob or URI to start the form with", as_str),
        Option("model", defaults.MODEL, "model to start the form with (see %dlmodels)", as_str),
        Option("classifier", defaults.CLASSIFIER, "classifier to start the form with", as_str),
        PRECISION,
    ),
)


def run(call: MagicCall, ctx: Context) -> Any:
    from ..app import App
    opts = call.options
    app = App(path=opts["path"] or "", model=opts["model"], classifier=opts["classifier"],
              precision=opts["precision"])
    if call.positional:
        ctx.store(call.positional[0], app)
    return app
