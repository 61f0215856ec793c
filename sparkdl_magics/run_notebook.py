"""Run a notebook headless and write an HTML copy: ``python -m sparkdl_magics.run_notebook``.

This is the README's main job (``make quickstart``). It executes every cell with
nbclient on a fresh kernel of this interpreter, fails on the first cell error, and
writes the executed notebook as HTML (``--html``) and/or as a notebook (``--output``)
so the results can be looked at.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


#: nbval compares the saved outputs of cells starting with this line (``--nbval-lax``).
CHECKED = "# NBVAL_CHECK_OUTPUT"


def checked_outputs_only(nb) -> None:
    """Keep the outputs (and execution counts) of the cells nbval checks, clear the rest:
    what a notebook in this repository saves (no timings, widgets or paths of the
    machine that ran it; the references nbval compares with)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)  # nbclient's timestamps of this run
        if not cell.source.lstrip().startswith(CHECKED):
            cell.outputs, cell.execution_count = [], None


def run(notebook: Path, html: Path | None = None, timeout: int = 1800,
        output: Path | None = None, checked_only: bool = False) -> int:
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
    if output is not None:
        if checked_only:
            checked_outputs_only(nb)
        nbformat.write(nb, str(output))
        print(f"wrote {output}")
    if html is not None:
        from nbconvert import HTMLExporter
        body, _ = HTMLExporter().from_notebook_node(nb)
        html.write_text(body, encoding="utf-8")
        print(f"wrote {html}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--html", type=Path, default=None, help="write the executed notebook as HTML here")
    parser.add_argument("--output", type=Path, default=None,
                        help="write the executed notebook (.ipynb) here")
    parser.add_argument("--checked-only", action="store_true",
                        help=f"--output keeps only the outputs of cells marked {CHECKED} "
                             "(to update a notebook's nbval references: --output NOTEBOOK)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    _ensure_kernel()
    return run(args.notebook, args.html, args.timeout, args.output, args.checked_only)


def _ensure_kernel() -> None:
    """Make 'python3' mean this interpreter, so the notebook sees this environment."""
    from ipykernel.kernelspec import install
    install(user=False, prefix=sys.prefix, kernel_name="python3")


if __name__ == "__main__":
    sys.exit(main())
