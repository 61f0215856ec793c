"""A separate Spark Connect server (Spark's own ``sbin/start-connect-server.sh``): a dead
URL, a server killed under a session and a restarted server are each one clear line
within seconds, and the magics never fall back to a local session by accident.

The server listens on 127.0.0.1 and a free port, with its pid and logs in a temporary
folder; the module fixture always stops it (by pid if the script cannot).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from sparkdl_magics import session

pytestmark = [pytest.mark.slow, pytest.mark.connect]

FAST_S = 15  # what "within seconds" means here


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class ConnectServer:
    """One Spark Connect server started with Spark's own scripts."""

    CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"

    def __init__(self, workdir: Path):
        import pyspark
        self.home = os.path.dirname(pyspark.__file__)
        self.port = _free_port()
        self.url = f"sc://127.0.0.1:{self.port}"
        self.pid_dir = workdir / "pid"
        self.log_dir = workdir / "log"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("SPARK_REMOTE", "SPARK_LOCAL_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
        self.env.update(SPARK_HOME=self.home, SPARK_PID_DIR=str(self.pid_dir),
                        SPARK_LOG_DIR=str(self.log_dir), SPARK_IDENT_STRING="sparkdl-test",
                        PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)

    @property
    def pid_file(self) -> Path:
        return self.pid_dir / f"spark-sparkdl-test-{self.CLASS}-1.pid"

    def pid(self):
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 120) -> None:
        subprocess.run([f"{self.home}/sbin/start-connect-server.sh", "--master", "local[2]",
                        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
                        "--conf", f"spark.connect.grpc.binding.port={self.port}",
                        "--conf", "spark.ui.enabled=false"],
                       env=self.env, check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Connect server did not start: see {self.log_dir}")
            time.sleep(0.5)

    def ensure_running(self) -> None:
        if not _port_open(self.port):
            self.pid_file.unlink(missing_ok=True)
            self.start()

    def kill(self) -> None:
        """SIGKILL, as when the server crashes or its machine goes away."""
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.pid_file.unlink(missing_ok=True)  # a zombie pid would block the next start

    def stop(self) -> None:
        if self.pid() is None:
            return
        try:
            subprocess.run([f"{self.home}/sbin/stop-connect-server.sh"], env=self.env,
                           capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass
        if _port_open(self.port):
            self.kill()
        self.pid_file.unlink(missing_ok=True)


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
    dead = f"sc://127.0.0.1:{_free_port()}"  # nothing listens there
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
