"""Shared fixtures: Spark sessions in four modes, a local S3 server, synthetic image
folders and weights, a test shell.

Where tests go: ``tests/test_<module>.py`` tests ``sparkdl_magics/<module>`` (a module or
package) and the magic that calls it (``test_featurizer.py``: ``featurize`` and
``%%featurize``; ``test_explain.py``: ``explanation``; ``test_finetune.py``:
``finetuning/``). Contracts that cut across modules have their own files:
``test_workflow.py`` (the four steps end to end), ``test_bad_inputs.py`` (every bad input
is one line, table-driven), ``test_faults.py`` (killed workers and sessions, interrupts,
leaks), ``test_hidden_files.py`` (every file loaded, invalid or skipped),
``test_quiet_cells.py`` (no noise in cells), ``test_notebooks.py`` (the notebooks' saved
outputs), ``test_browser.py`` (JupyterLab in headless Chromium) and ``test_packaging.py``
(the sdist and wheel outside the checkout). Shared helpers are in ``helpers.py``, image
files in ``imagegen.py``, the separate Connect server in ``connect_server.py``, the S3
server in ``s3_server.py``, the test shell in ``shell.py``.

Spark sessions: ``spark`` (local[2]), ``spark_cluster`` (local-cluster[2,1,1024]: two
executor JVMs, so code really ships to other processes) and ``spark_connect`` (Spark
Connect, run twice: an in-process server, ``connect``, and a separate server started
with Spark's own script, ``remote``). ``spark_any`` runs a test once per mode (local,
cluster, connect, remote). Only one session lives at a time; tests are reordered so each
mode starts once, and marked ``cluster`` / ``connect`` by mode. These fixtures are
function scoped on purpose: never cache a DataFrame across tests in a session-scoped
fixture, since the session behind it may have been switched.

Other fixtures: ``s3`` (moto's S3 server on 127.0.0.1; the AWS variables point at it
before any JVM starts, so every worker inherits them), ``image_folder`` and
``image_folder_with_corrupt`` (class folders of synthetic JPEG/PNG files, the second with
zero-byte, text and truncated files), ``ip`` (an IPython shell with the extension loaded
whose ``run_cell`` raises the cell's error), ``small_weights`` / ``top_weights`` (weights
files of the small test model) and ``cached_resnet50`` (a Keras cache holding a
ResNet50 weights file).
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import SMALL, full_model, write_weights  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from imagegen import write_corrupt_files, write_labelled_folder  # noqa: E402
from s3_server import S3Server, configure_environment  # noqa: E402

# Before any Spark JVM starts, so every worker inherits it: the AWS variables point at the
# run's own S3 server (moto, on 127.0.0.1; started by the ``s3`` fixture on first use).
S3_PORT = configure_environment()

MODES = ("local", "cluster", "connect", "remote")
MASTERS = {"local": "local[2]", "cluster": "local-cluster[2,1,1024]", "connect": "local[2]"}
RUNTIME_CONF = {"spark.sql.shuffle.partitions": "4"}
TEST_CONF = {"spark.ui.enabled": "false", **RUNTIME_CONF}
SPARK_FIXTURES = {"spark": "local", "spark_cluster": "cluster", "spark_connect": "connect"}


class SessionPool:
    """Holds the one live test session and switches mode on demand.

    ``remote`` is a separate Spark Connect server started with Spark's own script (as
    Databricks Connect users meet a cluster), started on first use and stopped when the
    test run ends, also when tests fail or the run is interrupted."""

    def __init__(self):
        self.mode = None
        self.spark = None
        self.server = None

    def get(self, mode: str):
        from sparkdl_magics import session
        if self.mode != mode or self.spark is None or not _alive(self.spark):
            started = time.monotonic()
            session.stop()
            if mode == "connect":
                self.spark = session.start_connect(MASTERS[mode], conf=TEST_CONF)
            elif mode == "remote":
                # static settings (the UI) are fixed when the server starts
                self.spark = session.start_connect(self.remote_url(), conf=RUNTIME_CONF)
            else:
                self.spark = session.start_local(MASTERS[mode], conf=TEST_CONF)
            self.mode = mode
            took = time.monotonic() - started
            if took > 120:  # visible in CI's log even when the test passes
                sys.__stderr__.write(f"\nconftest: switching to the {mode} session took "
                                     f"{took:.0f} s\n")
        return self.spark

    def remote_url(self) -> str:
        """The separate server's sc:// URL, starting it when needed."""
        if self.server is None:
            import shutil
            import tempfile
            from connect_server import ConnectServer
            workdir = tempfile.mkdtemp(prefix="sparkdl-connect-")
            atexit.register(shutil.rmtree, workdir, ignore_errors=True)  # after the stop below
            # started in notebooks/, so the notebooks' relative paths mean the same to it
            self.server = ConnectServer(Path(workdir),
                                        cwd=Path(__file__).resolve().parent.parent / "notebooks")
            atexit.register(self.server.stop)  # a run that dies still stops it
        self.server.ensure_running()
        return self.server.url

    def close(self):
        from sparkdl_magics import session
        if self.spark is not None:
            session.stop()
        self.spark, self.mode = None, None

    def shutdown(self):
        self.close()
        if self.server is not None:
            self.server.stop()


#: How long a pooled session may take to answer ``spark.range(1).count()`` before it is
#: taken for dead and replaced: pyspark's own retry policy (on the in-process Connect
#: server's session) keeps a call to a server in a bad state going for 10+ minutes, which
#: once stalled a CI run's fixture set-up for 15 minutes.
ALIVE_TIMEOUT_S = 60.0


def _alive(spark, timeout: float = ALIVE_TIMEOUT_S) -> bool:
    """Whether *spark* answers a tiny job within *timeout* seconds (asked on a daemon
    thread, so a call that never returns cannot hold the run)."""
    answered = []

    def ask():
        try:
            spark.range(1).count()
            answered.append(True)
        except Exception:  # noqa: BLE001 - any failure means "not usable"
            pass

    thread = threading.Thread(target=ask, name="session-alive", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        sys.__stderr__.write(f"\nconftest: the pooled session did not answer within "
                             f"{timeout:.0f} s; starting a new one\n")
    return bool(answered)


_POOL = SessionPool()


@pytest.fixture(scope="session")
def session_pool():
    yield _POOL
    _POOL.shutdown()


@pytest.fixture
def spark(session_pool):
    return session_pool.get("local")


@pytest.fixture
def spark_cluster(session_pool):
    return session_pool.get("cluster")


@pytest.fixture(params=("connect", "remote"))
def spark_connect(request, session_pool):
    """Spark Connect twice: the in-process server and a separate one (Spark's script)."""
    return session_pool.get(request.param)


@pytest.fixture(params=MODES)
def spark_any(request, session_pool):
    """A test using this runs once per mode: local, local-cluster, Connect."""
    return session_pool.get(request.param)


def _mode_of(item) -> int:
    names = getattr(item, "fixturenames", ())
    callspec = getattr(item, "callspec", None)
    for parametrized in ("spark_any", "spark_connect"):
        if parametrized in names and callspec is not None and parametrized in callspec.params:
            return 1 + MODES.index(callspec.params[parametrized])
    for fixture, mode in SPARK_FIXTURES.items():
        if fixture in names:
            return 1 + MODES.index(mode)
    return 0


def pytest_collection_modifyitems(session, config, items):
    """Group tests by Spark mode so each session starts once (stable within a mode)."""
    items.sort(key=_mode_of)
    for item in items:
        mode = _mode_of(item)
        if mode == 2:
            item.add_marker(pytest.mark.cluster)
        elif mode in (3, 4):
            item.add_marker(pytest.mark.connect)


# --------------------------------------------------------------------------- images

FLOWER_CLASSES = ("daisy", "roses", "tulips")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """root/<class>/<files>: 3 classes x 12 images, JPEG/PNG, RGB/L/RGBA, mixed sizes."""
    root = tmp_path_factory.mktemp("flowers")
    write_labelled_folder(root, FLOWER_CLASSES, per_class=12, seed=1)
    return root


@pytest.fixture(scope="session")
def image_folder_with_corrupt(tmp_path_factory) -> Path:
    """Like image_folder (2 classes x 8) plus zero-byte, text and truncated '.jpg' files."""
    root = tmp_path_factory.mktemp("flowers_bad")
    write_labelled_folder(root, FLOWER_CLASSES[:2], per_class=8, seed=2)
    write_corrupt_files(root / FLOWER_CLASSES[0])
    return root


@pytest.fixture(scope="session")
def s3():
    """The run's S3 API server (moto's server mode on 127.0.0.1), stopped at the end."""
    server = S3Server(S3_PORT).start()
    atexit.register(server.stop)  # a run that dies still stops it
    yield server
    server.stop()


@pytest.fixture
def ip():
    """An IPython shell with the extension loaded whose run_cell raises cell errors."""
    from shell import make_shell
    return make_shell()


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="module")
def small_weights(weights_dir):
    return write_weights(SMALL, weights_dir)


@pytest.fixture(scope="module")
def top_weights(tmp_path_factory) -> Path:
    import keras
    path = tmp_path_factory.mktemp("top") / f"{SMALL}-top.weights.h5"
    keras.utils.set_random_seed(11)
    _, model = full_model()
    last = [lay for lay in model.layers if lay.get_weights()][-1]
    last.set_weights([w * 40.0 for w in last.get_weights()])  # spread the logits
    model.save_weights(str(path))
    del model
    keras.backend.clear_session()
    return path


@pytest.fixture
def cached_resnet50(tmp_path, monkeypatch):
    """A Keras cache (KERAS_HOME) holding ResNet50's no-top ImageNet weights file."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    cached = tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    cached.write_bytes(b"weights")
    return cached
