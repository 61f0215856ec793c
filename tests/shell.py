"""An IPython shell for tests whose run_cell raises the cell's error (as in jupysql).

Without this, a magic that fails prints a traceback and the test passes anyway.
"""
from __future__ import annotations

from IPython.core.interactiveshell import InteractiveShell


class RaisingShell(InteractiveShell):
    def run_cell(self, *args, **kwargs):
        result = super().run_cell(*args, **kwargs)
        result.raise_error()
        return result


def make_shell() -> RaisingShell:
    shell = RaisingShell.instance()
    if "sparkdl_magics" not in shell.extension_manager.loaded:
        shell.run_line_magic("load_ext", "sparkdl_magics")
    return shell
