"""TensorFlow's start-up notes stay out of cells; anything else on stderr still shows.
A missing or broken Keras backend is one line that names what to install."""
import ast
import os
import subprocess
import sys
from pathlib import Path


def _stderr_of(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stderr


def test_import_keras_drops_tensorflow_startup_notes():
    err = _stderr_of("from sparkdl_magics.tfimport import import_keras; import_keras()")
    assert "oneDNN" not in err and "absl::InitializeLog" not in err
    # PyPI's tensorflow (not tensorflow-cpu) on a machine without an NVIDIA driver
    assert "Could not find cuda drivers" not in err and "failed call to cuInit" not in err
    # the same import without the filter does print them (so this test can fail)
    raw = _stderr_of("import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'; import keras")
    assert "oneDNN" in raw or "absl" in raw


def test_other_stderr_output_during_import_is_kept():
    err = _stderr_of(
        "import os\n"
        "from sparkdl_magics.tfimport import _filtered_stderr\n"
        "with _filtered_stderr():\n"
        "    os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "    os.write(2, b'a real problem\\n')\n")
    assert err == "a real problem\n"


def test_cuda_probe_notes_are_dropped_only_without_a_driver():
    """PyPI's tensorflow on a machine without an NVIDIA driver: its CUDA probe is noise."""
    no_driver = _stderr_of(
        "import os\n"
        "from sparkdl_magics.tfimport import _filtered_stderr\n"
        "with _filtered_stderr():\n"
        "    os.write(2, b'I0000 cudart_stub.cc:31] Could not find cuda drivers on your "
        "machine, GPU will not be used.\\n')\n"
        "    os.write(2, b'E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
        "error: Failed call to cuInit: UNKNOWN ERROR (303)\\n')\n"
        "    os.write(2, b'a real problem\\n')\n")
    assert no_driver == "a real problem\n"
    # with a driver there is no such note, and a failing cuInit is a real problem
    driver = _stderr_of(
        "import os\n"
        "from sparkdl_magics.tfimport import _filtered_stderr\n"
        "with _filtered_stderr():\n"
        "    os.write(2, b'E0000 cuda_platform.cc:52] failed call to cuInit: "
        "CUDA_ERROR_NO_DEVICE\\n')\n")
    assert "failed call to cuInit" in driver


# --------------------------------------------------------------------------- missing backend

REPO = Path(__file__).resolve().parents[1]

# Loaded at start-up by every Python started with this folder on PYTHONPATH (the test's
# interpreter and Spark's Python workers alike): the modules named in BLOCK are missing,
# as for a user without them; BREAK names ones that are there but fail to import.
SITECUSTOMIZE = r'''
import importlib.abc, os, sys

class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in os.environ.get("BLOCK", "").split(","):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        if name in os.environ.get("BREAK", "").split(","):
            raise ImportError("libcudart.so.12: cannot open shared object file", name=name)
        return None

sys.meta_path.insert(0, _Blocker())
'''


def _python_without(tmp_path: Path, block: str = "", broken: str = "") -> dict:
    """Environment for a subprocess whose imports of *block* fail as if not installed."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, BLOCK=block, BREAK=broken)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("KERAS_BACKEND", None)
    return env


IMPORT_KERAS = r"""
import sys
from sparkdl_magics.errors import EnvironmentProblem
from sparkdl_magics.tfimport import import_keras
try:
    import_keras()
except EnvironmentProblem as exc:
    print("MESSAGE", exc)
    print("CHAINED", exc.__cause__ is not None)
else:
    print("IMPORTED", "tensorflow" in sys.modules)
"""


def _run(code: str, env: dict, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def test_missing_tensorflow_is_one_line_naming_what_to_install(tmp_path):
    out = _run(IMPORT_KERAS, _python_without(tmp_path, block="tensorflow"), tmp_path)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    message = lines["MESSAGE"]
    assert "\n" not in message
    assert message.startswith("TensorFlow (Keras' backend) is not installed in "
                              f"{sys.executable}: ")
    assert 'pip install "tensorflow>=2.16,<3"' in message
    assert 'pip install "tensorflow[and-cuda]>=2.16,<3"' in message
    assert lines["CHAINED"] == "False"  # no 50-line Keras traceback behind it
    # the sitecustomize really is what stops it: without BLOCK the same code imports
    ok = _run(IMPORT_KERAS, _python_without(tmp_path), tmp_path)
    assert "IMPORTED True" in ok.stdout, ok.stdout + ok.stderr


def test_missing_keras_and_a_broken_tensorflow_are_named_too(tmp_path):
    out = _run(IMPORT_KERAS, _python_without(tmp_path, block="keras"), tmp_path)
    assert f"MESSAGE Keras is not installed in {sys.executable}: " \
           'pip install "keras>=3.3,<4"' in out.stdout, out.stdout + out.stderr
    # installed but failing (a missing shared library): the cause is kept for --debug
    out = _run(IMPORT_KERAS, _python_without(tmp_path, broken="tensorflow"), tmp_path)
    assert f"MESSAGE Keras/TensorFlow is installed in {sys.executable} but failed to import " \
           "(ImportError: libcudart.so.12: cannot open shared object file)" in out.stdout, \
        out.stdout + out.stderr
    assert "CHAINED True" in out.stdout


MAGIC_WITHOUT_TENSORFLOW = r"""
import sys
from PIL import Image
from IPython.core.interactiveshell import InteractiveShell

for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
    import os
    os.makedirs(f"images/{label}", exist_ok=True)
    for n in range(2):
        Image.new("RGB", (32, 32), colour).save(f"images/{label}/{n}.png")
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "sparkdl_magics")
ip.run_line_magic("dlspark", "--master local[1]")
ip.run_cell("%%dlload images\npath: images\n").raise_error()
result = ip.run_cell("%%featurize images -> features\nmodel: MobileNetV3Small\nweights: none\n")
error = result.error_in_exec
print("ERROR", type(error).__name__)
print("SHOWN", repr(error._render_traceback_()))
print("STORED", "features" in ip.user_ns)
"""


def test_a_magic_reports_missing_tensorflow_as_one_line(tmp_path):
    """The issue's case: plain IPython, %%featurize, TensorFlow not installed."""
    out = _run(MAGIC_WITHOUT_TENSORFLOW, _python_without(tmp_path, block="tensorflow"),
               tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines()
                 if line.split(" ", 1)[0] in ("ERROR", "SHOWN", "STORED"))
    assert lines["ERROR"] == "MagicError"
    shown = ast.literal_eval(lines["SHOWN"])  # the lines IPython prints for the error
    assert len(shown) == 1 and "\n" not in shown[0], shown
    assert "%%featurize: TensorFlow (Keras' backend) is not installed in" in shown[0]
    assert 'pip install "tensorflow>=2.16,<3"' in shown[0]
    assert lines["STORED"] == "False"
    assert "Traceback" not in out.stdout


INTERRUPTED_IMPORT = r"""
import os, signal, threading, time
from sparkdl_magics.tfimport import import_keras
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
started = time.monotonic()
try:
    import_keras()
    print("NOT INTERRUPTED")
except KeyboardInterrupt:
    print("INTERRUPTED after", round(time.monotonic() - started, 1))
import keras
print("WORKS", keras.layers.Dense(2)(keras.ops.ones((1, 3))).shape)
"""


def test_an_interrupt_during_the_first_import_waits_for_it_and_leaves_tensorflow_working(
        tmp_path):
    """Ctrl-C 0.3 s into TensorFlow's import: the import finishes, then the interrupt is
    raised; TensorFlow still works (an import cut in half would not, until a restart)."""
    out = _run(INTERRUPTED_IMPORT, dict(os.environ), tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "INTERRUPTED after" in out.stdout, out.stdout
    assert "WORKS (1, 2)" in out.stdout, out.stdout + out.stderr[-2000:]
