"""Virtualenvs that hold a user's Spark Connect client and this package, installed with
the README's commands, for ``test_clients.py``.

The two wheels (``sparkdl_magics`` from the root, ``sparkdl_magics-connect`` from
``packaging/connect``) are built from a copy of the checkout; ``--find-links`` stands in
for the package index for them (everything else comes from the index or pip's cache).
A venv with TensorFlow takes minutes to make, so each is made once and kept, like pip's
own cache, outside the checkout (``$SPARKDL_TEST_VENVS``, default
``~/.cache/sparkdl_magics/test-venvs/<name>-<key>``), where the key hashes the install
commands, both pyproject files and the interpreter: a later run, also from another clone
(CI's), only reinstalls this checkout's wheel into it (without dependencies) and checks
it again. A new machine makes each venv once.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from test_packaging import REPO, _env, _not_released, _run

VENVS = Path(os.environ.get("SPARKDL_TEST_VENVS")
             or Path("~/.cache/sparkdl_magics/test-venvs").expanduser())

#: The README's commands for each client (``{client}``: the client's own install line).
#: test_clients.py checks that the README shows exactly these.
README_COMMANDS = {
    "pyspark-client": ["pip install pyspark-client", "pip install sparkdl_magics-connect"],
    "databricks-connect": ['pip install "databricks-connect==19.3.*"',
                           "pip install sparkdl_magics-connect"],
    "plain": ["pip install sparkdl_magics"],
}


def find_python(minor: str) -> Optional[str]:
    """An interpreter for Python *minor* ("3.12") that runs: pyenv's, or on PATH (a pyenv
    shim for a version that is not selected is on PATH but does not run)."""
    pyenv = sorted(Path("~/.pyenv/versions").expanduser().glob(f"{minor}.*/bin/python"))
    for candidate in [*reversed(pyenv), shutil.which(f"python{minor}")]:
        if candidate and subprocess.run([str(candidate), "-c", ""],
                                        capture_output=True).returncode == 0:
            return str(candidate)
    return None


def build_wheels(root: Path) -> Dict[str, Path]:
    """{"plain": sparkdl_magics wheel, "connect": sparkdl_magics-connect wheel} in root/dist."""
    src = root / "src"
    shutil.copytree(REPO, src, ignore=_not_released)  # symlinks in packaging/ are copied
    dist = root / "dist"
    for name, folder in (("plain", src), ("connect", src / "packaging" / "connect")):
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, folder],
             f"wheel {name}", cwd=root, timeout=600, env=_env())
    (plain,) = dist.glob("sparkdl_magics-*.whl")
    (connect,) = dist.glob("sparkdl_magics_connect-*.whl")
    return {"plain": plain, "connect": connect}


class ClientVenv:
    """One venv: *python* with *commands* (pip lines) run in it, from *dist* as well."""

    def __init__(self, name: str, python: str, commands: Sequence[str], wheel: Path):
        self.name, self.python, self.commands, self.wheel = name, python, list(commands), wheel
        digest = hashlib.sha256()
        for part in [python, *commands, (REPO / "pyproject.toml").read_text(),
                     (REPO / "packaging" / "connect" / "pyproject.toml").read_text()]:
            digest.update(part.encode())
        self.path = VENVS / f"{name}-{digest.hexdigest()[:12]}"
        self.bin = self.path / "bin"

    def pip(self, args: List[object], step: str, timeout: int = 2400) -> str:
        return _run([self.bin / "python", "-m", "pip", *args], f"{self.name}: {step}",
                    cwd=self.path, timeout=timeout, env=_env()).stdout

    def ensure(self) -> "ClientVenv":
        """Made with the commands (once), with this checkout's wheel in it."""
        if not (self.path / ".installed").exists():
            for stale in self.path.parent.glob(f"{self.name}-*"):  # older install commands:
                shutil.rmtree(stale, ignore_errors=True)          # ~3 GB each, never used again
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _run([self.python, "-m", "venv", self.path],
                 f"{self.name}: venv", cwd=self.path.parent, timeout=600, env=_env())
            for command in self.commands:
                args = command.split()[2:]  # after "pip install"
                self.pip(["install", "--progress-bar", "off", "--find-links",
                          self.wheel.parent, *[a.strip('"') for a in args]], command)
            (self.path / ".installed").write_text("\n".join(self.commands))
        else:  # made by an earlier run: this checkout's code, nothing else changes
            self.pip(["install", "--no-deps", "--force-reinstall", "--quiet", self.wheel],
                     "this checkout's wheel", timeout=600)
        return self

    def checked_packages(self) -> Dict[str, str]:
        """``pip check`` (must be clean), then every installed distribution: {name:
        version}; prints ``pip list | grep -i spark`` as the README's readers see it."""
        self.pip(["check"], "pip check", timeout=300)
        listed = json.loads(self.pip(["list", "--format=json"], "pip list", timeout=300))
        installed = {d["name"].lower(): d["version"] for d in listed}
        print("$ pip list | grep -i spark\n" + "\n".join(
            f"{name:<32} {version}" for name, version in sorted(installed.items())
            if "spark" in name))
        return installed

    def run(self, args: Sequence[object], cwd: Path, timeout: int = 1200,
            **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / "python"), *map(str, args)], cwd=cwd,
                              env=_env(**env), capture_output=True, text=True,
                              timeout=timeout)
