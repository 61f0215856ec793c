"""The notebooks as saved: what a reader sees without running them, and what nbval checks.

- No saved output holds an absolute path of the machine that ran it (``/home/...``,
  ``file:/work/...``, ``C:\\...``) or any of the noise the quiet-cells tests keep out
  of cells (:data:`helpers.NOISE`).
- Every cell marked ``# NBVAL_CHECK_OUTPUT`` is really checked: nbval compares only
  cells saved with an execution count (an unrun reference cell is skipped silently),
  so each such cell has one, and has outputs to compare with.
- No "issue N" markers in the package, tests, benchmarks or notebooks: an issue number
  means nothing to a reader of the code.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import NOISE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHECK = "# NBVAL_CHECK_OUTPUT"

#: An absolute path: a POSIX one of two or more parts where a path starts (not inside a
#: URL, a relative path or a closing HTML tag; its top folder has two or more letters,
#: so Open Images' label ids such as ``/m/0cgh4`` are not paths), a ``file:`` URI, or a
#: Windows drive path.
ABSOLUTE = re.compile(r"file:/+[^\s'\"<>]+|(?<![\w/.~+<:-])/[\w.@-]{2,}/[^\s'\"<>]*"
                      r"|\b[A-Za-z]:\\\\?[\w. -]+")
#: Inline images (``data:image/png;base64,...``) hold '/' that are not paths.
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


def _texts(output: dict):
    """The text a reader sees of one saved output: streams, tracebacks, text mime data."""
    if "text" in output:
        yield "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
    if output["output_type"] == "error":
        yield "\n".join(output.get("traceback", [])) + "\n" + output.get("evalue", "")
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            text = value if isinstance(value, str) else (
                "".join(value) if isinstance(value, list) else json.dumps(value))
            yield DATA_URI.sub("", text)


def _outputs(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            for text in _texts(output):
                yield i, text


def test_the_path_and_noise_patterns_find_what_they_are_for():
    found = [p for t in ("file:/work/wt-labels/notebooks/data/x.png", "see /home/me/data/",
                         "'/tmp/pytest-1/x'", r"C:\Users\me\data", "<td>/root/x/y.png</td>")
             for p in ABSOLUTE.findall(t)]
    assert len(found) == 5, found
    clean = ("data/digits/3/x.png", "https://example.org/a/b", "sc://localhost:PORT",
             "train 58 / test 38", "4.96 images/s", "</td></tr>", "s3://openimages/train/x",
             "~/data/photos", "Red circle|Green square", "LabelName /m/0cgh4")
    assert not [t for t in clean if ABSOLUTE.search(t)]
    assert not ABSOLUTE.search(DATA_URI.sub("", "<img src='data:image/png;base64,iVB/a+/b/c='>"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_outputs_hold_no_absolute_path_and_no_noise(path):
    problems = []
    for i, text in _outputs(path):
        problems += [f"cell {i}: path {m!r}" for m in ABSOLUTE.findall(text)]
        problems += [f"cell {i}: {n!r} in {text[:200]!r}" for n in NOISE if n in text]
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_checked_cell_is_saved_run_with_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    unchecked = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
                 and "".join(c["source"]).lstrip().startswith(CHECK)
                 and (c.get("execution_count") is None or not c.get("outputs"))]
    assert not unchecked, (f"cells {unchecked} are marked {CHECK} but were saved unrun or "
                           "without outputs: nbval would check nothing there")


def test_no_issue_numbers_in_code_tests_benchmarks_or_notebooks():
    marker = re.compile(r"\bissues? ?#?\d+", re.IGNORECASE)
    found = []
    for folder in ("sparkdl_magics", "tests", "benchmarks", "notebooks"):
        for path in sorted((ROOT / folder).rglob("*")):
            below = path.relative_to(ROOT / folder).parts
            if path.suffix not in (".py", ".ipynb", ".md", ".cfg") or \
                    ".ipynb_checkpoints" in below or (folder == "notebooks" and "data" in below):
                continue  # notebooks/data: what the notebooks write (git-ignored)
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if marker.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not found, "\n".join(found)
