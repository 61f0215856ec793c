"""The IPython magics class. Each method is one line: the work is in the modules.

Per-magic option defaults are traitlets, so ``%config SparkDLMagics.featurize =
{'batch_size': 64}`` works and is checked against the same option declarations.
"""
from __future__ import annotations

from typing import Any, Optional

from IPython.core.magic import Magics, line_magic, magics_class
from traitlets import Bool, Dict

from . import dlspark as _dlspark
from .runner import run_magic


def _documented(module: Any):
    """Use the magic's generated help (from its option declarations) as its docstring."""
    def decorate(func):
        func.__doc__ = module.SPEC.help_text()
        return func
    return decorate


@magics_class
class SparkDLMagics(Magics):
    """Magics for loading, featurizing, training and evaluating image models on Spark."""

    debug = Bool(False, config=True,
                 help="Show full Python/JVM tracebacks instead of one-line errors.")
    dlspark = Dict(config=True, help="Default options for %dlspark.")

    @line_magic("dlspark")
    @_documented(_dlspark)
    def dlspark_magic(self, line: str = "") -> Any:
        return run_magic(_dlspark, self.shell, line, None, self)
