"""Spark Connect-only clients as their users have them: pyspark-client (Python 3.11, no
JVM) and Databricks Connect 19.3 (Python 3.12), each in a fresh virtualenv made with the
README's commands (``client_venvs.py``) next to sparkdl_magics-connect, against a
separate Spark Connect server started with Spark's own script.

A user's notebook runs in ``client_session.py`` (an IPython shell in that venv). A fake
``java`` on its PATH records any attempt to start Java. Slow: the first run makes each
venv (TensorFlow: minutes); see client_venvs.py for what is kept between runs.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from client_venvs import README_COMMANDS, ClientVenv, build_wheels, find_python
from test_packaging import REPO

SCRIPT = Path(__file__).with_name("client_session.py")
#: Seconds an IPython process holding a Connect-trained model may take to exit.
EXIT_WITHIN_S = 30


def _toml(path: Path) -> dict:
    import tomllib
    return tomllib.loads(path.read_text())


def test_the_connect_distribution_requires_what_the_plain_one_does_but_pyspark():
    plain = _toml(REPO / "pyproject.toml")["project"]
    connect = _toml(REPO / "packaging" / "connect" / "pyproject.toml")["project"]
    without_spark = [r for r in plain["dependencies"] if not r.startswith("pyspark")]
    assert len(without_spark) == len(plain["dependencies"]) - 1
    assert connect["dependencies"] == without_spark
    assert connect["optional-dependencies"]["gpu"] == plain["optional-dependencies"]["gpu"]
    assert connect["requires-python"] == plain["requires-python"]
    assert connect["name"] == "sparkdl_magics-connect"


def test_the_readme_shows_the_install_commands_these_tests_run():
    readme = (REPO / "README.md").read_text()
    for commands in README_COMMANDS.values():
        for command in commands:
            assert command in readme, command


def test_a_full_pyspark_is_not_a_connect_only_client():
    from sparkdl_magics import clients
    assert clients.connect_only_client() is None and clients.classic_available()


# --------------------------------------------------------------------------- the venvs

@pytest.fixture(scope="session")
def wheels(tmp_path_factory):
    return build_wheels(tmp_path_factory.mktemp("wheels"))


def _fake_java(root: Path) -> Path:
    """A ``java`` that records being run (and fails, like a machine without Java)."""
    folder = root / "fakebin"
    folder.mkdir(exist_ok=True)
    java = folder / "java"
    java.write_text(f"#!/bin/sh\necho \"$@\" >> {root / 'java-was-run'}\nexit 1\n")
    java.chmod(0o755)
    return folder


def _notebook(venv: ClientVenv, root: Path, *steps: str, **env: str) -> dict:
    """client_session.py's steps in *venv*; its report. The process must exit by itself
    within EXIT_WITHIN_S seconds of its last line (it holds a Connect model by then)."""
    fake = _fake_java(root)
    env = {"PATH": f"{fake}{os.pathsep}{venv.bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "IPYTHONDIR": str(root / "ipython"), **env}
    from test_packaging import _env
    with open(root / "stderr.txt", "w") as errors:
        # through IPython's console, as a scripted notebook run: its exit hook clears the
        # namespace (the fitted model with it) at exit, as a kernel's does
        proc = subprocess.Popen([str(venv.bin / "ipython"), "--quick", "--no-banner",
                                 "--colors=nocolor", str(SCRIPT), *steps], cwd=root,
                                env={k: v for k, v in _env(**env).items() if k != "JAVA_HOME"},
                                stdout=subprocess.PIPE, stderr=errors, text=True)
        report = None
        for line in proc.stdout:
            if line.startswith("REPORT "):
                report = json.loads(line[len("REPORT "):])
                break
        try:
            proc.wait(timeout=EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"{venv.name}: the process did not exit within {EXIT_WITHIN_S} s of "
                        f"its last line (steps {steps})")
    stderr = (root / "stderr.txt").read_text()
    assert proc.returncode == 0 and report is not None, stderr[-4000:]
    assert not (root / "java-was-run").exists(), "Java was started on a Connect-only client"
    report["stderr"] = stderr
    return report


def _one_line_how_to_attach(seen, magic: str) -> str:
    text, error = seen
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # the error name is shown in red
    lines = [line for line in text.splitlines() if line.strip()]
    assert error is not None and len(lines) == 1, text
    assert lines[0].startswith(f"MagicError: {magic}: no Spark session: "), text
    assert "%dlspark --remote sc://" in lines[0] and "SPARK_REMOTE" in lines[0], text
    assert "Traceback" not in text and "pyspark.core" not in text
    return lines[0]


# ----------------------------------------------------------------- pyspark-client, 3.11

@pytest.fixture(scope="session")
def pyspark_client_venv(wheels):
    python = find_python(f"{sys.version_info[0]}.{sys.version_info[1]}") or sys.executable
    return ClientVenv("pyspark-client", python, README_COMMANDS["pyspark-client"],
                      wheels["connect"]).ensure()


@pytest.mark.slow
def test_pyspark_client_install_keeps_the_client(pyspark_client_venv):
    venv = pyspark_client_venv
    installed = venv.checked_packages()
    assert {n for n in installed if "spark" in n} == {"pyspark-client", "sparkdl_magics-connect"}
    done = venv.run(["-c", "from pyspark.util import is_remote_only; print(is_remote_only())"],
                    cwd=venv.path)
    assert done.stdout.strip() == "True", done.stderr


@pytest.mark.slow
@pytest.mark.connect
def test_pyspark_client_four_cells_no_session_line_and_spark_remote(pyspark_client_venv,
                                                                    session_pool, tmp_path):
    session_pool.close()  # the suite's separate server, whose workers run this Python
    url = session_pool.remote_url()
    (tmp_path / "a").mkdir()
    report = _notebook(pyspark_client_venv, tmp_path / "a", "no-session", f"remote={url}",
                       f"four={tmp_path / 'digits'}")
    assert report["remote_only"] is True
    line = _one_line_how_to_attach(report["no_session"][0], "%dlspark")
    assert "pyspark-client" in line
    _one_line_how_to_attach(report["no_session"][1], "%%dlload")
    assert report["remote"]["mode"] == "connect" and report["remote"]["master"].startswith(url)
    four = report["four"]
    assert four["images"] == 40 and four["feature_dim"] == 576 and four["test_rows"] > 0
    assert 0.0 <= four["accuracy"] <= 1.0
    # SPARK_REMOTE (pyspark's own setting) is the session, with no %dlspark line
    (tmp_path / "b").mkdir()
    report = _notebook(pyspark_client_venv, tmp_path / "b", "env", SPARK_REMOTE=url)
    assert report["env"]["mode"] == "connect" and report["env"]["master"].startswith(url)


# ------------------------------------------------------------- Databricks Connect, 3.12

PY312 = find_python("3.12")
needs_312 = pytest.mark.skipif(PY312 is None, reason="no Python 3.12 interpreter here "
                               "(python3.12 on PATH or ~/.pyenv/versions/3.12.*)")


@pytest.fixture(scope="module")
def server_312(wheels, tmp_path_factory):
    """A separate Connect server (this Spark) whose Python workers run 3.12: a venv with
    the plain install (pyspark of the server's version), as Databricks Connect needs."""
    import pyspark
    from connect_server import ConnectServer
    workers = ClientVenv("workers-3.12", PY312,
                         [f"pip install sparkdl_magics pyspark=={pyspark.__version__}"],
                         wheels["plain"]).ensure()
    server = ConnectServer(tmp_path_factory.mktemp("server312"), python=str(workers.bin / "python"))
    server.start()
    try:
        yield server, workers
    finally:
        server.stop()


@pytest.fixture(scope="module")
def databricks_venv(wheels):
    return ClientVenv("databricks-connect", PY312, README_COMMANDS["databricks-connect"],
                      wheels["connect"]).ensure()


@needs_312
@pytest.mark.slow
def test_databricks_connect_install_keeps_the_client(databricks_venv):
    venv = databricks_venv
    installed = venv.checked_packages()
    assert "databricks-connect" in installed and "sparkdl_magics-connect" in installed
    assert "pyspark" not in installed and "pyspark-client" not in installed
    done = venv.run(["-c", "import pyspark, databricks.connect; print(pyspark.__file__)"],
                    cwd=venv.path)
    assert done.returncode == 0, done.stderr


@needs_312
@pytest.mark.slow
@pytest.mark.connect
def test_databricks_connect_session_four_cells_no_session_line_and_exit(databricks_venv,
                                                                        server_312, tmp_path):
    server, _ = server_312
    report = _notebook(databricks_venv, tmp_path, "no-session", f"databricks={server.url}",
                       f"four={tmp_path / 'digits'}")
    assert report["python"] == [3, 12]
    line = _one_line_how_to_attach(report["no_session"][0], "%dlspark")
    assert "databricks-connect" in line and "DatabricksSession" in line
    _one_line_how_to_attach(report["no_session"][1], "%%dlload")
    assert report["databricks"]["mode"] == "connect"
    assert report["databricks"]["master"].startswith(server.url)
    four = report["four"]
    assert four["images"] == 40 and four["feature_dim"] == 576 and four["test_rows"] > 0


@needs_312
@pytest.mark.slow
@pytest.mark.connect
def test_full_pyspark_on_312_runs_the_four_cells_and_exits(server_312, tmp_path):
    """The plain install on Python 3.12 as a Connect client (stock pyspark): the four
    cells, then the process, holding the fitted model, exits by itself."""
    server, workers = server_312
    report = _notebook(workers, tmp_path, f"remote={server.url}", f"four={tmp_path / 'digits'}")
    assert report["python"] == [3, 12] and report["remote_only"] is False
    assert report["four"]["feature_dim"] == 576
