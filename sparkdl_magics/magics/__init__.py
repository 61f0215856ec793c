"""The IPython magics class. Each method is one line: the work is in the modules.

Every magic lives in its own module here (``SPEC`` + ``run``). Modules import only the
option framework at load time; Spark, Keras and TensorFlow are imported inside ``run``.
Per-magic option defaults are traitlets, so ``%config SparkDLMagics.featurize =
{'batch_size': 64}`` works and is checked against the same option declarations.
"""
from __future__ import annotations

from typing import Any, Optional

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from traitlets import Bool, Dict, Enum, observe

from . import dlapp as _dlapp
from . import dlload as _dlload
from . import dlmodels as _dlmodels
from . import dlspark as _dlspark
from . import evaluate as _evaluate
from . import explain as _explain
from . import featurize as _featurize
from . import finetune as _finetune
from . import fit as _fit
from . import predict as _predict
from .runner import run_magic


def _documented(module: Any):
    """Use the magic's generated help (from its option declarations) as its docstring."""
    def decorate(func):
        func.__doc__ = module.SPEC.help_text()
        return func
    return decorate


def _defaults(name: str) -> Dict:
    return Dict(config=True, help=f"Default options for the {name} magic.")


@magics_class
class SparkDLMagics(Magics):
    """Magics for loading, featurizing, training and evaluating image models on Spark."""

    debug = Bool(False, config=True,
                 help="Show full Python/JVM tracebacks instead of one-line errors.")
    progress = Enum(("auto", "widget", "text", "none"), "auto", config=True,
                    help="How Spark progress is shown: a widget bar, plain text, or nothing "
                         "('auto': a widget inside a Jupyter kernel, else text).")
    dlspark = _defaults("dlspark")
    dlload = _defaults("dlload")
    featurize = _defaults("featurize")
    predict = _defaults("predict")
    fit = _defaults("fit")
    finetune = _defaults("finetune")
    evaluate = _defaults("evaluate")
    explain = _defaults("explain")
    dlmodels = _defaults("dlmodels")
    dlapp = _defaults("dlapp")

    @observe("progress")
    def _progress_changed(self, change: Any) -> None:
        from .. import progress
        progress.configure(mode=change["new"])

    @line_magic("dlspark")
    @_documented(_dlspark)
    def dlspark_magic(self, line: str = "") -> Any:
        return run_magic(_dlspark, self.shell, line, None, self)

    @line_cell_magic("dlload")
    @no_var_expand
    @_documented(_dlload)
    def dlload_magic(self, line: str = "", cell: Optional[str] = None) -> Any:
        return run_magic(_dlload, self.shell, line, cell, self)

    @line_cell_magic("featurize")
    @no_var_expand
    @_documented(_featurize)
    def featurize_magic(self, line: str = "", cell: Optional[str] = None) -> Any:
        return run_magic(_featurize, self.shell, line, cell, self)

    @line_cell_magic("predict")
    @no_var_expand
    @_documented(_predict)
    def predict_magic(self, line: str = "", cell: Optional[str] = None) -> Any:
        return run_magic(_predict, self.shell, line, cell, self)

    @line_cell_magic("fit")
    @no_var_expand
    @_documented(_fit)
    def fit_magic(self, line: str = "", cell: Optional[str] = None) -> Any:
        return run_magic(_fit, self.shell, line, cell, self)

    @line_cell_magic("finetune")
    @no_var_expand
    @_documented(_finetune)
    def finetune_magic(self, line: str = "", cell: Optional[str] = None) -> Any:
        return run_magic(_finetune, self.shell, line, cell, self)

    @line_cell_magic("evaluate")
    @no_var_expand
    @_documented(_evaluate)
    def evaluate_magic(self, line: str = "", cell: Optional[str] = None) -> Any:
        return run_magic(_evaluate, self.shell, line, cell, self)

    @line_cell_magic("explain")
    @no_var_expand
    @_documented(_explain)
    def explain_magic(self, line: str = "", cell: Optional[str] = None) -> Any:
        return run_magic(_explain, self.shell, line, cell, self)

    @line_magic("dlmodels")
    @_documented(_dlmodels)
    def dlmodels_magic(self, line: str = "") -> Any:
        return run_magic(_dlmodels, self.shell, line, None, self)

    @line_magic("dlapp")
    @_documented(_dlapp)
    def dlapp_magic(self, line: str = "") -> Any:
        return run_magic(_dlapp, self.shell, line, None, self)
