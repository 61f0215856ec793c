"""What a data scientist sees: the quickstart and an interrupt in JupyterLab, in a real
headless Chromium driven by selenium.

JupyterLab runs on 127.0.0.1 (free port, random token) in a temporary root dir with a
temporary settings dir (notebook windowing off, so every cell is in the page), and its
kernels run this interpreter with this checkout on the import path, offline (an empty
Keras cache, downloads refused: ``weights: auto`` takes its fallback, as in CI).

Checked: the quickstart's metrics in the browser equal those of a headless run of the
same cells (``sparkdl_magics.run_notebook``, what ``make quickstart`` runs) in another
folder; widgets render (no "Loading widget", no widget repr text); every progress bar
only moves forward and finished bars end at 100 % (a MutationObserver records each
bar's ``style.width``; values shown under 0.1 s are ignored: value and max arrive as
separate updates); the saved notebook has no traceback and no JVM/Keras noise, and its
only error output is the interrupted cell's one line; the cell after the interrupt
works. Screenshots go to ``artifacts/browser/`` (git-ignored).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import NOISE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and os.path.exists(p)), None)
CHROMEDRIVER = next((p for p in (os.environ.get("CHROMEDRIVER"), shutil.which("chromedriver"),
                                 "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
                     if p and os.path.exists(p)), None)
INTERRUPT_LINE = "%%featurize: interrupted; this cell's Spark jobs were cancelled"

# Appended to the quickstart's cells: its metrics, to compare with a headless run's.
METRICS_CELL = "import json\nprint('metrics:', json.dumps(report.metrics, sort_keys=True))"
# Cells appended to the copy of the quickstart: a featurize long enough to interrupt.
SETUP_CELL = ("from sparkdl_magics.datasets import write_digits\n"
              "many_counts = write_digits('data/many', per_class=None, size=32)\n"
              "%dlload many --path data/many --split 1")
LONG_CELL = "%%featurize many -> many_features\nmodel: MobileNetV3Small\nweights: none\nbatch_size: 16"
NEXT_CELL = "print('next cell', 'many_features' in globals(), many.df.count())"

# Records every progress bar's width changes (installed before anything runs).
OBSERVER_JS = r"""
if (!window.__bars) {
  window.__bars = [];
  let next = 0;
  const cellOf = (el) => {
    const cell = el.closest('.jp-Cell');
    return cell ? Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell')).indexOf(cell) : -1;
  };
  const record = (bar) => {
    if (!bar.dataset.barId) { bar.dataset.barId = String(next++); }
    window.__bars.push({bar: +bar.dataset.barId, cell: cellOf(bar), t: performance.now(),
                        w: parseFloat(bar.style.width || '0')});
  };
  const scan = (node) => {
    if (node.nodeType !== 1) return;
    if (node.matches('.widget-hprogress .progress-bar')) record(node);
    node.querySelectorAll('.widget-hprogress .progress-bar').forEach(record);
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === 'attributes') {
        if (m.target.matches && m.target.matches('.widget-hprogress .progress-bar')) record(m.target);
      } else { m.addedNodes.forEach(scan); }
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true,
                             attributeFilter: ['style']});
  scan(document.body);
}
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _require_browser() -> None:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER))
               if path is None]
    if missing:
        pytest.skip(f"no Chromium here ({', '.join(missing)} not found): install the "
                    "chromium and chromium-driver packages (apt), as `make test` and .ci/run do")
    for module in ("selenium", "jupyterlab"):
        try:
            __import__(module)
        except ImportError:
            pytest.fail(f"{module} is not installed: it is in the [test] extra "
                        "(pip install -e '.[test]')")


def offline_env(tmp: Path) -> dict:
    """What the kernels get: this checkout on the import path, an empty Keras cache and
    downloads refused (``weights: auto`` takes its fallback, as in CI)."""
    keras_home = tmp / "keras"
    keras_home.mkdir(exist_ok=True)
    refused = f"http://127.0.0.1:{_free_port()}"  # nothing listens: downloads fail at once
    return dict(PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
                KERAS_HOME=str(keras_home), TF_CPP_MIN_LOG_LEVEL="2",
                HTTPS_PROXY=refused, https_proxy=refused, HTTP_PROXY=refused, http_proxy=refused,
                NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")


def quickstart_metrics(cells) -> dict:
    """The metrics the appended METRICS_CELL printed (cells of a saved notebook)."""
    for cell in cells:
        if cell["cell_type"] == "code" and "".join(cell["source"]) == METRICS_CELL:
            text = "".join(_text_of(o) for o in cell.get("outputs", []))
            line = next(ln for ln in text.splitlines() if ln.startswith("metrics: "))
            return json.loads(line[len("metrics: "):])
    raise AssertionError("the metrics cell is not in the notebook")


def run_headless(nb, folder: Path, monkeypatch) -> dict:
    """The quickstart's cells as ``make quickstart`` runs them (nbclient, no browser), in
    another folder, offline like the browser's kernels: the metrics it printed."""
    import nbformat

    from sparkdl_magics.run_notebook import run
    folder.mkdir()
    for key, value in offline_env(folder).items():
        monkeypatch.setenv(key, value)
    nbformat.write(nb, folder / "quickstart.ipynb")
    assert run(folder / "quickstart.ipynb", output=folder / "ran.ipynb") == 0
    monkeypatch.undo()
    return quickstart_metrics(nbformat.read(folder / "ran.ipynb", as_version=4).cells)


class Lab:
    """A JupyterLab server started here, and the API calls the test needs."""

    def __init__(self, tmp: Path):
        self.root = tmp / "root"
        self.root.mkdir()
        settings = tmp / "settings"
        for ext, values in {
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none",
                                                       "scrollPastEnd": False},
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                            "checkForUpdates": False},
        }.items():
            path = settings / f"{ext}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.port, self.token = _free_port(), secrets.token_hex(16)
        env = dict(os.environ, **offline_env(tmp), JUPYTER_CONFIG_DIR=str(tmp / "config"),
                   JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
        env.pop("SPARKDL_PROGRESS", None)  # the default: a widget inside a kernel
        self.log = open(tmp / "jupyterlab.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", "--allow-root", f"--ServerApp.root_dir={self.root}",
             f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'ws'}",
             "--LabApp.news_url=", "--ServerApp.open_browser=False"],
            cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.api("status")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {self.logtail()}")
                time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def kernels_idle(self) -> bool:
        kernels = self.api("kernels")
        return bool(kernels) and all(k["execution_state"] == "idle" for k in kernels)

    def logtail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def close(self) -> None:
        try:
            for kernel in self.api("kernels") or []:
                self.api(f"kernels/{kernel['id']}", method="DELETE")
        except OSError:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Page:
    """The notebook in Chromium, operated through JupyterLab's own menus."""

    def __init__(self, lab: Lab, tmp: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                     f"--user-data-dir={tmp / 'chromium'}"):
            options.add_argument(flag)
        self.lab = lab
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_script_timeout(30)

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def wait_for(self, condition, timeout: float, what: str, interval: float = 0.5):
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = condition()
            except Exception:  # noqa: BLE001 - the page is still changing; ask again
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                self.screenshot("timeout")
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            time.sleep(interval)

    def open(self, name: str) -> None:
        self.driver.get(f"{self.lab.url}/lab/tree/{name}?token={self.lab.token}")
        self.wait_for(lambda: self.js("return document.querySelectorAll('.jp-Notebook .jp-Cell').length"),
                      120, "the notebook to open")
        self.wait_for(self.idle, 120, "the kernel to start")
        self.js(OBSERVER_JS)

    def menu(self, label: str, command: str) -> None:
        from selenium.webdriver.common.by import By
        items = [el for el in self.driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
                 if el.text.strip() == label]
        assert items, f"no {label!r} menu"
        items[0].click()
        entry = self.wait_for(lambda: self.driver.find_element(
            By.CSS_SELECTOR, f'.lm-Menu-item[data-command="{command}"]'), 10, f"menu item {command}")
        entry.click()

    def cells(self):
        from selenium.webdriver.common.by import By
        return self.driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")

    def select(self, index: int) -> None:
        from selenium.webdriver.common.by import By
        cell = self.cells()[index]
        self.js("arguments[0].scrollIntoView({block: 'center'})", cell)
        cell.find_element(By.CSS_SELECTOR, ".jp-InputPrompt").click()
        self.wait_for(lambda: "jp-mod-active" in self.cells()[index].get_attribute("class"), 10,
                      f"cell {index} to be selected")

    def idle(self) -> bool:
        """Idle only when the toolbar, every prompt and the server agree."""
        status = self.js("const el = document.querySelector('.jp-Notebook-ExecutionIndicator');"
                         "return el ? el.getAttribute('data-status') : null;")
        queued = self.js("return Array.from(document.querySelectorAll('.jp-InputPrompt'))"
                         ".some(p => p.textContent.includes('[*]'));")
        return status == "idle" and not queued and self.lab.kernels_idle()

    def wait_idle(self, timeout: float, what: str) -> None:
        time.sleep(1)
        self.wait_for(lambda: self.idle() and (time.sleep(1.5) or self.idle()), timeout, what)

    def bar_count(self, index: int) -> int:
        from selenium.webdriver.common.by import By
        return len(self.cells()[index].find_elements(By.CSS_SELECTOR,
                                                     ".widget-hprogress .progress-bar"))

    def bar_width(self, index: int) -> float:
        from selenium.webdriver.common.by import By
        bars = self.cells()[index].find_elements(By.CSS_SELECTOR, ".widget-hprogress .progress-bar")
        return max((float(b.value_of_css_property("width").rstrip("px") or 0) for b in bars), default=0.0)

    def screenshot(self, name: str) -> Path:
        """The whole notebook: the window is made as tall as the notebook's scroll height."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        height = self.js("const el = document.querySelector('.jp-WindowedPanel-outer') || "
                         "document.querySelector('.jp-NotebookPanel-notebook');"
                         "return el ? el.scrollHeight : 1000;") or 1000
        self.driver.set_window_size(1400, min(int(height) + 300, 16000))
        time.sleep(1)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1400, 1000)
        return path

    def save(self, path: Path) -> dict:
        before = path.stat().st_mtime_ns
        self.menu("File", "docmanager:save")
        self.wait_for(lambda: path.stat().st_mtime_ns != before, 30, "the notebook to be saved")
        time.sleep(1)
        return json.loads(path.read_text())

    def close(self) -> None:
        self.driver.quit()


def _bar_problems(samples, min_shown: float = 100.0):
    """Per bar: the widths shown for at least *min_shown* ms; a drop is a problem."""
    by_bar = {}
    for s in samples:
        by_bar.setdefault(s["bar"], []).append(s)
    shown, problems = {}, []
    for bar, seq in by_bar.items():
        seq.sort(key=lambda s: s["t"])
        kept = [s for s, nxt in zip(seq, seq[1:] + [None])
                if nxt is None or nxt["t"] - s["t"] >= min_shown]
        widths = [s["w"] for s in kept]
        shown[bar] = (seq[0]["cell"], widths)
        drops = [(a, b) for a, b in zip(widths, widths[1:]) if b < a - 1e-6]
        if drops:
            problems.append(f"bar {bar} (cell {seq[0]['cell']}) went back: {drops[:5]} in {widths}")
    return shown, problems


def _text_of(output: dict) -> str:
    if output["output_type"] == "stream":
        return output["text"] if isinstance(output["text"], str) else "".join(output["text"])
    if output["output_type"] == "error":
        return "\n".join(output["traceback"]) + "\n" + output.get("evalue", "")
    return ""


@pytest.mark.timeout(1800)  # the quickstart twice (headless, then in the browser)
def test_quickstart_and_an_interrupt_in_jupyterlab(tmp_path, monkeypatch):
    _require_browser()
    import nbformat
    started = time.monotonic()
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells.append(nbformat.v4.new_code_cell(METRICS_CELL))
    headless = run_headless(nb, tmp_path / "headless", monkeypatch)
    timings = {"headless": round(time.monotonic() - started)}
    lab = Lab(tmp_path)
    page = None
    try:
        first_extra = len(nb.cells)
        nb.cells += [nbformat.v4.new_code_cell(src) for src in (SETUP_CELL, LONG_CELL, NEXT_CELL)]
        path = lab.root / "quickstart.ipynb"
        nbformat.write(nb, path)

        page = Page(lab, tmp_path)
        page.open(path.name)

        # 1. The quickstart: every cell above the appended ones.
        page.select(first_extra)
        page.menu("Run", "notebook:run-all-above")
        page.wait_idle(900, "the quickstart to run")
        quickstart_png = page.screenshot("quickstart")
        body = page.js("return document.querySelector('.jp-Notebook').innerText")
        timings["quickstart"] = round(time.monotonic() - started)

        # 2. A long featurize, interrupted from the Kernel menu while it runs.
        page.select(first_extra)
        page.menu("Run", "notebook:run-cell")
        page.wait_idle(300, "the setup cell")
        page.select(first_extra + 1)
        page.menu("Run", "notebook:run-cell")
        # Interrupt while it runs: a few seconds after its bar shows (the whole featurize
        # takes far longer on these cores), not when the bar first moves — by then a fast
        # machine may be nearly done, and the interrupt would land after the cell.
        page.wait_for(lambda: page.bar_count(first_extra + 1) > 0, 300,
                      "the long featurize's progress bar to show", interval=0.2)
        time.sleep(5)
        assert not page.idle(), "the long featurize ended before it could be interrupted"
        page.menu("Kernel", "kernelmenu:interrupt")
        page.wait_idle(120, "the interrupted cell to stop")
        time.sleep(3)  # the JVM's warnings for killed workers would come now
        page.select(first_extra + 2)
        page.menu("Run", "notebook:run-cell")
        page.wait_idle(120, "the cell after the interrupt")
        interrupt_png = page.screenshot("interrupt")
        body += page.js("return document.querySelector('.jp-Notebook').innerText")
        interrupted_text = page.js(  # the cell's outputs other than its progress widget
            "return Array.from(arguments[0].querySelectorAll('.jp-OutputArea-output'))"
            ".filter(o => !o.querySelector('.jupyter-widgets'))"
            ".map(o => o.innerText).join('\\n')", page.cells()[first_extra + 1])
        samples = page.js("return window.__bars")
        saved = page.save(path)
        timings["total"] = round(time.monotonic() - started)
    finally:
        if page is not None:
            page.close()
        lab.close()
    print("browser test timings (s):", timings, "screenshots:", quickstart_png, interrupt_png)

    # The same seeded cells give the same numbers in the browser and headless (another
    # folder, another kernel launcher).
    in_browser = quickstart_metrics(saved["cells"])
    print("quickstart metrics, headless:", headless, "in JupyterLab:", in_browser)
    assert in_browser == headless

    # Widgets rendered, never their text form.
    assert "Loading widget" not in body
    assert "IntProgress(" not in body and "VBox(" not in body and "HBox(" not in body

    # The saved notebook: the only error is the interrupted cell's one line; no noise.
    cells = saved["cells"]
    errors = [(i, o) for i, c in enumerate(cells) if c["cell_type"] == "code"
              for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert [i for i, _ in errors] == [first_extra + 1], errors
    (_, error), = errors
    assert error["ename"] == "KeyboardInterrupt"
    assert len(error["traceback"]) == 1 and INTERRUPT_LINE in error["traceback"][0], error
    for i, cell in enumerate(cells):
        for output in cell.get("outputs", []):
            text = _text_of(output)
            found = [n for n in NOISE if n in text]
            assert not found, f"cell {i} printed {found}: {text[:2000]}"
    assert [line for line in interrupted_text.splitlines() if line.strip()] == [
        error["traceback"][0].replace("\x1b[0;31m", "").replace("\x1b[0m", "")], interrupted_text
    next_out = "".join(_text_of(o) for o in cells[first_extra + 2]["outputs"])
    assert next_out.strip() == "next cell False 1797", cells[first_extra + 2]["outputs"]

    # Progress bars: forward only; every finished cell's bars end at 100 %.
    shown, problems = _bar_problems(samples)
    assert shown, "no progress bar was seen"
    unfinished = [(bar, cell, widths) for bar, (cell, widths) in shown.items()
                  if cell != first_extra + 1 and (not widths or widths[-1] < 99.9)]
    assert not unfinished, f"bars that did not end at 100 %: {unfinished}"
    assert not problems, ("progress bar value went backwards (the bar must track images "
                          "done, never what was merely scheduled): " + "; ".join(problems))
