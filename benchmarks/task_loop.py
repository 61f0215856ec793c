"""The package's task loop without Spark: what the Spark path could reach on these cores.

Each of ``--cores`` processes runs the loop a featurize task runs
(:func:`sparkdl_magics.inference.run_decoded`: the next batch decoded on a thread while
the model runs, TensorFlow on one thread, as on ``local[cores]``) over its share of the
photos, all processes at once. Images/s is all the images over the slowest process's
time, median of ``--repeat`` rounds. Against the model-only ceiling it is the bound that
decoding on the same cores sets; the Spark path's ratio to it is Spark's own cost
(planning, scheduling, Arrow, the counting stages). :mod:`featurize` prints it for each
photo size; alone::

    python benchmarks/task_loop.py /tmp/sparkdl_bench/photos_1024x768_200 --precisions bfloat16
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOOP = r"""
import dataclasses, json, os, sys, time
sys.path.insert(0, {root!r})
from sparkdl_magics import inference
from sparkdl_magics.weights import resolve_spec
inference.set_tf_threads(1)
spec = resolve_spec({model!r}, {weights!r}).spec
files = sorted(os.path.join({folder!r}, f) for f in os.listdir({folder!r}))
items = [open(p, 'rb').read() for p in files[{index}::{processes}]]
models = {{p: inference.build(dataclasses.replace(spec, precision=p)) for p in {precisions!r}}}
for loaded in models.values():
    inference.run_decoded(loaded, items[:{batch}], {batch})  # warm-up (graph tracing)
runs = {{p: [] for p in models}}
print("ready", flush=True)
for _ in range({repeat}):
    for p, loaded in models.items():
        sys.stdin.readline()  # every process starts the round together
        t = time.perf_counter()
        inference.run_decoded(loaded, items, {batch})
        runs[p].append(time.perf_counter() - t)
        print("done", flush=True)
print(json.dumps({{"images": len(items), "runs": runs}}), flush=True)
"""


def task_loop(folder, model, weights, processes, batch, repeat, precisions):
    """{precision: {"images", "runs" (per round: the slowest process's seconds),
    "images_per_s"}} of the loop in *processes* processes at once."""
    procs = [subprocess.Popen(
        [sys.executable, "-c", LOOP.format(root=ROOT, model=model, weights=weights,
                                           folder=folder, index=i, processes=processes,
                                           batch=batch, repeat=repeat,
                                           precisions=tuple(precisions))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for i in range(processes)]
    try:
        for proc in procs:
            _expect(proc, "ready")
        for _ in range(repeat * len(precisions)):
            for proc in procs:
                proc.stdin.write("\n")
                proc.stdin.flush()
            for proc in procs:
                _expect(proc, "done")
        outs = [json.loads(proc.stdout.readline()) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    images = sum(out["images"] for out in outs)
    result = {}
    for precision in precisions:
        runs = [max(out["runs"][precision][r] for out in outs) for r in range(repeat)]
        result[precision] = {"images": images, "runs": runs,
                             "images_per_s": images / statistics.median(runs)}
    return result


def _expect(proc, word):
    line = proc.stdout.readline().strip()
    if line != word:
        raise SystemExit(f"task loop process {proc.pid}: expected {word!r}, got {line!r} "
                         f"(exit code {proc.poll()})")


def main(argv=None):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from featurize import choose_weights
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="a folder of photos (e.g. one featurize.py wrote)")
    ap.add_argument("--model", default="ResNet50")
    ap.add_argument("--weights", default=None, help="as featurize.py's --weights")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--precisions", default="float32,bfloat16")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sparkdl_bench"),
                    help="where trained-like weights are cached (as featurize.py's)")
    args = ap.parse_args(argv)
    weights, label = choose_weights(args.weights, args.model, args.workdir)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    result = task_loop(args.folder, args.model, weights, args.cores, args.batch_size,
                       args.repeat, precisions)
    print(f"{args.model} ({label} weights), {args.cores} processes, batch {args.batch_size}, "
          f"median of {args.repeat}")
    for precision, res in result.items():
        print(f"  task loop, {precision:<9} {res['images_per_s']:7.2f} images/s  "
              f"({res['images']} images; runs "
              f"{', '.join(f'{r:.2f}' for r in res['runs'])} s)")


if __name__ == "__main__":
    main()
