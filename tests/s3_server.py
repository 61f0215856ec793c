"""A real S3 API server for the tests: moto's server mode on 127.0.0.1 and a free port.

An HTTP server speaking the S3 protocol (not a mock of a client library): the package's
pyarrow reader, boto3 and Spark's Python workers all talk to it over the loopback.
``conftest.py`` points the standard AWS variables at it before any Spark JVM starts, so
every session mode (local, local-cluster, Connect, the separate Connect server) and every
notebook kernel finds it through the normal credential chain; it is started on first use
and stopped when the test run ends, also when tests fail.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, Optional

from connect_server import free_port, port_open

#: The variables a test run sets for its S3 server (dummy keys: moto accepts any).
def s3_environment(port: int) -> Dict[str, str]:
    return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "sparkdl-test", "AWS_SECRET_ACCESS_KEY": "sparkdl-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            # never ask the cloud's instance-metadata address for credentials
            "AWS_EC2_METADATA_DISABLED": "true"}


class S3Server:
    """moto's S3 server on 127.0.0.1:*port*, started with ``python -m moto.server``."""

    def __init__(self, port: Optional[int] = None):
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 60, env: Optional[Dict[str, str]] = None) -> "S3Server":
        """Start it (*env*: moto's settings, e.g. ``INITIAL_NO_AUTH_ACTION_COUNT``)."""
        if self.process is not None and self.process.poll() is None:
            return self
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto's S3 server did not start on port {self.port}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="sparkdl-test",
                            aws_secret_access_key="sparkdl-test")

    def bucket(self, name: str) -> str:
        """Create bucket *name* (again: emptied first); returns ``s3://name``."""
        client = self.client()
        try:
            objects = client.list_objects_v2(Bucket=name).get("Contents", [])
            for obj in objects:
                client.delete_object(Bucket=name, Key=obj["Key"])
        except client.exceptions.NoSuchBucket:
            client.create_bucket(Bucket=name)
        return f"s3://{name}"

    def upload(self, bucket: str, folder: Path, prefix: str,
               skip: Iterable[str] = ()) -> int:
        """Every file under *folder* as ``bucket/prefix/<path below folder>``."""
        client, count = self.client(), 0
        for path in sorted(Path(folder).rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and rel not in set(skip):
                client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}".lstrip("/"),
                                  Body=path.read_bytes())
                count += 1
        return count

    def put(self, bucket: str, key: str, body: bytes = b"") -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=body)


def configure_environment() -> int:
    """Point this process's AWS variables at a port for the run's S3 server (before
    any JVM starts, so Spark's workers inherit them). Returns the port."""
    port = int(os.environ.get("SPARKDL_TEST_S3_PORT") or free_port())
    os.environ["SPARKDL_TEST_S3_PORT"] = str(port)
    os.environ.update(s3_environment(port))
    return port
