"""Benchmark: plain Keras in one process vs the Spark featurize path, same images/cores.

    python benchmarks/featurize.py --model ResNet50 --images 200 --cores 2
    python benchmarks/featurize.py --memory-images 1000,10000 --memory-model MobileNetV3Small

Both sides decode the same generated JPEGs (default 500x375) with the package's decode
rules, apply the model's own preprocess_input and predict in batches; model build time
is excluded (each side is warmed up first). Plain Keras: one process, ``model.predict``
on batches, TensorFlow threads = cores. Spark: on ``local[cores]``, ``load_images()``
once (as %%dlload; not timed), then ``featurize()`` timed as %%featurize runs it (even
partitions, pandas UDF, features cached, invalid rows counted). Each side is timed
--repeat times; the median counts. Prints images/s for each, their ratio, peak RSS of
the driver (Python + JVM) and of the Python workers, and the driver's peak memory when
featurizing the counts given by --memory-images (flat = good) on --memory-master
(local-cluster by default, so the executor's reading and shuffling of the bytes is not
counted as driver memory; the executor JVM is reported on its own line).
Weights: ``none`` by default (offline machines); ``imagenet`` when Keras' cache has them.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from peak_rss import PeakRSS  # next to this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_jpegs(folder: str, count: int, size=(500, 375)) -> None:
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    base = rng.integers(0, 255, size=(h // 8, w // 8, 3), dtype=np.uint8)
    for i in range(count):
        path = os.path.join(folder, f"img_{i:06d}.jpg")
        if os.path.exists(path):
            continue
        tile = np.roll(base, i, axis=(0, 1))
        img = Image.fromarray(tile).resize((w, h), Image.Resampling.BILINEAR)
        noise = rng.integers(0, 40, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(np.asarray(img) // 2 + noise).save(path, quality=90)


# --------------------------------------------------------------------------- plain Keras

PLAIN = r"""
import json, os, resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads({cores})
tf.config.threading.set_inter_op_parallelism_threads({cores})
from sparkdl_magics import imaging
from sparkdl_magics.weights import resolve_spec
from sparkdl_magics.inference import build
spec = resolve_spec({model!r}, {weights!r}).spec
model = build(spec)
files = sorted(os.path.join({folder!r}, f) for f in os.listdir({folder!r}))
def run(paths):
    for i in range(0, len(paths), {batch}):
        batch = np.stack([imaging.decode_array(open(p, 'rb').read(), spec.input_size)
                          for p in paths[i:i + {batch}]])
        model.predict(batch)
run(files[:{batch}])  # warm-up (graph tracing)
times = []
for _ in range({repeat}):
    t = time.perf_counter(); run(files); times.append(time.perf_counter() - t)
print(json.dumps({{"images": len(files), "runs": times,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def plain_keras(folder, model, weights, cores, batch, repeat):
    code = PLAIN.format(root=ROOT, cores=cores, model=model, weights=weights, folder=folder,
                        batch=batch, repeat=repeat)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return with_median_rate(json.loads(out.stdout.strip().splitlines()[-1]))


def with_median_rate(result):
    """Adds images/s of the median run to a result holding ``images`` and ``runs``."""
    result["seconds"] = statistics.median(result["runs"])
    result["images_per_s"] = result["images"] / result["seconds"]
    return result


# --------------------------------------------------------------------------- Spark path

def spark_path(spark, folder, model, weights, batch, repeat=1):
    """The product path, as a notebook runs it: load_images() once (%%dlload, not
    timed), then featurize() (%%featurize: even partitions, the pandas UDF, features
    cached in memory, invalid rows counted) timed *repeat* times; the median counts."""
    from sparkdl_magics.featurizer import featurize
    from sparkdl_magics.loading import load_images
    images = load_images(folder, labels="none", spark=spark)
    n = images.num_images
    # warm-up: every Python worker builds (and caches) its model on a few images
    warm = spark.read.format("binaryFile").load(folder).limit(batch * 2)
    featurize(warm, model, weights, batch_size=batch, cache="none")
    times, partitions = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        fs = featurize(images, model, weights, batch_size=batch, cache="memory")
        times.append(time.perf_counter() - t)
        partitions = fs.train.rdd.getNumPartitions()
        spark.catalog.clearCache()  # the next run must compute again
    return with_median_rate({"images": n, "runs": times, "partitions": partitions})


def fmt(runs):
    return ", ".join(f"{t:.2f}" for t in runs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ResNet50")
    ap.add_argument("--weights", default=None, help="imagenet, none, or a file "
                    "[default: imagenet if cached, else none]")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", default="500x375")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per side (median)")
    ap.add_argument("--memory-images", default="1000,10000",
                    help="comma-separated counts for the driver-memory check ('' to skip)")
    ap.add_argument("--memory-model", default="MobileNetV3Small")
    ap.add_argument("--memory-master", default="local-cluster[1,2,2048]",
                    help="master for the memory check: local-cluster keeps the driver JVM "
                    "apart from the executor that reads and shuffles the bytes")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sparkdl_bench"))
    args = ap.parse_args(argv)
    from sparkdl_magics.models import cached_weights_path, get_model_info
    weights = args.weights or ("imagenet" if cached_weights_path(get_model_info(args.model))
                               else "none")
    size = tuple(int(v) for v in args.size.split("x"))
    folder = os.path.join(args.workdir, f"jpeg_{args.size}_{args.images}")
    write_jpegs(folder, args.images, size)

    plain = plain_keras(folder, args.model, weights, args.cores, args.batch_size, args.repeat)
    print(f"plain Keras  {args.model} ({weights}): {plain['images_per_s']:.2f} images/s "
          f"({args.images} images, median of {fmt(plain['runs'])} s, peak RSS "
          f"{plain['peak_rss_mb']:.0f} MB)", flush=True)

    from sparkdl_magics import session
    spark = session.start_local(f"local[{args.cores}]", conf={"spark.ui.enabled": "false"})
    with PeakRSS() as peaks:
        sp = spark_path(spark, folder, args.model, weights, args.batch_size, args.repeat)
    print(f"Spark path   {args.model} ({weights}): {sp['images_per_s']:.2f} images/s "
          f"(median of {fmt(sp['runs'])} s, {sp['partitions']} partitions)", flush=True)
    print(f"ratio Spark / plain Keras: {sp['images_per_s'] / plain['images_per_s']:.2f}x")
    print(f"peak RSS (local[{args.cores}]: the driver JVM is the executor too): "
          f"{peaks.summary()}", flush=True)
    session.stop()

    counts = [int(c) for c in args.memory_images.split(",") if c.strip()]
    if counts:
        spark = session.start_local(args.memory_master, conf={"spark.ui.enabled": "false"})
        print(f"driver memory on {args.memory_master}, {args.memory_model}:")
    for count in counts:
        mfolder = os.path.join(args.workdir, f"jpeg_{args.size}_{count}")
        write_jpegs(mfolder, count, size)
        with PeakRSS() as mpeaks:
            res = spark_path(spark, mfolder, args.memory_model, "none", args.batch_size)
        print(f"  {count} images ({res['images_per_s']:.1f} images/s, {res['partitions']} "
              f"partitions): {mpeaks.summary()}", flush=True)
    session.stop()


if __name__ == "__main__":
    main()
