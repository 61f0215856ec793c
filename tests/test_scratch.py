"""The package's own files (shipped models, a saved keras.Model, a kept fine-tuned model)
live in one scratch folder per process, removed when the process exits: notebooks and
test runs must not fill the temp folder (CI once ran out of disk on such leftovers)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

_FILES_OF_A_SESSION = """
import json, os, sys
import keras
from sparkdl_magics import tensors, weights
from sparkdl_magics.finetuning.result import keep_model_file
shipped = weights.ship(None, sys.argv[1]).driver_path
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
saved = tensors._model_path(model)
kept = keep_model_file(b"model bytes", "MobileNetV3Small")
paths = [shipped, saved, kept]
print(json.dumps({"paths": paths, "existed": [os.path.exists(p) for p in paths]}))
"""


def test_the_files_a_session_writes_are_removed_when_it_exits(tmp_path):
    model_file = tmp_path / "model.weights.h5"
    model_file.write_bytes(b"x" * 1000)
    out = subprocess.run([sys.executable, "-c", _FILES_OF_A_SESSION, str(model_file)],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["existed"] == [True, True, True]
    roots = {os.path.dirname(os.path.dirname(p)) for p in seen["paths"]}
    assert len(roots) == 1, f"not one scratch folder: {roots}"
    left = [p for p in seen["paths"] if os.path.exists(p)] + [r for r in roots if os.path.exists(r)]
    assert not left, f"left behind: {left}"


_FORK_THEN_EXIT = """
import os, sys
from sparkdl_magics.scratch import scratch_dir
folder = scratch_dir("fork-check-")
pid = os.fork()
if pid == 0:
    sys.exit(0)  # the child exits normally: the atexit hooks it inherited run
os.waitpid(pid, 0)
print(folder, os.path.isdir(folder))
"""


def test_a_forked_child_exiting_leaves_its_parents_scratch_folder():
    """A forked child (multiprocessing, Spark's Python worker daemon) that exits normally
    runs its parent's atexit hooks: it must not delete files the parent still uses."""
    out = subprocess.run([sys.executable, "-c", _FORK_THEN_EXIT], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    folder, alive = out.split()
    assert alive == "True", "the child's exit removed its parent's scratch folder"
    assert not os.path.exists(folder), "the parent's own exit left it behind"
