"""A Spark Connect server started with Spark's own ``sbin/start-connect-server.sh``.

On 127.0.0.1 and a free port, with its pid and logs in a folder of the caller's; used
by ``conftest.py`` (the ``remote`` session mode) and ``test_connect_server.py`` (which
kills and restarts its own). ``stop()`` always leaves nothing running (by pid if the
script cannot stop it).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class ConnectServer:
    """One Spark Connect server started with Spark's own scripts."""

    CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"

    def __init__(self, workdir: Path, cwd: Optional[Path] = None,
                 python: Optional[str] = None):
        """*python*: the interpreter of the server's Python workers (default: this one);
        it must have the full pyspark of the same version, and this package."""
        import pyspark
        self.home = os.path.dirname(pyspark.__file__)
        self.port = free_port()
        self.url = f"sc://127.0.0.1:{self.port}"
        self.pid_dir = workdir / "pid"
        self.cwd = cwd or workdir / "server_cwd"  # where it resolves relative paths
        self.log_dir = workdir / "log"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("SPARK_REMOTE", "SPARK_LOCAL_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
        self.env.update(SPARK_HOME=self.home, SPARK_PID_DIR=str(self.pid_dir),
                        SPARK_LOG_DIR=str(self.log_dir), SPARK_IDENT_STRING="sparkdl-test",
                        PYSPARK_PYTHON=python or sys.executable,
                        PYSPARK_DRIVER_PYTHON=python or sys.executable)

    @property
    def pid_file(self) -> Path:
        return self.pid_dir / f"spark-sparkdl-test-{self.CLASS}-1.pid"

    def pid(self):
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 120) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        subprocess.run([f"{self.home}/sbin/start-connect-server.sh", "--master", "local[2]",
                        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
                        "--conf", f"spark.connect.grpc.binding.port={self.port}",
                        "--conf", "spark.ui.enabled=false"],
                       env=self.env, cwd=self.cwd, check=True, capture_output=True,
                       timeout=60)
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Connect server did not start: see {self.log_dir}")
            time.sleep(0.5)

    def ensure_running(self) -> None:
        if not port_open(self.port):
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
        while port_open(self.port) and time.monotonic() < deadline:
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
        if port_open(self.port):
            self.kill()
        self.pid_file.unlink(missing_ok=True)
