"""What a notebook cell shows besides the result: an interrupt is one line, no JVM or
Keras start-up noise.

- An interrupted magic is one error output (``ename: KeyboardInterrupt``, so notebook
  runners see an interrupted cell) whose traceback is one line; the JVM's WARN lines for
  the killed Python workers do not follow it (in that cell or the next).
- Starting the embedded Spark session and the first MLlib fit print no
  ``jdk.incubator.vector`` note and no ``netlib-blas`` dlopen complaint (the JVM writes
  them to the stderr it inherits, which a kernel copies into the cell).
- ``weights: auto`` offline prints one short line, not Keras' ``Downloading data from``
  note plus a warning that repeats the URL.
"""
from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import NOISE

ROOT = Path(__file__).resolve().parents[1]


#: pyspark's markers of a Connect client: a fresh process (a user's new kernel) has none,
#: whatever session this test process was attached to before.
CONNECT_MARKERS = ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_LOCAL_REMOTE")


def _env(**extra: str) -> dict:
    """This interpreter's environment, as a fresh process has it (no Connect markers),
    with this checkout first on the import path."""
    env = {k: v for k, v in os.environ.items() if k not in CONNECT_MARKERS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env(tmp_path: Path) -> dict:
    """An empty Keras cache and every HTTP(S) download refused at once (a proxy on a
    closed local port): ``weights: auto`` takes its fallback, as in CI."""
    proxy = f"http://127.0.0.1:{_closed_port()}"
    (tmp_path / "keras").mkdir(exist_ok=True)
    return {"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": proxy, "https_proxy": proxy,
            "HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost", "TMPDIR": str(tmp_path)}


def _run_python(code: str, tmp_path: Path, timeout: int = 300, **extra: str):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          env=_env(**extra), capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- interrupt: unit

def test_an_interrupted_magic_raises_a_one_line_keyboard_interrupt():
    from sparkdl_magics.magics import featurize
    from sparkdl_magics.magics.runner import run_magic

    class Interrupted:
        SPEC = featurize.SPEC

        @staticmethod
        def run(call, ctx):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        run_magic(Interrupted, shell=None, line="images -> feats", cell="model: InceptionV3")
    exc = caught.value
    assert type(exc).__name__ == "KeyboardInterrupt"  # the notebook's ename
    render = getattr(exc, "_render_traceback_", None)
    assert render is not None, "IPython would print the full traceback of the interrupt"
    (line,) = render()
    assert "%%featurize: interrupted; this cell's Spark jobs were cancelled" in line
    assert exc.__suppress_context__


# --------------------------------------------------------------------------- JVM noise

def test_the_jvm_stderr_filter_drops_only_the_known_noise(tmp_path):
    """Lines written to the launched process's stderr, during and long after the launch."""
    result = _run_python("""
        import subprocess, sys
        from sparkdl_magics.session import quiet_jvm_stderr
        with quiet_jvm_stderr():
            print("python's own stderr", file=sys.stderr, flush=True)
            child = subprocess.Popen(["sh", "-c", "echo 'WARNING: Using incubator modules: "
                "jdk.incubator.vector' >&2; echo before >&2; sleep 1; echo 'netlib-blas: "
                "JNI_OnLoad: dlopen(libblas.so.3) failed: libblas.so.3: cannot open' >&2; "
                "echo '12:00:00 WARN Foo: a real warning' >&2"])
        print("after the launch", file=sys.stderr, flush=True)
        child.wait()
        import time; time.sleep(0.5)
    """, tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert sorted(lines) == sorted(["before", "python's own stderr", "after the launch",
                                    "12:00:00 WARN Foo: a real warning"]), lines


@pytest.mark.slow
def test_first_spark_start_and_first_fit_print_no_jvm_noise(tmp_path):
    """The embedded session's start and MLlib's first BLAS call, in a fresh process: what
    reaches stdout/stderr (a kernel copies both into the cell) has no JVM notes."""
    started = time.perf_counter()
    result = _run_python("""
        from sparkdl_magics import session
        spark = session.start_local("local[2]", conf={"spark.ui.enabled": "false"})
        from pyspark.ml.classification import LogisticRegression
        from pyspark.ml.linalg import Vectors
        df = spark.createDataFrame([(float(i % 2), Vectors.dense([i, (i * 7) % 5, 1.0]))
                                    for i in range(40)], ["label", "features"])
        model = LogisticRegression(maxIter=5).fit(df)
        print("fitted", len(model.coefficients))
        spark.stop()
    """, tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fitted 3" in result.stdout
    out = result.stdout + result.stderr
    for noise in ("jdk.incubator", "netlib", "WARN", "Traceback"):
        assert noise not in out, f"{noise!r} printed:\n{out[-3000:]}"
    assert time.perf_counter() - started < 300


# --------------------------------------------------------------------------- weights: auto

@pytest.mark.slow
def test_offline_auto_weights_fallback_prints_one_short_line(tmp_path):
    result = _run_python("""
        from sparkdl_magics.weights import resolve_spec
        resolved = resolve_spec("MobileNetV3Small", "auto")
        assert resolved.untrained and resolved.weights == "none"
    """, tmp_path, timeout=300, **offline_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    (line,) = lines
    assert "weights: auto -> UNTRAINED" in line and "Connection refused" in line
    assert "Downloading data" not in line and "://" not in line, line
    assert len(line) <= 120, f"{len(line)} characters: {line}"


def test_keras_download_note_shows_only_with_a_download_under_way(tmp_path, monkeypatch, capsys):
    import keras
    from sparkdl_magics import weights as w
    from sparkdl_magics.errors import EnvironmentProblem
    from sparkdl_magics.models import get_model_info
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    info = get_model_info("MobileNetV3Small")

    def downloading(fname, origin, **kwargs):  # what Keras prints, online
        print(f"Downloading data from {origin}")
        sys.stdout.write("\r 10/100 ━━━━ 0s")
        sys.stdout.flush()
        return str(tmp_path / fname)

    monkeypatch.setattr(keras.utils, "get_file", downloading)
    assert w.imagenet_weights(info).endswith(".h5")
    out = capsys.readouterr().out
    assert out.startswith("Downloading data from https://") and "10/100" in out

    def offline(fname, origin, **kwargs):  # ... and offline
        print(f"Downloading data from {origin}")
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(EnvironmentProblem) as caught:
        w.imagenet_weights(info)
    assert capsys.readouterr().out == ""
    assert caught.value.reason == "[Errno -2] Name or service not known"
    assert "://" in str(caught.value)  # weights: imagenet still says where to get them


# --------------------------------------------------------------------------- in a kernel

class Kernel:
    """A real IPython kernel (this interpreter) driven over its messages, as Jupyter does."""

    def __init__(self, cwd: Path, env: dict):
        from jupyter_client.manager import KernelManager
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str, timeout: float = 600, interrupt_when=None, interrupt_after=2.0):
        """The cell's outputs (iopub contents with ``output_type``); *interrupt_when(msg)*
        true for a message arms an interrupt *interrupt_after* seconds later."""
        msg_id = self.kc.execute(code)
        outputs, deadline, fire_at = [], time.monotonic() + timeout, None
        while True:
            if fire_at is not None and time.monotonic() >= fire_at:
                self.km.interrupt_kernel()
                fire_at, interrupt_when = None, None
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell did not finish in {timeout} s: {code[:60]!r}")
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if interrupt_when is not None and fire_at is None and interrupt_when(msg):
                fire_at = time.monotonic() + interrupt_after
            if kind in ("stream", "error", "display_data", "execute_result"):
                outputs.append(dict(content, output_type=kind))
            if kind == "status" and content["execution_state"] == "idle":
                return outputs

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def _streams(outputs) -> str:
    return "".join(o["text"] for o in outputs if o["output_type"] == "stream")


def _tasks_running(msg) -> bool:
    """A progress bar update after some of the cell's Spark tasks are done."""
    if msg["msg_type"] != "comm_msg":
        return False
    state = msg["content"].get("data", {}).get("state", {})
    return isinstance(state.get("value"), int) and state["value"] >= 1


@pytest.mark.slow
def test_interrupting_a_running_featurize_is_one_error_line_and_the_next_cell_works(tmp_path):
    kernel = Kernel(tmp_path, _env(SPARKDL_PROGRESS="widget"))
    try:
        assert not [o for o in kernel.run("%load_ext sparkdl_magics") if o["output_type"] == "error"]
        setup = kernel.run("from sparkdl_magics.datasets import write_digits\n"
                           "counts = write_digits('data/many', per_class=120, size=32)\n"
                           "%dlload many --path data/many --split 1")
        assert not [o for o in setup if o["output_type"] == "error"], setup
        started = time.monotonic()
        outputs = kernel.run("%%featurize many -> feats\nmodel: MobileNetV3Small\n"
                             "weights: none\nbatch_size: 16", interrupt_when=_tasks_running)
        took = time.monotonic() - started
        time.sleep(3)  # the JVM's warnings for the killed workers come after the cell
        after = kernel.run("print('next cell', 'feats' in globals(), many.df.count())")
    finally:
        kernel.close()
    errors = [o for o in outputs if o["output_type"] == "error"]
    assert len(errors) == 1, outputs
    (error,) = errors
    assert error["ename"] == "KeyboardInterrupt", error
    assert len(error["traceback"]) == 1, "\n".join(error["traceback"])
    assert "%%featurize: interrupted; this cell's Spark jobs were cancelled" in error["traceback"][0]
    text = _streams(outputs)
    assert not [n for n in NOISE if n in text], text
    assert "interrupted" not in text, "the one line is the error output, not a stream too"
    assert not [o for o in after if o["output_type"] == "error"], after
    assert _streams(after).strip() == "next cell False 1200", _streams(after)
    assert took < 300
