"""A separate Spark Connect server (Spark's own ``sbin/start-connect-server.sh``): a dead
URL, a server killed under a session and a restarted server are each one clear line
within seconds, and the magics never fall back to a local session by accident.

The server listens on 127.0.0.1 and a free port, with its pid and logs in a temporary
folder; the module fixture always stops it (by pid if the script cannot).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from connect_server import ConnectServer, free_port
from sparkdl_magics import session

pytestmark = [pytest.mark.slow, pytest.mark.connect]

FAST_S = 15  # what "within seconds" means here


@pytest.fixture(scope="module")
def connect_server(session_pool, tmp_path_factory):
    session_pool.close()  # other modules' sessions: this module must start from none
    server = ConnectServer(tmp_path_factory.mktemp("connect_server"))
    try:
        server.start()
        yield server
    finally:
        session.stop()
        server.stop()


def _no_local_spark(gateway_before) -> None:
    """Nothing ran on a classic session: no SparkContext, no new local JVM."""
    from pyspark import SparkContext
    assert SparkContext._active_spark_context is None
    assert SparkContext._gateway is gateway_before


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_dead_url_fails_within_seconds_naming_it(ip, connect_server):
    from pyspark import SparkContext
    gateway = SparkContext._gateway
    dead = f"sc://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("dlspark", f"--remote {dead}")
    elapsed = time.monotonic() - start
    message = _one_line(err)
    assert elapsed < FAST_S, elapsed
    assert message.startswith(f"%dlspark: no Spark Connect server answers at {dead} "
                              "(connection refused)")
    assert f"%dlspark --remote {dead} again" in message
    _no_local_spark(gateway)


def test_dlspark_describes_the_remote_server(ip, connect_server):
    from pyspark import SparkContext
    gateway = SparkContext._gateway
    info = ip.run_line_magic("dlspark", f"--remote {connect_server.url}")
    assert info.mode == "connect" and info.where == f"remote Connect server at {connect_server.url}"
    assert info.version and info.version in str(info)
    assert "server master: local[2]" in info.master and "embedded" not in str(info)
    again = ip.run_line_magic("dlspark", "")
    assert again.master == info.master
    _no_local_spark(gateway)


def test_a_killed_server_fails_the_next_magic_within_seconds(ip, connect_server, image_folder):
    from pyspark import SparkContext
    gateway = SparkContext._gateway
    ip.run_line_magic("dlspark", f"--remote {connect_server.url}")
    ip.run_cell(f"%%dlload flowers\npath: {image_folder}\nsplit: 0.5\n")
    assert ip.user_ns["flowers"].df.count() > 0
    connect_server.kill()
    for cell in ("%dlspark", f"%%dlload again\npath: {image_folder}\n"):
        start = time.monotonic()
        with pytest.raises(UsageError) as err:
            ip.run_cell(cell)
        elapsed = time.monotonic() - start
        message = _one_line(err)
        assert elapsed < FAST_S, (cell, elapsed)
        assert f"the Spark Connect server at {connect_server.url} is not answering" in message
        assert f"run %dlspark --remote {connect_server.url} again" in message
        assert "results made on it are gone" in message
    assert "again" not in ip.user_ns
    _no_local_spark(gateway)


def test_after_a_restart_the_magics_reconnect_and_flag_old_results(ip, connect_server,
                                                                   image_folder, capsys):
    from pyspark import SparkContext
    gateway = SparkContext._gateway
    connect_server.ensure_running()
    ip.run_line_magic("dlspark", f"--remote {connect_server.url}")
    ip.run_cell(f"%%dlload old\npath: {image_folder}\nsplit: 0.5\n")
    old = ip.user_ns["old"]
    connect_server.kill()
    connect_server.start()
    # the next magic reconnects to the same server, with one line saying so
    start = time.monotonic()
    info = ip.run_line_magic("dlspark", "")
    elapsed = time.monotonic() - start
    assert elapsed < FAST_S, elapsed
    assert info.mode == "connect" and connect_server.url in info.where
    assert "reconnected; results made before the restart are gone" in capsys.readouterr().err
    # results made on the old server session are flagged, as for a stopped classic session
    with pytest.raises(UsageError, match="belong to a Spark session that was stopped"):
        ip.run_cell("%%featurize old -> feats\nmodel: MobileNetV3Small\nweights: none\n")
    # so are plain DataFrame calls on them
    from sparkdl_magics.errors import user_message
    with pytest.raises(Exception) as err:
        old.df.count()
    assert "run the cell that made it again" in user_message(err.value)
    # new cells work; %dlspark --remote again also gives a fresh, working session
    ip.run_cell(f"%%dlload new\npath: {image_folder}\nsplit: 0.5\n")
    assert ip.user_ns["new"].df.count() > 0
    info = ip.run_line_magic("dlspark", f"--remote {connect_server.url}")
    assert session.get_spark().range(5).count() == 5
    with pytest.raises(UsageError, match="belong to a Spark session that was stopped"):
        ip.run_cell("%%featurize new -> feats\nmodel: MobileNetV3Small\nweights: none\n")
    _no_local_spark(gateway)


def test_stop_then_dlspark_starts_the_embedded_session(ip, connect_server):
    connect_server.ensure_running()
    ip.run_line_magic("dlspark", f"--remote {connect_server.url}")
    ip.run_line_magic("dlspark", "--stop")
    assert "SPARK_CONNECT_MODE_ENABLED" not in os.environ
    try:
        info = ip.run_line_magic("dlspark", "")
        assert info.mode == "classic" and info.started_here
        assert "embedded, started by sparkdl_magics" in str(info)
    finally:
        session.stop()


def test_notebook_05_runs_against_the_separate_server(session_pool):
    """The Connect notebook, as nbval runs it in the test command, but attached to the
    suite's separate server (started in notebooks/) through pyspark's own SPARK_REMOTE."""
    session_pool.close()
    url = session_pool.remote_url()
    jobs_before = _jobs_run(session_pool.server)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-sanitize-with", "notebooks/sanitize.cfg", "notebooks/05_spark_connect.ipynb"],
        cwd=root, env={**os.environ, "SPARK_REMOTE": url}, capture_output=True, text=True,
        timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-2000:]
    # it ran there: the server's scheduler logged the notebook's Spark jobs
    assert _jobs_run(session_pool.server) - jobs_before >= 10


def _jobs_run(server) -> int:
    """Spark jobs the server finished so far (its INFO log has one line per job)."""
    import re
    log = "".join(p.read_text(errors="replace") for p in server.log_dir.glob("*.out*"))
    return len(re.findall(r"DAGScheduler: Job \d+ finished", log))


def test_a_setting_fixed_at_server_start_is_one_line(ip, connect_server):
    connect_server.ensure_running()
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("dlspark", f"--remote {connect_server.url} --conf spark.ui.enabled=true")
    assert _one_line(err).endswith(
        f"--conf spark.ui.enabled: fixed when the server at {connect_server.url} started; "
        "set it in the server's start command (start-connect-server.sh --conf ...)")


def test_save_and_load_on_a_path_only_the_server_can_see(connect_server, tmp_path,
                                                           monkeypatch):
    """A relative path is resolved by the server (its own working folder), so the client
    never creates, sees or reads it: everything a saved model needs goes through Spark."""
    from helpers import blobs
    from sparkdl_magics import FittedModel, fit
    connect_server.ensure_running()
    monkeypatch.chdir(tmp_path)  # the client's folder: nothing may appear here
    spark = session.start_connect(connect_server.url)
    model = fit(blobs(spark), maxIter=20)
    where = "saved/flowers_model"
    model.save(where)
    assert not (tmp_path / "saved").exists()
    on_server = connect_server.cwd / where
    assert (on_server / "sparkdl_magics").is_dir()  # the metadata, written by the server
    expected = [r["prediction_name"] for r in model.transform(model.features.test)
                .orderBy("path").collect()]
    session.stop()
    spark = session.start_connect(connect_server.url)  # a fresh session on that server
    loaded = FittedModel.load(where)
    assert loaded.classes == model.classes
    assert loaded.classifier == model.classifier and loaded.params == model.params
    from sparkdl_magics import __version__, persist
    assert persist.saved_version(where, spark) == __version__
    again = blobs(spark).test  # the same seeded rows, made in the new session
    assert [r["prediction_name"] for r in loaded.transform(again).orderBy("path").collect()] \
        == expected
    assert not (tmp_path / "saved").exists()
    session.stop()


def test_an_interrupted_cell_is_one_line_and_cancels_the_servers_job(ip, connect_server,
                                                                       tmp_path):
    """SIGINT (the notebook's interrupt) while %%featurize runs on the server: one line,
    the server's job is cancelled, and the session runs the next cell."""
    import signal
    import threading
    from imagegen import write_labelled_folder
    connect_server.ensure_running()
    write_labelled_folder(tmp_path, ("a", "b"), per_class=200, seed=5)
    from sparkdl_magics.tfimport import import_keras
    import_keras()  # imported by an earlier cell in a notebook; not what is interrupted here
    ip.run_line_magic("dlspark", f"--remote {connect_server.url}")
    ip.run_cell(f"%%dlload many\npath: {tmp_path}\nsplit: 0.5\n")
    sent = {}

    def interrupt():
        time.sleep(6)  # dlload is done; featurize of 400 images one at a time takes longer
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt) as caught:
        ip.run_cell("%%featurize many -> feats\nmodel: MobileNetV3Small\nweights: none\n"
                    "batch_size: 1\n")
    assert time.monotonic() - sent["at"] < FAST_S
    (line,) = caught.value._render_traceback_()
    assert "%%featurize: interrupted; this cell's Spark jobs were cancelled" in line
    assert "feats" not in ip.user_ns
    assert session.get_spark().range(7).count() == 7  # the next cell runs
