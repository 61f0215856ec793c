"""Run a notebook headless and write an HTML copy: ``python -m sparkdl_magics.run_notebook``.

This is the README's main job (``make quickstart``). It executes every cell with
nbclient on a fresh kernel of this interpreter, fails on the first cell error, and
writes the executed notebook as HTML so the results can be looked at.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def run(notebook: Path, html: Path | None = None, timeout: int = 1800) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(str(notebook), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    started = time.perf_counter()
    try:
        client.execute()
        status = 0
    except CellExecutionError as exc:
        print(str(exc).strip().splitlines()[-1] if str(exc).strip() else exc, file=sys.stderr)
        status = 1
    print(f"{notebook}: {'ran' if status == 0 else 'FAILED'} in "
          f"{time.perf_counter() - started:.0f} s")
    if html is not None:
        from nbconvert import HTMLExporter
        body, _ = HTMLExporter().from_notebook_node(nb)
        html.write_text(body, encoding="utf-8")
        print(f"wrote {html}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--html", type=Path, default=None, help="write the executed notebook here")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    _ensure_kernel()
    return run(args.notebook, args.html, args.timeout)


def _ensure_kernel() -> None:
    """Make 'python3' mean this interpreter, so the notebook sees this environment."""
    from ipykernel.kernelspec import install
    install(user=False, prefix=sys.prefix, kernel_name="python3")


if __name__ == "__main__":
    sys.exit(main())
