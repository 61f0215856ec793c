"""A real MLflow tracking server for the tests, on 127.0.0.1 and a free port.

``mlflow server`` with a SQLite backend store and a local artifact folder under a
temporary directory (artifacts go through the server, as with a remote one). Started on
first use by the ``mlflow_server`` fixture and stopped at the end of the run, also when
tests fail (atexit), with its whole process group (the server's workers).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from connect_server import free_port, port_open


class MlflowServer:
    def __init__(self, root: Path, port: Optional[int] = None):
        self.root = Path(root)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 120) -> "MlflowServer":
        if self.process is not None and self.process.poll() is None:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "server.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(self.root),
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.root / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the MLflow server did not start on {self.url}:\n{tail}")
            time.sleep(0.3)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.process = None
