"""Memory that does not grow with the data: list, load, featurize and fit N images.

For each N (default 1,000 and 10,000; ``--n 100000`` adds the large run) this writes N
small JPEGs (64x48, in 4 class folders, once, reused by later runs) and then, in a fresh
Python process with its own Spark (so each N's peaks are its own), runs what a notebook
runs, stage by stage:

- list: Spark's file index and a path-only scan (:class:`sparkdl_magics.loading.sources.Source`);
- load: ``load_images`` as ``%%dlload`` runs it (header check, plan, split, previews);
- featurize: ``featurize`` as ``%%featurize`` runs it, with MobileNetV3Small (untrained
  weights) at a small input (default 64x64: a ``.keras`` file built here, since the
  registry's named models take their fixed size, 224 for MobileNetV3Small; ``--input 224``
  uses the registry name instead), features cached;
- fit: ``fit`` with logistic regression, as ``%%fit`` runs it.

A background thread samples the RSS (``/proc``, via psutil: :mod:`peak_rss`) of the
driver's Python, the driver JVM, executor JVMs (``local-cluster``) and the Python
workers (``pyspark.daemon`` and the workers it forks). After each stage the driver JVM
gets a full GC and its live heap is read with ``jcmd`` — RSS alone cannot tell a lazy
heap from retained objects. Prints seconds per stage and peak MB per process kind, then
the growth ratios from the smallest N: driver memory (Python + JVM) must grow less than
1.5x from 1k to 100k images, worker memory must stay flat.

    python benchmarks/scale.py                      # N = 1000, 10000
    python benchmarks/scale.py --n 100000           # N = 1000, 10000, 100000
    python benchmarks/scale.py --n 1000 --only      # just N = 1000 (a quick check)

The default master is ``local-cluster[1,2,2048]``: one executor JVM apart from the driver,
so the executor's reading, shuffling and caching are not counted as driver memory (with
``local[N]`` the driver JVM is the executor too; ``--master local[2]`` shows that).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peak_rss import MB, PeakRSS, spark_processes  # next to this script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STAGES = ("list", "load", "featurize", "fit")
KINDS = ("driver_python", "driver_jvm", "executor_jvm", "worker_max", "workers_sum")
DEFAULT_COUNTS = (1000, 10_000)
#: The limits this benchmark checks (from the smallest N to the largest).
DRIVER_GROWTH_LIMIT = 1.5
WORKER_GROWTH_LIMIT = 1.2


# --------------------------------------------------------------------------- inputs

def image_folder(workdir: Path, n: int) -> Path:
    """N 64x48 JPEGs in 4 class folders, written once (a marker beside the folder says
    it is complete, so an interrupted write is redone)."""
    from load_featurize import write_images
    folder, done = workdir / f"images_{n}", workdir / f"images_{n}.done"
    if not done.exists():
        t = time.perf_counter()
        write_images(folder, n)
        done.touch()
        print(f"wrote {n} images to {folder} in {time.perf_counter() - t:.0f} s", flush=True)
    return folder


def model_choice(workdir: Path, size: int) -> str:
    """MobileNetV3Small (untrained) at *size* px: the registry name at its own size, else
    a ``.keras`` file (the model includes its own rescaling: preprocess ``none``)."""
    from sparkdl_magics.models import get_model_info
    if size == get_model_info("MobileNetV3Small").size:
        return "MobileNetV3Small"
    path = workdir / f"MobileNetV3Small_{size}.keras"
    if not path.exists():
        from sparkdl_magics.tfimport import import_keras
        keras = import_keras()
        keras.utils.set_random_seed(0)
        keras.applications.MobileNetV3Small(input_shape=(size, size, 3), include_top=False,
                                            weights=None, pooling="avg").save(path)
    return str(path)


# --------------------------------------------------------------------------- one N

def jcmd(pid: int, *command: str) -> str:
    return subprocess.run(["jcmd", str(pid), *command], capture_output=True, text=True,
                          timeout=300).stdout


def driver_jvm_heap(histogram: int = 0) -> dict:
    """The driver JVM's heap after a full GC (what it really holds) and as committed;
    with *histogram*, the classes holding most of it (``jcmd GC.class_histogram``,
    which runs the full GC itself)."""
    pid = next((p.pid for role, p, _ in spark_processes() if role == "driver_jvm"), None)
    if pid is None:
        return {}
    out = {}
    if histogram:  # "   1:   123   4567  java.lang.String (java.base@17)"
        rows = re.findall(r"^\s*\d+:\s+(\d+)\s+(\d+)\s+(\S+)", jcmd(pid, "GC.class_histogram"),
                          re.M)
        out["histogram"] = [(name, int(n), int(b)) for n, b, name in rows[:histogram]]
    else:
        jcmd(pid, "GC.run")
    m = re.search(r"total (\d+)K, used (\d+)K", jcmd(pid, "GC.heap_info"))
    if m:
        out.update(heap_live=int(m[2]) * 1024, heap_committed=int(m[1]) * 1024)
    return out


def listed_files(spark, folder: str) -> tuple:
    """(files in Spark's file index, rows of a path-only scan): the loader's listing."""
    from sparkdl_magics.loading.sources import Source
    source = Source(spark, folder, None)
    return len(source.indexed_files()), source.listing().count()


def run_one(n: int, folder: str, model: str, master: str, driver_memory: str,
            batch_size: int, histogram: int = 0, stages=STAGES, extra_conf=()) -> dict:
    """The four stages on a fresh session; per stage seconds, peak RSS, live heap."""
    from sparkdl_magics import featurize, fit, load_images, session
    conf = {"spark.ui.enabled": "false"}
    if driver_memory:
        conf["spark.driver.memory"] = driver_memory
    conf.update(item.split("=", 1) for item in extra_conf)
    spark = session.start_local(master, conf=conf)
    out = {"n": n, "master": master, "stages": {}, "batch_size": batch_size,
           "conf": list(extra_conf),
           "model": f"MobileNetV3Small (untrained) {os.path.basename(model)}",
           "driver_memory": spark.conf.get("spark.driver.memory")}
    named = not model.endswith(".keras")
    steps = {
        "list": lambda _: listed_files(spark, folder),
        "load": lambda _: load_images(folder, split=0.8, spark=spark),
        "featurize": lambda images: featurize(
            images, model=model, weights="none" if named else None,
            preprocess=None if named else "none", batch_size=batch_size, cache="memory"),
        "fit": lambda features: fit(features, "logistic_regression", maxIter=20),
    }
    value = None
    for stage in stages:  # each needs the ones before it
        with PeakRSS() as peak:
            t = time.perf_counter()
            value = steps[stage](value)
            seconds = time.perf_counter() - t
        if stage == "list":
            out["listed"] = value
            value = None
        elif stage == "load":
            out["loaded"] = {"images": value.num_images, "invalid": value.num_invalid,
                             **value.split_sizes()}
        elif stage == "featurize":
            out["featurized"] = {k: value.stats[k] for k in ("per_split", "invalid")}
        out["stages"][stage] = {"seconds": seconds, **{k: peak.peak[k] for k in KINDS},
                                "workers_seen": len(peak.workers_seen),
                                **driver_jvm_heap(histogram)}
    session.stop()
    return out


# --------------------------------------------------------------------------- report

def peaks(result: dict) -> dict:
    """Peak bytes per process kind over all stages."""
    return {k: max(s[k] for s in result["stages"].values()) for k in KINDS}


def table(results: list) -> str:
    head = (f"{'N':>7} | " + " ".join(f"{s:>9}" for s in STAGES) + " | "
            + " ".join(f"{k:>13}" for k in KINDS) + " | heap live MB (after each stage)")
    lines = [head, "-" * len(head)]
    for r in results:
        p = peaks(r)
        st = r["stages"]
        live = "/".join(f"{st[s].get('heap_live', 0) / MB:.0f}" for s in STAGES if s in st)
        lines.append(f"{r['n']:>7} | "
                     + " ".join(f"{st[s]['seconds']:>8.1f}s" if s in st else f"{'-':>9}"
                                for s in STAGES)
                     + " | " + " ".join(f"{p[k] / MB:>10.0f} MB" for k in KINDS)
                     + f" | {live}")
    return "\n".join(lines)


def stage_table(results: list) -> str:
    """Driver peaks per stage: where growth comes from, if any."""
    lines = ["driver peak RSS per stage, MB (python / JVM); JVM heap committed after GC:"]
    for r in results:
        cells = [f"{s} {r['stages'][s]['driver_python'] / MB:.0f}/"
                 f"{r['stages'][s]['driver_jvm'] / MB:.0f}"
                 f" ({r['stages'][s].get('heap_committed', 0) / MB:.0f})" for s in STAGES
                 if s in r["stages"]]
        lines.append(f"{r['n']:>7}: " + ", ".join(cells))
    return "\n".join(lines)


def growth(results: list) -> tuple:
    """Lines with the growth ratios from the smallest N; and whether the limits hold."""
    base, lines, ok = results[0], [], True
    pb = peaks(base)
    for r in results[1:]:
        p = peaks(r)
        driver = (p["driver_python"] + p["driver_jvm"]) / (pb["driver_python"] + pb["driver_jvm"])
        parts = {k: p[k] / pb[k] for k in KINDS if pb[k]}
        worker = max(parts.get("worker_max", 1), parts.get("workers_sum", 1))
        verdict = []
        if r["n"] >= 100 * base["n"] and driver >= DRIVER_GROWTH_LIMIT:
            verdict.append(f"driver grows {driver:.2f}x >= {DRIVER_GROWTH_LIMIT}x")
        if worker >= WORKER_GROWTH_LIMIT:
            verdict.append(f"workers grow {worker:.2f}x >= {WORKER_GROWTH_LIMIT}x")
        ok = ok and not verdict
        lines.append(f"{base['n']} -> {r['n']} ({r['n'] / base['n']:.0f}x images): driver "
                     f"(python + JVM) {driver:.2f}x; "
                     + ", ".join(f"{k} {v:.2f}x" for k, v in parts.items())
                     + (f"  <-- {'; '.join(verdict)}" if verdict else ""))
    return lines, ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="", help="image counts to add to 1000,10000 "
                    "(comma-separated), e.g. 100000")
    ap.add_argument("--only", action="store_true", help="run only the --n counts")
    ap.add_argument("--master", default="local-cluster[1,2,2048]")
    ap.add_argument("--driver-memory", default="",
                    help="spark.driver.memory (default: the package's)")
    ap.add_argument("--input", type=int, default=64, help="model input size in px (>= 32)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sparkdl_scale"))
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--histogram", type=int, default=0, metavar="K",
                    help="after each stage, print the K classes holding most of the driver "
                    "JVM's live heap")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                    help="more Spark settings for the session (repeatable)")
    ap.add_argument("--until", choices=STAGES, default=STAGES[-1],
                    help="the last stage to run (load: just the driver's listing and plan)")
    ap.add_argument("--table", nargs="+", metavar="JSON",
                    help="print the table of results saved with --json (no run)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("SPARKDL_PROGRESS", "none")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.input < 32:
        ap.error("--input: MobileNetV3Small needs at least 32 px")
    if args.table:
        return report([r for f in args.table for r in json.loads(Path(f).read_text())])
    model = model_choice(workdir, args.input)
    if args.one:
        result = run_one(args.one, str(image_folder(workdir, args.one)), model, args.master,
                         args.driver_memory, args.batch_size, args.histogram,
                         STAGES[:STAGES.index(args.until) + 1], args.conf)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    given = [int(c) for c in args.n.split(",") if c.strip()]
    counts = sorted(set(given) if args.only else set(DEFAULT_COUNTS) | set(given))
    results = []
    for n in counts:
        image_folder(workdir, n)
        cmd = [sys.executable, __file__, "--one", str(n), "--master", args.master,
               "--input", str(args.input), "--batch-size", str(args.batch_size),
               "--workdir", str(workdir), "--driver-memory", args.driver_memory,
               "--histogram", str(args.histogram), "--until", args.until,
               *[f"--conf={c}" for c in args.conf]]
        t = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-3000:])
            raise SystemExit(f"N={n}: the run failed (exit {proc.returncode})")
        results.append(json.loads(line[len("RESULT "):]))
        print(f"N={n} done in {time.perf_counter() - t:.0f} s: {results[-1].get('loaded', results[-1].get('listed'))}",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return report(results)


def report(results: list) -> int:
    """Prints the tables and the growth ratios; 1 when a limit is broken."""
    results = sorted(results, key=lambda r: r["n"])
    r0 = results[0]
    print(f"\nmaster {r0['master']}, spark.driver.memory {r0['driver_memory']}, model "
          f"{r0.get('model', 'MobileNetV3Small (untrained) 64x64')}, batch "
          f"{r0.get('batch_size', 64)}, {os.cpu_count()} CPUs; images 64x48 JPEG in 4 "
          "classes, split 0.8" + "".join(f"; {c}" for c in r0.get("conf", [])))
    print(table(results))
    print(stage_table(results))
    for r in results:
        for stage, s in r["stages"].items():
            if s.get("histogram"):
                print(f"N={r['n']} after {stage}, driver JVM live heap by class (MB, count): "
                      + "; ".join(f"{name} {b / MB:.1f} ({n})" for name, n, b in s["histogram"]))
    lines, ok = growth(results)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
