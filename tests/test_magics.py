"""Loading the extension: fast, lazy, reloadable, with help and one-line errors."""
import json
import subprocess
import sys

import pytest
from IPython.core.error import UsageError

import sparkdl_magics
from sparkdl_magics.errors import DataError
from sparkdl_magics.magics import runner
from sparkdl_magics.options import MagicSpec, Option, as_int


def test_load_ext_imports_no_heavy_modules():
    """What keeps loading fast is importing none of these; how fast it is, on this
    machine, is benchmarks/load_ext.py's to say (a timing fails on a busy machine)."""
    code = r"""
import json, sys
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "sparkdl_magics")
heavy = [m for m in ("tensorflow", "keras", "pyspark", "matplotlib") if m in sys.modules]
print(json.dumps({"heavy": heavy, "magics": sorted(ip.magics_manager.magics["line"])}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert "dlspark" in report["magics"]


def test_unload_and_reload_extension(ip):
    ip.run_line_magic("unload_ext", "sparkdl_magics")
    assert "dlspark" not in ip.magics_manager.magics["line"]
    ip.run_line_magic("load_ext", "sparkdl_magics")
    assert "dlspark" in ip.magics_manager.magics["line"]
    ip.run_line_magic("reload_ext", "sparkdl_magics")
    assert "dlspark" in ip.magics_manager.magics["line"]


def test_magic_help_lists_its_options(ip, capsys):
    ip.run_cell("%dlspark?")
    out = capsys.readouterr().out
    for name in ("master", "remote", "conf", "stop", "--debug"):
        assert name in out
    assert "[default: (none)]" in out


def test_unknown_option_is_one_line_usage_error(ip):
    with pytest.raises(UsageError) as err:
        ip.run_cell("%dlspark --mastr local[2]")
    assert str(err.value).count("\n") == 0
    assert "did you mean 'master'" in str(err.value)


class _StoringMagic:
    """A minimal magic module to exercise the runner's storage contract."""

    SPEC = MagicSpec("storing", "test", (Option("fail", 0, "", as_int()),),
                     positional=("name",), min_positional=1)

    @staticmethod
    def run(call, ctx):
        ctx.store(call.positional[0], {"value": 1})
        if call.options["fail"]:
            raise DataError("the data is bad")
        return "done"


def test_results_are_stored_under_the_given_name(ip):
    ip.user_ns.pop("result_x", None)
    assert runner.run_magic(_StoringMagic, ip, "result_x") == "done"
    assert ip.user_ns["result_x"] == {"value": 1}


def test_failed_magic_stores_nothing_and_says_why(ip):
    ip.user_ns.pop("result_y", None)
    with pytest.raises(UsageError, match=r"^%%storing: the data is bad$"):
        runner.run_magic(_StoringMagic, ip, "result_y --fail 1")
    assert "result_y" not in ip.user_ns


def test_debug_flag_shows_the_original_error(ip):
    with pytest.raises(DataError):
        runner.run_magic(_StoringMagic, ip, "result_z --fail 1 --debug")


def test_config_sets_magic_defaults(ip):
    ip.run_line_magic("config", "SparkDLMagics.dlspark = {'stop': 'maybe'}")
    try:
        with pytest.raises(UsageError, match="option 'stop': expected true or false"):
            ip.run_cell("%dlspark")
    finally:
        ip.run_line_magic("config", "SparkDLMagics.dlspark = {}")


def test_lazy_public_api():
    assert sparkdl_magics.OptionError.__name__ == "OptionError"
    with pytest.raises(AttributeError):
        sparkdl_magics.no_such_thing


def test_config_progress_mode_reaches_the_progress_settings(ip):
    from sparkdl_magics import progress
    before = progress.settings.mode
    try:
        ip.run_line_magic("config", "SparkDLMagics.progress = 'text'")
        assert progress.settings.mode == "text"
        try:  # IPython reports the TraitError itself; the setting must not change
            ip.run_line_magic("config", "SparkDLMagics.progress = 'sparkles'")
        except Exception:
            pass
        assert progress.settings.mode == "text"
    finally:
        progress.configure(mode=before)


def test_failing_magic_fails_the_notebook_cell_with_one_line(tmp_path):
    """nbval/nbclient must see a failed magic as a failed cell, shown as one line."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext sparkdl_magics"),
                nbformat.v4.new_code_cell("%dlspark --mastr local[1]")]
    with pytest.raises(CellExecutionError):
        NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    (error,) = [o for o in nb.cells[1].outputs if o["output_type"] == "error"]
    assert error["ename"] == "MagicError"
    assert "did you mean 'master'" in error["evalue"]
    assert len(error["traceback"]) == 1
