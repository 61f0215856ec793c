"""This process's scratch folder, removed when the process exits.

The package writes files for its own use while a notebook runs: models staged for
shipping to executors, a ``keras.Model`` saved so workers can load it, a fine-tuned
model kept for the session, a saved model copied out of a store. They must live as
long as the process may read them, and no longer: left in the temp folder, every
notebook session and test run added its copies (megabytes to gigabytes) for good.
Each such folder is made here, under one folder per process that ``atexit`` removes.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from typing import Optional

_root: Optional[str] = None
_owner: Optional[int] = None
_lock = threading.Lock()


def scratch_dir(prefix: str) -> str:
    """A new empty folder (its name starts with *prefix*) that lives until this process exits."""
    return tempfile.mkdtemp(prefix=prefix, dir=process_root())


def process_root() -> str:
    """The folder holding this process's scratch folders (made on first use)."""
    global _root, _owner
    with _lock:
        if _root is None or _owner != os.getpid() or not os.path.isdir(_root):
            _root, _owner = tempfile.mkdtemp(prefix="sparkdl_magics-"), os.getpid()
            atexit.register(_remove, _root, _owner)
        return _root


def _remove(root: str, owner: int) -> None:
    # A forked child that exits normally runs its parent's atexit hooks: it must not
    # delete the files its parent still uses.
    if os.getpid() == owner:
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["scratch_dir", "process_root"]
