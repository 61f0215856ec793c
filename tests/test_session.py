"""Session handling in all three modes, %dlspark, Java checks, Spark error shortening."""
import os
import stat
import sys

import pytest
from IPython.core.error import UsageError

from sparkdl_magics import session
from sparkdl_magics.errors import EnvironmentProblem, user_message


def test_describe_reports_mode_master_and_version(spark_any, session_pool):
    info = session.describe(spark_any)
    assert info.version == spark_any.version
    if session_pool.mode == "connect":
        assert info.mode == "connect" and info.master.startswith("sc://localhost:")
        assert session.is_connect(spark_any)
    elif session_pool.mode == "remote":
        assert info.mode == "connect" and info.where == f"remote Connect server at {session_pool.server.url}"
        assert "server master: local[2]" in info.master and session.is_connect(spark_any)
    else:
        assert info.mode == "classic"
        assert info.master == {"local": "local[2]", "cluster": "local-cluster[2,1,1024]"}[session_pool.mode]
    assert session.get_spark() is spark_any  # the active session is used, not a new one
    assert spark_any.range(100).count() == 100


def test_local_cluster_runs_tasks_in_separate_executor_processes(spark_cluster):
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    @F.udf(LongType())
    def pid(_):
        return os.getpid()

    pids = {r[0] for r in spark_cluster.range(0, 64, numPartitions=8).select(pid("id")).collect()}
    assert os.getpid() not in pids
    assert session.describe(spark_cluster).executors == 2


def test_python_workers_use_the_running_interpreter(spark):
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    @F.udf(StringType())
    def exe(_):
        import sys as worker_sys
        return worker_sys.executable

    assert spark.range(1).select(exe("id")).first()[0] == sys.executable


def test_dlspark_reports_the_attached_session(ip, spark, capsys):
    info = ip.run_line_magic("dlspark", "")
    assert info.mode == "classic" and info.master == "local[2]"
    assert "Spark " + spark.version in str(info)
    assert "<table>" in info._repr_html_()
    from sparkdl_magics import __version__
    assert info.package_version == __version__ and f"sparkdl_magics {__version__}" in str(info)


def test_dlspark_attaches_to_another_master_and_connect(ip, session_pool):
    try:
        info = ip.run_line_magic("dlspark", "--master local[1] --conf spark.ui.enabled=false")
        assert info.master == "local[1]" and info.started_here
        assert "embedded, started by sparkdl_magics" in str(info)
        info = ip.run_line_magic("dlspark", "--remote local[1]")
        assert info.mode == "connect"
        assert "in-process Connect server started by sparkdl_magics" in str(info)
        assert session.get_spark().range(3).count() == 3
    finally:
        session_pool.close()


def test_dlspark_rejects_a_bad_remote(ip):
    with pytest.raises(UsageError, match="expected sc://host:port or local"):
        ip.run_cell("%dlspark --remote http://nope")


def _fake_java(tmp_path, version_line):
    java = tmp_path / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return str(java)


def test_java_version_parsing(tmp_path):
    assert session.java_version(_fake_java(tmp_path, 'openjdk version "17.0.15" 2025-04-15')) == 17
    assert session.java_version(_fake_java(tmp_path, 'java version "1.8.0_292"')) == 8
    assert session.java_version(str(tmp_path / "missing")) is None


def test_missing_or_old_java_is_one_clear_line(tmp_path, monkeypatch):
    from pyspark.core.context import SparkContext
    monkeypatch.setattr(SparkContext, "_gateway", None)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nojava"))
    with pytest.raises(EnvironmentProblem, match=r"^Java not found: Spark needs Java 17\+"):
        session.check_java()
    home = tmp_path / "jdk11"
    (home / "bin").mkdir(parents=True)
    _fake_java(home / "bin", 'openjdk version "11.0.2"')
    monkeypatch.setenv("JAVA_HOME", str(home))
    with pytest.raises(EnvironmentProblem, match=r"^Java 11 is too old"):
        session.check_java()


def test_spark_errors_become_one_line(spark_any):
    with pytest.raises(Exception) as err:
        spark_any.sql("SELECT no_such_column FROM range(1)").collect()
    message = user_message(err.value)
    assert message.startswith("Spark error [UNRESOLVED_COLUMN")
    assert "\n" not in message and "no_such_column" in message
