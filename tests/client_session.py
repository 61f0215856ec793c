"""What a notebook user of a Connect-only client does, run by ``test_clients.py`` inside
a virtualenv that holds that client (pyspark-client or Databricks Connect) and
sparkdl_magics-connect. Each argument is one step; one ``REPORT {json}`` line at the end.

Steps: ``no-session`` (the first magics with no session: what the user sees),
``env`` (a session from SPARK_REMOTE), ``remote=URL`` (``%dlspark --remote``),
``databricks=URL`` (a DatabricksSession the user made), ``four=FOLDER`` (the four cells
on digit images written there).
"""
import contextlib
import io
import json
import sys
import time

from IPython.core.interactiveshell import InteractiveShell

import pyspark.sql.functions as F  # noqa: F401 - a notebook's first import, before any magic

report = {"python": sys.version_info[:2]}
ip = InteractiveShell.instance(colors="nocolor")


def shown(source):
    """Run a cell as a notebook does; what the user sees (stdout and stderr), and the error."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        result = ip.run_cell(source)
    error = result.error_in_exec or result.error_before_exec
    return buf.getvalue(), (type(error).__name__ if error else None)


def cell(source):
    text, error = shown(source)
    assert error is None, text
    return text


try:
    from pyspark.util import is_remote_only
    report["remote_only"] = is_remote_only()
except ImportError:
    report["remote_only"] = None
cell("%load_ext sparkdl_magics")
for step in sys.argv[1:]:
    name, _, value = step.partition("=")
    if name == "no-session":
        report["no_session"] = [shown("%dlspark"),
                                shown("%%dlload digits\npath: nowhere\n")]
    elif name == "env":
        info = ip.run_line_magic("dlspark", "")
        report["env"] = {"mode": info.mode, "master": info.master}
    elif name == "remote":
        info = ip.run_line_magic("dlspark", f"--remote {value}")
        report["remote"] = {"mode": info.mode, "master": info.master}
    elif name == "databricks":
        from databricks.connect import DatabricksSession
        DatabricksSession.builder.remote(value).getOrCreate()
        info = ip.run_line_magic("dlspark", "")
        report["databricks"] = {"mode": info.mode, "master": info.master}
    elif name == "four":
        from sparkdl_magics.datasets import write_digits
        counts = write_digits(value, per_class=4, size=32)
        cell(f"%%dlload digits\npath: {value}\nsplit: 0.5\nseed: 7\n")
        cell("%%featurize digits -> features\nmodel: MobileNetV3Small\nweights: none\n")
        cell("%%fit features -> clf\nmaxIter: 10\n")
        cell("%evaluate clf -> evaluation")
        evaluation = ip.user_ns["evaluation"]
        report["four"] = {"images": sum(counts.values()),
                          "feature_dim": ip.user_ns["features"].feature_dim,
                          "accuracy": evaluation.metrics["accuracy"],
                          "test_rows": int(evaluation.confusion.to_numpy().sum())}
    else:
        raise SystemExit(f"unknown step {step!r}")
print("REPORT " + json.dumps(report), flush=True)
# the model (server-side state over Connect) stays in the user namespace, as in a kernel
