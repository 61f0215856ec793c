"""Installable by anyone: the sdist and the wheel work outside this repository.

Builds the sdist and, from it, the wheel (``python -m build``) out of a copy of the
checkout (the checkout itself is never written to), checks their metadata (``twine check
--strict``) and contents, installs the wheel with its dependencies into a fresh
virtualenv in a temporary folder, and runs there, from a folder outside the checkout,
``%load_ext sparkdl_magics`` and load → featurize → fit → evaluate on digit images it
writes, through the Python API and through the magics in an IPython shell.

It needs the package index (or pip's cache) for the virtualenv's dependencies and takes
a few minutes: TensorFlow alone is a ~600 MB wheel to fetch and unpack.
"""
from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "sparkdl_magics"
#: Seconds per step, printed with each command (pytest -s, or the failure report).
TIMES: Dict[str, float] = {}

# Not part of a release: what .gitignore keeps out of git, and the notebooks' data.
_ANYWHERE = shutil.ignore_patterns(".git", "__pycache__", "*.py[cod]", ".pytest_cache",
                                   ".ipynb_checkpoints", "spark-warehouse", "metastore_db",
                                   "derby.log")
_AT = {REPO: {".venv", "venv", "build", "dist", "artifacts", ".whl", "quickstart.html",
              "sparkdl_magics.egg-info"},
       REPO / "notebooks": {"data"}}


def _not_released(folder: str, names: List[str]) -> set:
    here = Path(folder)
    return set(_ANYWHERE(folder, names)) | (_AT.get(here, set()) & set(names)) | \
        ({n for n in names if n.endswith(".html")} if here == REPO / "notebooks" else set())


def _version() -> str:
    text = (REPO / PACKAGE / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def _env(**extra: str) -> Dict[str, str]:
    """This environment without what points Python or Spark at the checkout, or at this
    test's settings (with PYTHONDONTWRITEBYTECODE every process would compile TensorFlow
    again: a new user's shell does not set it)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV",
                        "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "SPARK_HOME", "SPARK_REMOTE",
                        "SPARK_CONNECT_MODE_ENABLED")
           and not k.startswith("PYSPARK_")}
    env.update(extra)
    return env


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "".join(f"    {line[:160]}\n" for line in kept)


def _run(cmd: List[object], step: str, cwd: Path, timeout: int,
         env: Dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run one command; print it with its time and output tail; fail with its output.

    Without *env* it runs in this test's environment (build and twine come from there).
    """
    started = time.perf_counter()
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=timeout)
    TIMES[step] = round(time.perf_counter() - started, 1)
    print(f"$ {' '.join(str(c) for c in cmd)}   [{step}: {TIMES[step]} s, exit "
          f"{out.returncode}]\n{_tail(out.stdout)}{_tail(out.stderr, 3)}", flush=True)
    assert out.returncode == 0, (f"{step} failed (exit {out.returncode}):\n"
                                 f"{out.stdout[-5000:]}\n{out.stderr[-5000:]}")
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Dict[str, Path]:
    """The sdist and wheel built from a copy of the checkout: {src, sdist, wheel}."""
    root = tmp_path_factory.mktemp("release")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=_not_released)
    _run([sys.executable, "-m", "build", "--outdir", root / "dist", src], "build",
         cwd=root, timeout=900)
    (sdist,) = (root / "dist").glob("*.tar.gz")
    (wheel,) = (root / "dist").glob("*.whl")
    return {"src": src, "sdist": sdist, "wheel": wheel}


def _package_sources(src: Path) -> List[str]:
    return sorted(p.relative_to(src).as_posix() for p in (src / PACKAGE).rglob("*.py"))


def _wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as whl:
        (name,) = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(whl.read(name).decode())


def test_metadata_passes_twine_check_and_names_what_is_true(release):
    out = _run([sys.executable, "-m", "twine", "check", "--strict", release["sdist"],
                release["wheel"]], "twine check", cwd=release["sdist"].parent, timeout=300)
    assert out.stdout.count("PASSED") == 2, out.stdout
    meta = _wheel_metadata(release["wheel"])
    assert meta["Name"] == PACKAGE and meta["Version"] == _version()
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    requires = meta.get_all("Requires-Dist")
    # a plain `pip install sparkdl_magics` has a Keras backend (TensorFlow)
    assert any(re.fullmatch(r"tensorflow[<>=!,.\d]+", r.replace(" ", "")) for r in requires), \
        requires
    assert not any(r.startswith("tensorflow-cpu") for r in requires)  # same files as tensorflow
    assert {"cpu", "gpu", "test"} <= set(meta.get_all("Provides-Extra"))
    # no links to places that do not exist: add a project URL here once there is one
    assert meta.get_all("Project-URL") is None and meta["Home-page"] is None


def test_wheel_holds_the_package_its_data_and_the_license_only(release):
    with zipfile.ZipFile(release["wheel"]) as whl:
        names = whl.namelist()
        print(f"{release['wheel'].name} ({release['wheel'].stat().st_size // 1024} KiB):\n  "
              + "\n  ".join(names))
        licenses = [n for n in names if re.search(r"\.dist-info/(licenses/)?LICENSE$", n)]
        assert len(licenses) == 1, f"expected one LICENSE in the wheel, found {licenses}"
        license_text = whl.read(licenses[0]).decode()
        index = f"{PACKAGE}/data/imagenet_class_index.json"
        class_index = json.loads(whl.read(index)) if index in names else {}
    dist_info = f"{PACKAGE}-{_version()}.dist-info"
    assert {n.split("/")[0] for n in names} == {PACKAGE, dist_info}  # no tests/, notebooks/
    missing = set(_package_sources(release["src"])) - set(names)
    assert not missing, f"modules missing from the wheel: {sorted(missing)}"
    for data in ("conf/log4j2.properties", "data/imagenet_class_index.json"):
        assert f"{PACKAGE}/{data}" in names
    assert len(class_index) == 1000
    assert license_text == (REPO / "LICENSE").read_text()
    assert "Version 2.0, January 2004" in license_text and \
        "END OF TERMS AND CONDITIONS" in license_text  # the whole text, not a stub
    junk = [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo", ".ipynb"))
            or re.search(r"(^|/)tests?/|\.(png|jpe?g|parquet|keras|h5)$", n)]
    assert not junk, junk


def test_sdist_holds_what_building_and_testing_need(release):
    with tarfile.open(release["sdist"]) as sdist:
        top = f"{PACKAGE}-{_version()}/"
        names = [m.name[len(top):] for m in sdist.getmembers() if m.isfile()]
    required = {"PKG-INFO", "pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE",
                "Makefile", f"{PACKAGE}/conf/log4j2.properties",
                f"{PACKAGE}/data/imagenet_class_index.json", "tests/conftest.py",
                "notebooks/quickstart.ipynb", "notebooks/sanitize.cfg"}
    required |= set(_package_sources(release["src"]))
    assert not required - set(names), sorted(required - set(names))
    junk = [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))
            or n.startswith(("notebooks/data/", ".venv/", ".git/", "build/", "dist/"))
            or "-checkpoint.ipynb" in n]
    assert not junk, junk


SMOKE = r'''
import json, os, sys, time
from IPython.core.interactiveshell import InteractiveShell

started = time.perf_counter()
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "sparkdl_magics")
load_ext_s = time.perf_counter() - started
heavy = [m for m in ("tensorflow", "keras", "pyspark") if m in sys.modules]

import sparkdl_magics
from sparkdl_magics import evaluate, featurize, fit, load_images
from sparkdl_magics.datasets import write_digits

counts = write_digits("digits", per_class=4, size=32)   # 10 classes x 4 PNGs
images = load_images("digits", split=0.5, seed=7)
features = featurize(images, model="MobileNetV3Small", weights="none")
clf = fit(features, maxIter=10)
metrics = evaluate(clf).metrics


def cell(source):
    result = ip.run_cell(source)
    result.raise_error()


cell("%%dlload digits\npath: digits\nsplit: 0.5\nseed: 7\n")
cell("%%featurize digits -> digit_features\nmodel: MobileNetV3Small\nweights: none\n")
cell("%%fit digit_features -> digit_clf\nmaxIter: 10\n")
cell("%evaluate digit_clf -> digit_report")
print("REPORT " + json.dumps({
    "module": sparkdl_magics.__file__, "version": sparkdl_magics.__version__,
    "cwd": os.getcwd(), "load_ext_s": round(load_ext_s, 2), "heavy_after_load_ext": heavy,
    "images": sum(counts.values()), "feature_dim": features.feature_dim,
    "api_accuracy": metrics["accuracy"],
    "magic_accuracy": ip.user_ns["digit_report"].metrics["accuracy"],
    "seconds": round(time.perf_counter() - started, 1)}))
'''


@pytest.mark.timeout(3600)
def test_wheel_works_in_a_fresh_virtualenv_outside_the_checkout(release, tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    venv, elsewhere = root / "venv", root / "elsewhere"
    elsewhere.mkdir()
    (root / "tmp").mkdir()
    assert not elsewhere.resolve().is_relative_to(REPO)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    try:
        _run([sys.executable, "-m", "venv", "--upgrade-deps", venv], "venv", cwd=root,
             timeout=600, env=_env())
        # a plain install, as a new user types it (pip's cache is reused)
        _run([python, "-m", "pip", "install", "--no-compile", "--progress-bar", "off",
              release["wheel"]], "pip install", cwd=elsewhere, timeout=2400, env=_env())
        _run([python, "-m", "pip", "check"], "pip check", cwd=elsewhere, timeout=300,
             env=_env())
        env = _env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                   PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python),
                   IPYTHONDIR=str(root / "ipython"), TMPDIR=str(root / "tmp"))
        # the console script: %load_ext and a magic that needs no Spark
        out = _run([bin_dir / "ipython", "--quick", "--no-banner", "--colors=nocolor", "-c",
                    "%load_ext sparkdl_magics\n%dlmodels MobileNetV3"], "ipython -c",
                   cwd=elsewhere, timeout=300, env=env)
        assert "MobileNetV3Small" in out.stdout and "Traceback" not in out.stdout + out.stderr
        script = root / "smoke.py"
        script.write_text(SMOKE)
        out = _run([python, script], "load-featurize-fit-evaluate", cwd=elsewhere,
                   timeout=1800, env=env)
    finally:
        started = time.perf_counter()
        shutil.rmtree(venv, ignore_errors=True)  # ~3 GB, TensorFlow mostly
        TIMES["remove venv"] = round(time.perf_counter() - started, 1)
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("REPORT ")]
    report = json.loads(line[len("REPORT "):])
    print("steps (s):", TIMES, "\nreport:", report)
    module = Path(report["module"]).resolve()
    assert module.is_relative_to(venv.resolve()) and not module.is_relative_to(REPO), module
    assert report["version"] == _version()
    assert Path(report["cwd"]).resolve() == elsewhere.resolve()
    assert report["heavy_after_load_ext"] == []  # %load_ext stays fast
    assert report["images"] == 40 and report["feature_dim"] == 576
    assert 0.0 <= report["api_accuracy"] <= 1.0 and 0.0 <= report["magic_accuracy"] <= 1.0
    assert "Traceback" not in out.stdout + out.stderr
    # PyPI's tensorflow probing for CUDA on a machine without a driver stays out of cells
    assert "Could not find cuda drivers" not in out.stderr
    assert "failed call to cuInit" not in out.stderr
