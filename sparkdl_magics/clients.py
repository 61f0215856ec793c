"""Which Spark client this Python has, and how a Connect-only one attaches.

Three kinds: the full ``pyspark`` (local and classic sessions, and Spark Connect), and
two that can only talk to a Spark Connect server: ``pyspark-client`` (a pyspark without
``pyspark.core``: no JVM, no jars; ``pyspark.util.is_remote_only()`` is True) and
Databricks Connect (its pyspark build has the classic modules but refuses a classic
session). Classic-only modules (``SparkContext``, Py4J) are imported only where
:func:`classic_available` says so, pyspark's own pattern, never found out by an
ImportError later.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Optional

from .errors import EnvironmentProblem

PYSPARK_CLIENT = "pyspark-client"
DATABRICKS_CONNECT = "databricks-connect"

#: Where Databricks Connect finds its own configuration (its SDK's unified auth).
DATABRICKS_ENV = ("DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLUSTER_ID",
                  "DATABRICKS_SERVERLESS_COMPUTE_ID")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing or half-imported
        return False


def pyspark_installed() -> bool:
    return _has_module("pyspark")


def databricks_connect() -> bool:
    """Databricks Connect is installed (its pyspark cannot start a classic session)."""
    return _has_module("databricks.connect")


def remote_only_pyspark() -> bool:
    """pyspark-client: pyspark without its classic half (``pyspark.core``)."""
    if not pyspark_installed():
        return False
    try:
        from pyspark.util import is_remote_only
    except ImportError:  # pyspark 3.5: no client-only build of it exists
        return False
    return bool(is_remote_only())


def connect_only_client() -> Optional[str]:
    """The name of a client that can only reach a Spark Connect server, else None."""
    if databricks_connect():
        return DATABRICKS_CONNECT
    if remote_only_pyspark():
        return PYSPARK_CLIENT
    return None


def classic_available() -> bool:
    """This Python can run (or already runs) a classic session: a full pyspark."""
    return pyspark_installed() and connect_only_client() is None


def databricks_config_present() -> bool:
    """Databricks' own configuration is there for ``DatabricksSession.builder``."""
    return any(os.environ.get(key) for key in DATABRICKS_ENV) or \
        os.path.isfile(os.path.expanduser("~/.databrickscfg"))


def how_to_attach(client: str) -> str:
    """One line: there is no session, and the ways to attach one from *client*."""
    line = (f"no Spark session: this Python has {client}, a Spark Connect client only "
            "(no local Spark): attach with %dlspark --remote sc://host:15002, or set "
            "SPARK_REMOTE=sc://host:15002 before the first magic")
    if client == DATABRICKS_CONNECT:
        line += (", or give Databricks Connect its config (DATABRICKS_HOST and a cluster, "
                 "or ~/.databrickscfg) or create a DatabricksSession first")
    return line


def require_classic(what: str) -> None:
    """One line when *what* (a local session, an in-process server) needs the full
    pyspark and this Python has a Connect-only client or no pyspark at all."""
    if not pyspark_installed():
        raise EnvironmentProblem(
            f"{what} needs pyspark, which is not installed: pip install sparkdl_magics "
            "brings it (or, for a Spark Connect server, pip install pyspark-client and "
            "attach with %dlspark --remote sc://host:15002)")
    client = connect_only_client()
    if client is not None:
        raise EnvironmentProblem(
            f"{what} needs the full pyspark (a JVM); this Python has {client}, a Spark "
            "Connect client only: attach to a running server with %dlspark --remote "
            "sc://host:15002 (or SPARK_REMOTE)")
