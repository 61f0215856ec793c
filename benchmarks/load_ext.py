"""How long ``%load_ext sparkdl_magics`` takes in a fresh IPython, against a baseline.

The extension must load fast (a target of under 1 s on a quiet machine) because it is the
first thing a notebook runs; it stays fast by importing no TensorFlow, Keras, pyspark or
matplotlib at load (tests/test_magics.py checks that property, without timing it). Each
figure is the median of ``--runs`` fresh processes; the baseline is loading IPython's own
``autoreload`` extension in the same kind of process, so the ratio says what our
extension adds on this machine, however busy it is.

    .venv/bin/python benchmarks/load_ext.py [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

PROBE = r"""
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
t = time.perf_counter()
ip.run_line_magic("load_ext", sys.argv[1])
elapsed = time.perf_counter() - t
heavy = [m for m in ("tensorflow", "keras", "pyspark", "matplotlib") if m in sys.modules]
print(json.dumps({"elapsed": elapsed, "heavy": heavy}))
"""


def load_seconds(extension: str, runs: int) -> tuple[float, list[str]]:
    """Median seconds to load ``extension`` over ``runs`` fresh processes."""
    times, heavy = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE, extension],
                             capture_output=True, text=True, check=True)
        report = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(report["elapsed"])
        heavy = report["heavy"]
    return statistics.median(times), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ours, heavy = load_seconds("sparkdl_magics", args.runs)
    base, _ = load_seconds("autoreload", args.runs)
    print(f"load_ext sparkdl_magics: {ours:.3f} s (median of {args.runs} fresh processes; "
          "target < 1.0 s on a quiet machine)")
    print(f"load_ext autoreload (baseline): {base:.3f} s; ratio {ours / base:.1f}x")
    print(f"heavy modules imported at load: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
