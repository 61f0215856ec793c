"""A listing that scales: ``%%dlload`` of N small files, per reader, per process.

For each N (default 10,000 and 100,000; ``--n 1000000`` adds the million) this writes N
small JPEGs (64x48, in 4 class folders, once, reused by later runs: copies of 256 distinct
images, since the loader only lists and reads headers) and then, in a fresh Python process
with its own Spark (so each run's peaks are its own), runs ``load_images`` as ``%%dlload``
runs it — list, header check, plan, split, counts, previews: end to end — with each
reader (``--reader``): ``python`` (the distributed listing, :mod:`sparkdl_magics.loading.stored`)
and ``spark`` (Spark's driver-side file index and ``binaryFile``). ``--until featurize``
or ``fit`` adds those stages (MobileNetV3Small, untrained, at 64 px).

A background thread samples the RSS of each process (``/proc`` via psutil,
:mod:`peak_rss`): the driver's Python, the driver JVM, executor JVMs (``local-cluster``
only) and Spark's Python workers (the largest and all together). After each stage the
driver JVM gets a full GC and its live heap is read with ``jcmd`` (RSS cannot tell a lazy
heap from retained objects). Every process is reported on its own, never summed.

Targets (2-core machine, ``local[2]``, ``spark.driver.memory`` 1g, Spark's default):
``load`` of 100,000 files at >= 2,500 files/s; driver JVM live heap after a full GC grows
< 1.5x from the smallest N to one 100x larger; a million files load without running out
of memory. The verdicts are printed; the exit code is 1 when a target is missed.

    python benchmarks/scale.py                                  # N = 10k, 100k; both readers
    python benchmarks/scale.py --n 10000,100000,1000000 --reader python
    python benchmarks/scale.py --n 2000 --until fit             # a quick check of all stages
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
sys.path.insert(0, str(ROOT / "tests"))
STAGES = ("load", "featurize", "fit")
KINDS = ("driver_python", "driver_jvm", "executor_jvm", "worker_max", "workers_sum")
READERS = ("python", "spark")
DEFAULT_COUNTS = (10_000, 100_000)
#: The targets this benchmark checks.
FILES_PER_SECOND = 2500
FILES_PER_SECOND_AT = 100_000
HEAP_GROWTH_LIMIT = 1.5
DISTINCT_IMAGES = 256


# --------------------------------------------------------------------------- inputs

def image_folder(workdir: Path, n: int) -> Path:
    """N 64x48 JPEGs in 4 class folders, written once (a marker beside the folder says
    it is complete, so an interrupted write is redone)."""
    from imagegen import encode, synthetic_image
    folder, done = workdir / f"images_{n}", workdir / f"images_{n}.done"
    if not done.exists():
        t = time.perf_counter()
        distinct = [[encode(synthetic_image(c, c * 1000 + i, (64, 48)), "JPEG")
                     for i in range(DISTINCT_IMAGES // 4)] for c in range(4)]
        for c in range(4):
            sub = folder / f"class_{c}"
            sub.mkdir(parents=True, exist_ok=True)
            for i in range(n // 4):
                (sub / f"{i:07d}.jpg").write_bytes(distinct[c][i % len(distinct[c])])
        done.touch()
        print(f"wrote {n} images to {folder} in {time.perf_counter() - t:.0f} s", flush=True)
    return folder


def model_choice(workdir: Path, size: int = 64) -> str:
    """MobileNetV3Small (untrained) at *size* px as a ``.keras`` file (the registry's
    name takes its fixed 224 px; the model includes its own rescaling)."""
    path = workdir / f"MobileNetV3Small_{size}.keras"
    if not path.exists():
        from sparkdl_magics.tfimport import import_keras
        keras = import_keras()
        keras.utils.set_random_seed(0)
        keras.applications.MobileNetV3Small(input_shape=(size, size, 3), include_top=False,
                                            weights=None, pooling="avg").save(path)
    return str(path)


# --------------------------------------------------------------------------- one run

def jcmd(pid: int, *command: str) -> str:
    return subprocess.run(["jcmd", str(pid), *command], capture_output=True, text=True,
                          timeout=600).stdout


def driver_heap() -> dict:
    """The driver JVM's heap after a full GC (what it really holds) and as committed."""
    pid = next((p.pid for role, p, _ in spark_processes() if role == "driver_jvm"), None)
    if pid is None:
        return {}
    jcmd(pid, "GC.run")
    m = re.search(r"total (\d+)K, used (\d+)K", jcmd(pid, "GC.heap_info"))
    return {"heap_live": int(m[2]) * 1024, "heap_committed": int(m[1]) * 1024} if m else {}


def run_one(n: int, folder: str, reader: str, master: str, driver_memory: str,
            stages=("load",), workdir: Path = Path(".")) -> dict:
    """The stages on a fresh session: seconds, peak RSS per process, live heap."""
    from sparkdl_magics import featurize, fit, load_images, session
    conf = {"spark.ui.enabled": "false", "spark.driver.memory": driver_memory}
    spark = session.start_local(master, conf=conf)
    out = {"n": n, "reader": reader, "master": master, "stages": {},
           "driver_memory": spark.conf.get("spark.driver.memory"), "started": driver_heap()}
    model = model_choice(workdir) if "featurize" in stages else None
    steps = {
        "load": lambda _: load_images(folder, split=0.8, reader=reader, spark=spark),
        "featurize": lambda images: featurize(images, model=model, preprocess="none",
                                              batch_size=64, cache="memory"),
        "fit": lambda features: fit(features, "logistic_regression", maxIter=20),
    }
    value = None
    for stage in stages:  # each needs the ones before it
        with PeakRSS() as peak:
            t = time.perf_counter()
            value = steps[stage](value)
            seconds = time.perf_counter() - t
        if stage == "load":
            out["loaded"] = {"images": value.num_images, "invalid": value.num_invalid,
                             **value.split_sizes()}
        out["stages"][stage] = {"seconds": seconds, **{k: peak.peak[k] for k in KINDS},
                                **driver_heap()}
    session.stop()
    return out


# --------------------------------------------------------------------------- report

def table(results: list) -> str:
    """One row per reader and N: the load stage's seconds and files/s, then each
    process on its own (peak RSS over the run's stages) and the driver's live heap."""
    head = (f"{'reader':>6} {'N':>8} | {'load s':>7} {'files/s':>8} | "
            + " ".join(f"{k + ' MB':>16}" for k in KINDS)
            + " | heap live MB (start, after each stage)")
    lines = [head, "-" * len(head)]
    for r in results:
        st = r["stages"]
        load = st["load"]["seconds"]
        peaks = {k: max(s[k] for s in st.values()) for k in KINDS}
        live = "/".join(f"{v.get('heap_live', 0) / MB:.0f}" for v in [r["started"], *st.values()])
        more = " ".join(f"{s} {v['seconds']:.0f}s" for s, v in st.items() if s != "load")
        lines.append(f"{r['reader']:>6} {r['n']:>8} | {load:>7.1f} {r['n'] / load:>8.0f} | "
                     + " ".join(f"{peaks[k] / MB:>16.0f}" for k in KINDS)
                     + f" | {live}" + (f"  ({more})" if more else ""))
    return "\n".join(lines)


def verdicts(results: list) -> tuple:
    """Lines with the growth of each process from the smallest N, and the targets."""
    lines, ok = [], True
    for reader in READERS:
        runs = sorted((r for r in results if r["reader"] == reader), key=lambda r: r["n"])
        for r in runs:
            if r["n"] == FILES_PER_SECOND_AT:
                rate = r["n"] / r["stages"]["load"]["seconds"]
                good = rate >= FILES_PER_SECOND
                ok = ok and good
                lines.append(f"{reader}: {rate:.0f} files/s at {r['n']} files "
                             f"({'meets' if good else 'misses'} >= {FILES_PER_SECOND})")
        if len(runs) < 2:
            continue
        base, top = runs[0], runs[-1]
        live = [r["stages"]["load"].get("heap_live", 0) for r in (base, top)]
        grow = {k: max(s[k] for s in top["stages"].values()) /
                max(1, max(s[k] for s in base["stages"].values())) for k in KINDS
                if max(s[k] for s in base["stages"].values())}
        ratio = live[1] / max(1, live[0])
        line = (f"{reader}: {base['n']} -> {top['n']} files: driver JVM live heap "
                f"{live[0] / MB:.0f} -> {live[1] / MB:.0f} MB ({ratio:.2f}x); peak RSS "
                + ", ".join(f"{k} {v:.2f}x" for k, v in grow.items()))
        if top["n"] >= 100 * base["n"]:
            good = ratio < HEAP_GROWTH_LIMIT
            ok = ok and good
            line += f"  ({'meets' if good else 'misses'} live heap < {HEAP_GROWTH_LIMIT}x)"
        lines.append(line)
    return lines, ok


def report(results: list) -> int:
    """Prints the table and the verdicts; 1 when a target is missed."""
    results = sorted(results, key=lambda r: (r["reader"], r["n"]))
    r0 = results[0]
    print(f"\nmaster {r0['master']}, spark.driver.memory {r0['driver_memory']}, "
          f"{os.cpu_count()} CPUs; 64x48 JPEGs in 4 class folders; load = load_images "
          "(list + header check + plan + split + counts + previews), split 0.8")
    print(table(results))
    lines, ok = verdicts(results)
    print("\n".join(lines))
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default=",".join(str(n) for n in DEFAULT_COUNTS),
                    help="file counts, comma-separated (e.g. 10000,100000,1000000)")
    ap.add_argument("--reader", default=",".join(READERS),
                    help="readers to measure, comma-separated: python, spark")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="1g", help="spark.driver.memory (Spark's "
                    "default 1g; the embedded session's is 3g)")
    ap.add_argument("--until", choices=STAGES, default="load", help="the last stage to run")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sparkdl_scale"))
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--table", nargs="+", metavar="JSON",
                    help="print the report of results saved with --json (no run)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("SPARKDL_PROGRESS", "none")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.table:
        return report([r for f in args.table for r in json.loads(Path(f).read_text())])
    stages = STAGES[:STAGES.index(args.until) + 1]
    if args.one:
        result = run_one(args.one, str(image_folder(workdir, args.one)), args.reader,
                         args.master, args.driver_memory, stages, workdir)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    results = []
    for n in sorted({int(c) for c in args.n.split(",") if c.strip()}):
        image_folder(workdir, n)
        for reader in [r.strip() for r in args.reader.split(",") if r.strip()]:
            cmd = [sys.executable, __file__, "--one", str(n), "--reader", reader,
                   "--master", args.master, "--driver-memory", args.driver_memory,
                   "--until", args.until, "--workdir", str(workdir)]
            t = time.perf_counter()
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")),
                        None)
            if proc.returncode or line is None:
                print(proc.stdout[-3000:])
                print(f"N={n} reader={reader}: the run failed (exit {proc.returncode})")
                continue
            results.append(json.loads(line[len("RESULT "):]))
            print(f"N={n} reader={reader} done in {time.perf_counter() - t:.0f} s: "
                  f"{results[-1]['loaded']}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
    return report(results) if results else 1


if __name__ == "__main__":
    sys.exit(main())
