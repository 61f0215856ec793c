"""Which Spark session the magics use, and starting the embedded one.

Order of preference: an active Spark Connect session (Databricks Connect included),
then an active classic session (any master), else the server ``SPARK_REMOTE`` names,
else an embedded ``local[*]`` session started here with the running interpreter for its
Python workers, quiet logs and Arrow on. :func:`attach` switches to another master or
Connect URL. A Connect-only client (pyspark-client, Databricks Connect; see
:mod:`.clients`) never imports classic-only modules and never starts a local session:
with no session it says in one line how to attach.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import weakref
from importlib import resources
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple
from urllib.parse import urlparse

from . import connect_exit
from .clients import (DATABRICKS_CONNECT, classic_available, connect_only_client,
                      databricks_config_present, how_to_attach, require_classic)
from .errors import (DataError, EnvironmentProblem, OptionError, ServerNotAnswering,
                     grpc_reason, spark_error_condition)
from .results import SessionInfo

EMBEDDED_APP_NAME = "sparkdl_magics"

#: Settings for sessions this package starts (the user's own sessions are left alone).
DEFAULT_CONF: Dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.pythonUDF.arrow.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "WARN",
    "spark.driver.memory": "3g",
    "spark.sql.shuffle.partitions": "8",
    "spark.python.worker.reuse": "true",
}

_started_here: Optional[Any] = None  # the session this module started, if any

#: The Connect server the user attached to with ``%dlspark --remote`` (None: not attached).
#: While set, the magics run there or fail; they never fall back to a local session.
_attached: Optional["_Attachment"] = None
#: Connect sessions replaced by a reconnect or a new attachment: their results are gone.
_retired: "weakref.WeakSet[Any]" = weakref.WeakSet()

#: Seconds a TCP connect to a Connect server may take before it counts as not answering.
REACH_TIMEOUT_S = 3.0
#: Retries of the sessions attached here (pyspark's default waits 10+ minutes for a dead
#: server): about 3 s of back-off in all before an unanswered call fails.
CONNECT_RETRY_POLICY = {"max_retries": 4, "initial_backoff": 200, "backoff_multiplier": 2.0,
                        "max_backoff": 2000}


class _Attachment:
    """A Connect server attached with ``%dlspark --remote``: the URL as given (``sc://...``
    or ``local[N]``), the sc:// address the client talks to, and the current session."""

    def __init__(self, remote: str, url: str, session: Any, env_before: Dict[str, Optional[str]]):
        self.remote = remote
        self.url = url
        self.session = session
        self.env_before = env_before  # _CONNECT_ENV before attaching
        self.app_id = _server_app_id(session)  # which server process it is

    @property
    def shown(self) -> str:
        return shown_url(self.url)

    @property
    def again(self) -> str:
        """The %dlspark line that attaches here again (a token is never printed)."""
        remote = self.remote if self.remote.startswith("local") else self.shown
        if ";" in self.url and not self.remote.startswith("local"):
            remote += "/;..."
        return f"%dlspark --remote {remote}"


def is_connect(spark: Any) -> bool:
    """True for a Spark Connect (or Databricks Connect) session."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def is_dataframe(obj: Any) -> bool:
    """A Spark DataFrame, classic or Connect. Never duck-type one: on Spark Connect any
    attribute name (``df``, ``train``) resolves to a Column, so ``hasattr`` is always true."""
    from pyspark.sql import DataFrame
    if isinstance(obj, DataFrame):
        return True
    try:  # older pyspark: Connect DataFrames are a separate class
        from pyspark.sql.connect.dataframe import DataFrame as ConnectDataFrame
        return isinstance(obj, ConnectDataFrame)
    except ImportError:
        return False


def active_session() -> Optional[Any]:
    """The user's active session (Connect first, then classic), without starting one."""
    if "pyspark" not in sys.modules and "pyspark.sql" not in sys.modules:
        return None
    try:
        from pyspark.sql.connect.session import SparkSession as ConnectSession
        session = ConnectSession.getActiveSession()
        if session is None and os.environ.get("SPARK_CONNECT_MODE_ENABLED"):
            session = getattr(ConnectSession, "_default_session", None)
        if session is not None and not _connect_closed(session):
            return session
    except ImportError:
        pass
    if os.environ.get("SPARK_CONNECT_MODE_ENABLED"):
        return None  # a local Connect server's own classic session is not the user's
    if not classic_available():
        return None  # a Connect-only client: no classic session, no SparkContext to ask
    from pyspark.sql import SparkSession
    if _forget_dead_driver():
        return None
    session = SparkSession.getActiveSession()
    if session is not None and getattr(session.sparkContext, "_jsc", None) is None:  # classic
        return None
    return session


def ensure_usable(spark: Any, what: str = "these images") -> None:
    """A clear error when *spark* (the session a result was made in) is stopped or its
    driver JVM died: its DataFrames can never run again, and PySpark would fail with an
    AttributeError or a Py4J error far from the cause."""
    if spark is None:
        return
    if is_connect(spark):
        if not connect_session_gone(spark):
            return
        raise DataError(f"{what} belong to a Spark session that was stopped (or whose JVM "
                        "died): run the cell that made them again (e.g. %%dlload)")
    sc = getattr(spark, "_sc", None)
    proc = getattr(getattr(sc, "_gateway", None), "proc", None)
    dead = sc is None or getattr(sc, "_jsc", None) is None or (
        proc is not None and proc.poll() is not None)
    if dead:
        raise DataError(f"{what} belong to a Spark session that was stopped (or whose JVM "
                        "died): run the cell that made them again (e.g. %%dlload)")


def _forget_dead_driver() -> bool:
    """If the driver JVM this process launched has exited (killed, out of memory), drop
    PySpark's handles on it so the next session starts a fresh JVM instead of every call
    failing with a Py4J connection error. True when there was one to forget. Only on a
    full pyspark (:func:`.clients.classic_available`)."""
    from pyspark import SparkContext
    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    if proc is None or proc.poll() is None:
        return False  # no JVM launched from here, or it is alive
    global _started_here
    from pyspark.sql import SparkSession, SQLContext
    try:
        gateway.close()
    except Exception:  # closing a gateway whose JVM is gone: any socket/Py4J error is moot
        pass
    sc = SparkContext._active_spark_context
    if sc is not None:
        sc._jsc = None  # classic only: a dead driver JVM
    SparkContext._gateway = None
    SparkContext._jvm = None  # classic only
    SparkContext._active_spark_context = None
    SparkSession._instantiatedSession = None
    SparkSession._activeSession = None
    SQLContext._instantiatedContext = None
    _started_here = None
    return True


def _connect_closed(session: Any) -> bool:
    client = getattr(session, "_client", None)
    return bool(getattr(client, "is_closed", False))


def connect_session_gone(spark: Any) -> bool:
    """True for a Connect session whose server session is gone: closed (stopped, or the
    server restarted under it) or replaced by a later ``%dlspark --remote``/reconnect."""
    try:
        if spark in _retired:
            return True
    except TypeError:  # not weak-referenceable: cannot have been retired
        pass
    return _connect_closed(spark)


def get_spark() -> Any:
    """The session to run on: the attached Connect server's, else the user's active one,
    else a new one (:func:`start_default`). Attached to a Connect server, never a local
    session: a server that does not answer is one clear error within seconds, and a
    server that was restarted is reconnected to (its old results are flagged as gone)."""
    if _attached is not None:
        spark = _attached_session(_attached)
    else:
        spark = active_session() or start_default()
    if is_connect(spark):
        connect_exit.watch(spark)  # its models must not hang the interpreter's exit
    return spark


def start_default() -> Any:
    """No session yet: attach to the server ``SPARK_REMOTE`` names (pyspark's own
    setting), else, on Databricks Connect with its config, a ``DatabricksSession``; a
    Connect-only client without either says in one line how to attach; a full pyspark
    starts the embedded local session."""
    remote = os.environ.get("SPARK_REMOTE", "").strip()
    if remote:
        return start_connect(remote)
    client = connect_only_client()
    if client == DATABRICKS_CONNECT and databricks_config_present():
        return _databricks_session()
    if client is not None:
        raise EnvironmentProblem(how_to_attach(client))
    return start_local()


def _databricks_session() -> Any:
    """Databricks Connect's session from its own config (host, cluster, token)."""
    from databricks.connect import DatabricksSession
    try:
        return DatabricksSession.builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - any config/auth/network failure: one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EnvironmentProblem(
            f"Databricks Connect could not attach with Databricks' config ({reason}): fix "
            "it (DATABRICKS_HOST, a cluster, ~/.databrickscfg) or attach with %dlspark "
            "--remote sc://host:15002") from None


def _attached_session(att: "_Attachment") -> Any:
    """The attached server's live session: checked (a TCP connect, then one RPC with
    bounded retries), reconnected when the server was restarted under it."""
    gone = (f"the Spark Connect server at {att.shown} is not answering ({{reason}}): start "
            f"it and run {att.again} again; results made on it are gone")
    check_reachable(att.url, gone)
    spark = att.session
    if not connect_session_gone(spark):
        try:  # one RPC: the server answers, and it is the same server process (a
            # restarted one has another application id; pyspark does not always notice)
            if _server_app_id(spark) == att.app_id:
                return spark
        except Exception:  # noqa: BLE001 - the port answers: its gRPC channel may be
            pass  # waiting out a reconnect back-off; a new session has a new channel
    if att.remote.startswith("local"):  # an in-process server cannot come back by itself
        raise ServerNotAnswering(gone.format(reason="its session was closed"))
    global _started_here
    fresh = _connect_session(att.url)
    try:
        app_id = _server_app_id(fresh)
    except Exception as exc:  # noqa: BLE001 - the server does not answer gRPC calls
        _stop_connect(fresh, att.url)
        raise ServerNotAnswering(gone.format(reason=grpc_reason(exc))) from None
    att.session = fresh
    if _started_here is spark:
        _started_here = fresh
    if app_id == att.app_id and not connect_session_gone(spark):
        return fresh  # the same server process: a new channel was all it needed
    att.app_id = app_id
    _retire(spark)
    print(f"sparkdl_magics: the Spark Connect server at {att.shown} was restarted: "
          "reconnected; results made before the restart are gone (run their cells again)",
          file=sys.stderr)
    return att.session


def _server_app_id(spark: Any) -> Optional[str]:
    """The server's Spark application id (one RPC): another one after a restart."""
    return spark.conf.get("spark.app.id", None)


def _retire(spark: Any) -> None:
    try:
        _retired.add(spark)
    except TypeError:
        pass


def shown_url(url: str) -> str:
    """``sc://host:port`` of a Connect URL, without its path and parameters (tokens)."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"sc://{host}:{parsed.port or 15002}"


def check_reachable(url: str, message: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise :class:`ServerNotAnswering` (``message`` with ``{reason}`` filled in) unless a
    TCP connection to the Connect server at *url* opens within *timeout* seconds."""
    parsed = urlparse(url)
    host = parsed.hostname or "localhost"
    try:
        port = parsed.port or 15002
    except ValueError as exc:
        raise OptionError(f"--remote {shown_url(url)!r}: {exc}") from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.timeout:
        reason = f"no connection within {timeout:g} s"
    except ConnectionRefusedError:
        reason = "connection refused"
    except socket.gaierror as exc:
        reason = f"unknown host {host!r}: {exc.strerror or exc}"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    raise ServerNotAnswering(message.format(reason=reason))


def _connect_session(url: str) -> Any:
    """A new Connect session on *url* (never an existing one), with bounded retries."""
    from pyspark.sql.connect.client import DefaultChannelBuilder
    from pyspark.sql.connect.client.retries import DefaultPolicy
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"  # pyspark's marker of Connect mode
    # gRPC shares connections among a process's channels, with their reconnect back-off
    # (up to minutes after a server went away): a new session gets connections of its own,
    # so it reaches a restarted server at once.
    channel = DefaultChannelBuilder(url, channelOptions=[("grpc.use_local_subchannel_pool", 1)])
    spark = ConnectSession.builder.channelBuilder(channel).create()
    # create() keeps an older (closed) session as the default and active one
    ConnectSession._default_session = spark
    ConnectSession._active_session.session = spark
    spark._client.set_retry_policies([DefaultPolicy(**CONNECT_RETRY_POLICY)])
    return spark


def start_local(master: str = "local[*]", conf: Optional[Mapping[str, str]] = None) -> Any:
    """Start (or get) a classic session on a local-style master, set up for this package."""
    global _started_here
    require_classic(f"a local Spark session ({master})")
    check_java()
    _prepare_local_environment(master)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(EMBEDDED_APP_NAME)
    for key, value in {**_local_conf(), **dict(conf or {})}.items():
        builder = builder.config(key, value)
    with quiet_jvm_stderr():
        spark = builder.getOrCreate()
    _started_here = spark
    return spark


# What attaching changes in the environment, put back by stop(): pyspark marks the process
# Connect-only and never unmarks it for sc:// URLs (the next classic session would fail
# with CONNECT_URL_NOT_SET), and the in-process server leaves its token, which a later
# client would send to another server (which then fails the TLS handshake).
_CONNECT_ENV = ("SPARK_CONNECT_MODE_ENABLED", "SPARK_CONNECT_AUTHENTICATE_TOKEN")


def start_connect(remote: str, conf: Optional[Mapping[str, str]] = None) -> Any:
    """Connect to ``sc://host:port``, or start a local Connect server for ``local[N]``."""
    global _started_here, _attached
    env_before = {key: os.environ.get(key) for key in _CONNECT_ENV}
    try:
        spark, url = _open_connect(remote, conf)
    except BaseException:
        _restore_env(env_before)  # a failed attach leaves the process as it was
        raise
    _started_here = spark
    _attached = _Attachment(remote, url, spark, env_before)
    return spark


def _open_connect(remote: str, conf: Optional[Mapping[str, str]]) -> Tuple[Any, str]:
    if remote.startswith("local"):
        spark = _start_local_connect(remote, conf)
        return spark, connect_url(spark)
    if not remote.startswith("sc://"):
        raise OptionError(f"--remote {remote!r}: expected sc://host:port or local[N]")
    check_reachable(remote, f"no Spark Connect server answers at {shown_url(remote)} "
                    "({reason}): start it (e.g. $SPARK_HOME/sbin/start-connect-server.sh) "
                    f"or fix the URL, then run %dlspark --remote {shown_url(remote)} again")
    spark = _connect_session(remote)
    try:
        _set_runtime_conf(spark, conf, remote)
    except Exception:
        _stop_connect(spark, remote)
        raise
    return spark, remote


def _restore_env(values: Mapping[str, Optional[str]]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _set_runtime_conf(spark: Any, conf: Optional[Mapping[str, str]], url: str) -> None:
    """Settings for a session on a running server: only runtime (SQL) settings can change;
    a static one (``spark.ui.enabled``, executor memory) is fixed when the server starts."""
    for key, value in dict(conf or {}).items():
        try:
            spark.conf.set(key, value)
        except Exception as exc:
            if spark_error_condition(exc) != "CANNOT_MODIFY_CONFIG":
                raise
            raise OptionError(f"--conf {key}: fixed when the server at {shown_url(url)} "
                              "started; set it in the server's start command "
                              "(start-connect-server.sh --conf ...)") from None


def _start_local_connect(master: str, conf: Optional[Mapping[str, str]]) -> Any:
    """An in-process Connect server on a free port (pyspark's own path always takes 15002,
    so two notebooks on one machine would collide), then a client session on it."""
    require_classic(f"--remote {master} (a Spark Connect server in this process)")
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    check_java()
    _prepare_local_environment(master)
    port = _free_port()
    # progress every 0.5 s (Spark's default is 2 s: a shorter stage is never reported)
    server_conf = {**_local_conf(), "spark.connect.progress.reportInterval": "500ms",
                   **dict(conf or {}), "spark.connect.grpc.binding.port": str(port)}
    os.environ["SPARK_LOCAL_REMOTE"] = "1"  # lets session.stop() stop the server too
    with quiet_jvm_stderr():
        ConnectSession._start_connect_server(master, server_conf)
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    return ConnectSession.builder.remote(f"sc://localhost:{port}").getOrCreate()


def _free_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def attach(master: Optional[str] = None, remote: Optional[str] = None,
           conf: Optional[Mapping[str, str]] = None) -> Any:
    """Switch to another master or Connect URL, stopping the current session first."""
    if master and remote:
        raise OptionError("give either --master or --remote, not both")
    stop()
    if remote:
        return start_connect(remote, conf)
    return start_local(master or "local[*]", conf)


def stop() -> None:
    """Stop the active session (used before attaching elsewhere). Attached to a Connect
    server, stop its session (without waiting on a server that is gone) and detach, so
    the next magic starts the embedded session again."""
    global _started_here, _attached
    att, _attached = _attached, None
    if att is not None:
        _stop_connect(att.session, att.url)
        if att.session is _started_here:
            _started_here = None
    session = active_session()
    for s in (session, _started_here):
        if s is None or s is getattr(att, "session", None):
            continue
        if is_connect(s):
            _stop_connect(s, connect_url(s))
            continue
        try:
            s.stop()
        except Exception:  # a dead session cannot be stopped twice; that is fine
            pass
    _started_here = None
    if att is not None:
        _restore_env(att.env_before)


def _stop_connect(spark: Any, url: str) -> None:
    """Stop a Connect session without waiting on its server for long: the session is
    released with one bounded call (none when the server does not answer; pyspark would
    retry for minutes, or hang when a model's finalizer runs inside its release), then
    pyspark's ``stop()`` forgets it and stops an in-process server."""
    _retire(spark)
    try:
        check_reachable(url, "{reason}", timeout=1.0)
        connect_exit.release(spark)
    except (ServerNotAnswering, OptionError):
        pass
    spark.release_session_on_close = False
    try:
        spark.stop()
    except Exception:  # noqa: BLE001 - stopping is best effort, as in pyspark
        pass


# --------------------------------------------------------------------------- environment

def _local_conf() -> Dict[str, str]:
    conf = dict(DEFAULT_CONF)
    log4j = resources.files("sparkdl_magics") / "conf" / "log4j2.properties"
    option = f"-Dlog4j2.configurationFile=file:{log4j}"
    conf["spark.driver.extraJavaOptions"] = option
    conf["spark.executor.extraJavaOptions"] = option
    conf["spark.pyspark.python"] = sys.executable
    conf["spark.pyspark.driver.python"] = sys.executable
    return conf


#: Lines the driver JVM writes straight to its stderr (not through log4j) that a notebook
#: user can neither act on nor silence: the JVM's note that Spark enabled the incubating
#: Vector API (``--add-modules=jdk.incubator.vector``, for MLlib's Java BLAS), and the
#: native BLAS loader's complaint that there is no system ``libblas.so.3``/
#: ``liblapack.so.3`` (MLlib then uses its Java BLAS, which is correct, only slower).
JVM_NOISE = re.compile(
    r"^WARNING: Using incubator modules: jdk\.incubator\.\w+(, jdk\.incubator\.\w+)*\s*$"
    r"|^netlib-\w+: JNI_OnLoad: dlopen\(\S+\) failed")


@contextlib.contextmanager
def quiet_jvm_stderr() -> Iterator[None]:
    """Launch the driver JVM (inside this block) with its stderr filtered.

    PySpark starts the JVM with this process's file descriptor 2, which a Jupyter kernel
    copies into the running cell. While this block runs and no JVM exists yet, fd 2 is a
    pipe: the JVM, the spark-submit scripts and the Python workers it starts later
    inherit it for their whole life, and a daemon thread copies every line to the real
    stderr except the :data:`JVM_NOISE` lines. Everything else (log4j warnings and
    errors, a worker's crash) still reaches the cell. Python's own stderr is back as
    it was when the block ends.
    """
    from pyspark import SparkContext
    if SparkContext._gateway is not None:
        yield  # a JVM is running: nothing is launched here
        return
    try:
        read_fd, write_fd = os.pipe()
        target = os.dup(2)
        saved = os.dup(2)
    except OSError:  # out of descriptors, or no fd 2: launch unfiltered
        yield
        return
    with contextlib.suppress(Exception):  # what Python buffered goes out before the swap
        sys.stderr.flush()
    threading.Thread(target=_copy_filtered, args=(read_fd, target), daemon=True,
                     name="sparkdl_magics-jvm-stderr").start()
    os.dup2(write_fd, 2)  # inheritable: the JVM gets it as its stderr
    os.close(write_fd)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _copy_filtered(read_fd: int, target: int) -> None:
    """Copy lines from *read_fd* to *target* until every writer has exited (EOF)."""
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as raw:
            pending = b""
            while True:
                chunk = raw.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = [line + b"\n" for line in lines
                        if not JVM_NOISE.search(line.decode(errors="replace"))]
                if kept:
                    _write_all(target, b"".join(kept))
            if pending and not JVM_NOISE.search(pending.decode(errors="replace")):
                _write_all(target, pending)
    except OSError:  # the real stderr went away (kernel shutting down): nothing to tell
        pass
    finally:
        with contextlib.suppress(OSError):
            os.close(target)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _prepare_local_environment(master: str) -> None:
    """Workers must run this interpreter; local-cluster needs SPARK_HOME for executors."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    if "SPARK_HOME" not in os.environ or not os.path.isdir(os.environ["SPARK_HOME"]):
        import pyspark
        os.environ["SPARK_HOME"] = os.path.dirname(pyspark.__file__)


def _required_java() -> int:
    import pyspark
    major = int(pyspark.__version__.split(".")[0])
    return 17 if major >= 4 else 8


def java_version(java: Optional[str] = None) -> Optional[int]:
    """The major version of the Java that Spark will start, or None if there is none."""
    if java is None:
        home = os.environ.get("JAVA_HOME")
        java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def check_java() -> None:
    """One clear line when Java is missing or too old for the installed Spark (a full
    pyspark: :func:`.clients.require_classic` was asked first)."""
    from pyspark import SparkContext
    if SparkContext._gateway is not None:
        return  # a JVM is already running
    need = _required_java()
    have = java_version()
    if have is None:
        raise EnvironmentProblem(
            f"Java not found: Spark needs Java {need}+ (install e.g. openjdk-{need}-jre-headless "
            "and put it on PATH or set JAVA_HOME)")
    if have < need:
        raise EnvironmentProblem(
            f"Java {have} is too old: this Spark needs Java {need}+ (install openjdk-{need} "
            "and set JAVA_HOME)")


# --------------------------------------------------------------------------- description

def describe(spark: Any) -> SessionInfo:
    """Facts about *spark* that work for both classic and Connect sessions."""
    connect = is_connect(spark)
    conf = spark.conf
    if connect:
        master = connect_url(spark)
        server_master = _safe_conf(conf, "spark.master")  # the server's own master
        if server_master:
            master = f"{master} (server master: {server_master})"
    else:
        master = spark.sparkContext.master  # classic only
    from . import __version__
    from .devices import session_gpus
    started_here = spark is _started_here
    info = SessionInfo(
        mode="connect" if connect else "classic",
        master=master,
        version=spark.version,
        app_name=_safe_conf(conf, "spark.app.name"),
        started_here=started_here,
        where=_where(spark, connect, started_here),
        package_version=__version__,
        gpus=session_gpus(conf),
    )
    if not connect:
        sc = spark.sparkContext  # classic only
        info.cores = sc.defaultParallelism
        try:  # executors known to the driver (the driver itself excluded)
            infos = sc.statusTracker().getExecutorInfos()
            info.executors = max(len(infos) - 1, 0) or (1 if sc.master.startswith("local[") else 0)
        except Exception:  # noqa: BLE001 - a Py4J hiccup must not hide the rest of %dlspark
            pass
    return info


def _where(spark: Any, connect: bool, started_here: bool) -> str:
    """What the session is, in words (an attached server is never called embedded)."""
    if connect and os.environ.get("SPARK_LOCAL_REMOTE") and started_here:
        return "in-process Connect server started by sparkdl_magics"
    if connect:
        return f"remote Connect server at {connect_url(spark)}"
    return "embedded, started by sparkdl_magics" if started_here else "user session"


def _safe_conf(conf: Any, key: str) -> Optional[str]:
    try:
        return conf.get(key, None)
    except Exception:  # noqa: BLE001 - an unset or unreadable setting is simply not shown
        return None


def connect_url(spark: Any) -> str:
    """The sc:// address a Connect session talks to (without its token)."""
    url = getattr(getattr(getattr(spark, "_client", None), "_builder", None), "url", None)
    netloc = getattr(url, "netloc", None)
    return f"sc://{netloc}" if netloc else "sc://"


def task_cores(spark: Any) -> int:
    """Cores one task may use (spark.task.cpus), for sizing TensorFlow thread pools."""
    value = _safe_conf(spark.conf, "spark.task.cpus")
    return int(value) if value and value.isdigit() else 1


def task_slots(spark: Any) -> int:
    """How many tasks run at once (cores / spark.task.cpus), for sizing partitions.

    Classic: ``defaultParallelism`` (the executors' cores). Connect has no
    SparkContext: ``spark.default.parallelism`` if set, else the server's master
    (``local[N]``, ``local-cluster[n,c,m]``), else 2.
    """
    if is_connect(spark):
        value = _safe_conf(spark.conf, "spark.default.parallelism")
        cores = int(value) if value and value.isdigit() else \
            master_cores(_safe_conf(spark.conf, "spark.master"))
    else:
        cores = spark.sparkContext.defaultParallelism  # classic only
    return max(1, int(cores or 2) // task_cores(spark))


def master_cores(master: Optional[str]) -> Optional[int]:
    """Cores a local master string names (``local[4]``, ``local[*]``, ``local-cluster[2,1,1024]``)."""
    if not master:
        return None
    found = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\d+)?\])?", master.strip())
    if found:
        return (os.cpu_count() or 1) if found.group(1) in (None, "*") else int(found.group(1))
    found = re.fullmatch(r"local-cluster\[(\d+),\s*(\d+),\s*\d+\]", master.strip())
    return int(found.group(1)) * int(found.group(2)) if found else None
