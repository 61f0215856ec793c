"""Benchmark: the Spark path (featurize) in each engine, interleaved in one session.

    python benchmarks/spark_engines.py --model ResNet50 --runs keras:bfloat16,openvino:bfloat16
    python benchmarks/spark_engines.py --model MobileNetV3Small --runs keras:bfloat16,openvino:float32

Photo-like JPEGs (``--size``, ``--images``; benchmarks/featurize.py's) are loaded once,
then ``featurize()`` runs once per ``engine:precision`` of ``--runs`` to warm every
worker (the OpenVINO conversion happens there), then ``--repeat`` timed rounds, each
running every entry in turn (the same machine load for each); the median counts, and
each rate is given as a ratio to the first entry's. Keep ``--runs`` to two entries: a
worker caches two models (``inference.MAX_CACHED_MODELS``), so more would rebuild (and
re-convert) models inside the timed runs. Weights as benchmarks/featurize.py chooses them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from featurize import choose_weights, write_jpegs  # next to this script


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ResNet50")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--runs", default="keras:bfloat16,openvino:bfloat16",
                    help="engine:precision entries, comma-separated (the first: the baseline)")
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--size", default="500x375")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sparkdl_bench"))
    args = ap.parse_args(argv)
    runs = [tuple(entry.strip().split(":")) for entry in args.runs.split(",") if entry.strip()]
    weights, label = choose_weights(args.weights, args.model, args.workdir)
    size = tuple(int(v) for v in args.size.split("x"))
    folder = os.path.join(args.workdir, f"photos_{args.size}_{args.images}")
    write_jpegs(folder, args.images, size)

    from sparkdl_magics import session
    from sparkdl_magics.featurizer import featurize
    from sparkdl_magics.loading import load_images
    spark = session.start_local(f"local[{args.cores}]", conf={"spark.ui.enabled": "false"})
    images = load_images(folder, labels="none", spark=spark)
    warm = spark.read.format("binaryFile").load(folder).limit(args.cores * 2)
    for engine, precision in runs:
        featurize(warm, args.model, weights, batch_size=args.batch_size, cache="none",
                  partitions=args.cores, precision=precision, engine=engine)
    seconds = {run: [] for run in runs}
    ran = {}
    for _ in range(args.repeat):
        for engine, precision in runs:
            t = time.perf_counter()
            fs = featurize(images, args.model, weights, batch_size=args.batch_size,
                           cache="memory", precision=precision, engine=engine)
            seconds[engine, precision].append(time.perf_counter() - t)
            ran[engine, precision] = f"{fs.stats['precision']} in {fs.stats['engine']}"
            spark.catalog.clearCache()  # the next run computes again
    session.stop()
    rate = {run: images.num_images / statistics.median(s) for run, s in seconds.items()}
    base = runs[0]
    print(f"{args.model} ({label} weights), {images.num_images} photos at {args.size}, "
          f"local[{args.cores}], batch {args.batch_size}, median of {args.repeat} "
          "interleaved runs")
    for run in runs:
        print(f"  {run[0]:>8} {run[1]:<9} {rate[run]:7.2f} images/s  "
              f"{rate[run] / rate[base]:5.2f}x {base[0]} {base[1]}  (runs "
              f"{', '.join(f'{s:.2f}' for s in seconds[run])} s; ran {ran[run]})", flush=True)


if __name__ == "__main__":
    main()
