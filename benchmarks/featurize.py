"""Benchmark: plain Keras in one process vs the Spark featurize path, same images/cores.

    python benchmarks/featurize.py --model ResNet50 --images 300 --cores 2
    python benchmarks/featurize.py --size 500x375,1024x768,4032x3024 --images 300,200,48 \
        --digits-per-class 0 --memory-images ''
    python benchmarks/featurize.py --memory-images 1000,10000 --memory-model MobileNetV3Small

For each photo size of ``--size`` (generated photo-like JPEGs at quality 90, see
:func:`write_jpegs`; the ``--images`` count for that size), on the same images and
cores, it prints: decoding alone on one thread (the package's decode to the model's
input size, JPEG draft mode included, and a full decode + resize without draft mode,
images/s per core) with the per-image cosine of the model's float32 features between
the two; then images/s and the
ratio to the model-only ceiling *of the same precision* for: the model alone on
pre-decoded batches (the package's traced ``tf.function``, the ceiling) at each
precision, plain Keras decode + ``model.predict`` (float32), and the Spark path
(``featurize()``) at each precision of ``--precisions`` (default float32 and bfloat16,
plus float16 where a GPU is visible), and the Spark path's ratio to decoding alone on
all cores (the bound on big photos). Between them, the package's task loop without Spark
(``task_loop.py``: one process per core, each decoding and running its share at once):
its ratio to the ceiling is the bound decoding on the same cores sets, and the Spark
path's ratio to it is Spark's own cost. ``--engine openvino`` (or ``auto``) runs the Spark
path's model in that engine (the ceilings stay Keras': a ratio above 1 is its gain).
Then the quality of reduced precision: the per-image cosine between its features and
float32's (same images), and the test accuracy of a logistic regression (scikit-learn,
same seeded split) on the digits (``datasets.write_digits``) featurized at each
precision through the Spark path. ``--memory-images ''`` skips the memory check.

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
Weights (``--weights``, printed in the first line): ``imagenet`` when Keras' cache has
them, else ``trained-like`` (seeded, BatchNorm statistics from photo-like images:
``tests/trained_like.py``, cached in --workdir), so reduced precision meets BatchNorm
statistics like a trained network's; ``none`` (untrained: every BatchNorm the identity)
or a weights file on request. The timed runs of the precisions alternate (float32,
bfloat16, float32, ...), so a ratio between them sees the same machine load.
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
from task_loop import task_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # trained_like
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_jpegs(folder: str, count: int, size=(500, 375)) -> None:
    """*count* photo-like JPEGs at *size*: a photograph's spectrum and shapes
    (``trained_like.photo_like_images`` at 768 px, upscaled) plus mild sensor noise
    (sigma 3), quality 90 as a camera saves them (``trained_like.photo_file``); written
    once per folder."""
    from trained_like import photo_file
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        path = os.path.join(folder, f"img_{i:06d}.jpg")
        if not os.path.exists(path):
            with open(path, "wb") as out:
                out.write(photo_file(size[0], size[1], i, rng, scene=768))


# --------------------------------------------------------------------------- plain Keras

PLAIN = r"""
import dataclasses, json, os, resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads({cores})
tf.config.threading.set_inter_op_parallelism_threads({cores})
from sparkdl_magics import imaging
from sparkdl_magics.weights import resolve_spec
from sparkdl_magics.inference import build
spec = resolve_spec({model!r}, {weights!r}).spec
files = sorted(os.path.join({folder!r}, f) for f in os.listdir({folder!r}))
def timed(run):
    run(files[:{batch}])  # warm-up (graph tracing)
    times = []
    for _ in range({repeat}):
        t = time.perf_counter(); run(files); times.append(time.perf_counter() - t)
    return times
# the ceiling: the model alone (the package's traced tf.function) on pre-decoded batches,
# the precisions' timed runs alternating (same machine load for each)
# decoding alone, one thread: the package's decode (JPEG draft mode) and a full decode
import io
from PIL import Image
raw = {{p: open(p, 'rb').read() for p in files}}
def full_decode(data):
    image = Image.open(io.BytesIO(data)); image.load()
    return np.asarray(image.convert("RGB").resize(tuple(spec.input_size), imaging.RESAMPLE))
decoders = {{"draft": lambda data: imaging.decode_array(data, spec.input_size),
             "full": full_decode}}
decode_runs = {{name: [] for name in decoders}}
for _ in range({repeat}):
    for name, fn in decoders.items():
        t = time.perf_counter()
        for p in files:
            fn(raw[p])
        decode_runs[name].append(time.perf_counter() - t)
decoded = {{p: imaging.decode_array(raw[p], spec.input_size) for p in files}}
models = {{p: build(dataclasses.replace(spec, precision=p)) for p in {precisions!r}}}
def model_only(loaded, paths, arrays=decoded):
    return [loaded.predict(np.stack([arrays[p] for p in paths[i:i + {batch}]]))
            for i in range(0, len(paths), {batch})]
# what draft mode does to the features: float32, draft vs full decoding
fulls = {{p: full_decode(raw[p]) for p in files}}
a, b = (np.concatenate(model_only(models["float32"], files, arrays)).astype(np.float64)
        for arrays in (decoded, fulls))
draft_cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
draft_pixels = max(float(np.abs(decoded[p].astype(int) - fulls[p]).mean()) for p in files)
del raw, fulls
ceiling = {{p: {{"ran": loaded.precision, "runs": []}} for p, loaded in models.items()}}
for loaded in models.values():
    model_only(loaded, files[:{batch}])  # warm-up (graph tracing)
for _ in range({repeat}):
    for p, loaded in models.items():
        t = time.perf_counter(); model_only(loaded, files)
        ceiling[p]["runs"].append(time.perf_counter() - t)
del models, decoded
# plain Keras: decode + model.predict, float32, as a user would write it
model = build(spec).model
def plain(paths):
    for i in range(0, len(paths), {batch}):
        batch = np.stack([imaging.decode_array(open(p, 'rb').read(), spec.input_size)
                          for p in paths[i:i + {batch}]])
        model.predict(batch, verbose=0)
print(json.dumps({{"images": len(files), "runs": timed(plain), "ceiling": ceiling,
                  "decode": decode_runs, "draft_cosine": [float(draft_cos.min()),
                                                          float(np.median(draft_cos))],
                  "draft_pixels": draft_pixels,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def plain_keras(folder, model, weights, cores, batch, repeat, precisions=("float32",)):
    """Plain Keras (decode + ``model.predict``, float32) and the model-only ceiling at
    each of *precisions*, in a fresh process with TensorFlow's threads = *cores*."""
    code = PLAIN.format(root=ROOT, cores=cores, model=model, weights=weights, folder=folder,
                        batch=batch, repeat=repeat, precisions=tuple(precisions))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    result = with_median_rate(json.loads(out.stdout.strip().splitlines()[-1]))
    for name, ceiling in result["ceiling"].items():
        result["ceiling"][name] = with_median_rate({"images": result["images"], **ceiling})
    result["decode"] = {name: with_median_rate({"images": result["images"], "runs": runs})
                        for name, runs in result["decode"].items()}
    return result


def with_median_rate(result):
    """Adds images/s of the median run to a result holding ``images`` and ``runs``."""
    result["seconds"] = statistics.median(result["runs"])
    result["images_per_s"] = result["images"] / result["seconds"]
    return result


# --------------------------------------------------------------------------- Spark path

def spark_paths(spark, folder, model, weights, batch, repeat=1, precisions=("float32",),
                keep_features=False, engine="keras"):
    """The product path, as a notebook runs it: load_images() once (%%dlload, not
    timed), then featurize() (%%featurize: even partitions, the pandas UDF, features
    cached in memory, invalid rows counted) timed *repeat* times at each of
    *precisions*, alternating; the median counts. {precision: result}.
    ``keep_features``: also return the last run's features by path (for cosines).
    ``engine``: what runs the model in the workers (keras, openvino, auto)."""
    from sparkdl_magics.featurizer import featurize
    from sparkdl_magics.loading import load_images
    from sparkdl_magics.session import task_slots
    images = load_images(folder, labels="none", spark=spark)
    n = images.num_images
    # warm-up: every Python worker builds (and caches) its model on a few images, in as
    # many tasks as run at once
    slots = task_slots(spark)
    warm = spark.read.format("binaryFile").load(folder).limit(slots * 2)
    out = {}
    for precision in precisions:
        featurize(warm, model, weights, batch_size=batch, cache="none", partitions=slots,
                  precision=precision, engine=engine)
        out[precision] = {"images": n, "runs": [], "features": None}
    for _ in range(repeat):
        for precision in precisions:
            result = out[precision]
            t = time.perf_counter()
            fs = featurize(images, model, weights, batch_size=batch, cache="memory",
                           precision=precision, engine=engine)
            result["runs"].append(time.perf_counter() - t)
            result["partitions"] = fs.train.rdd.getNumPartitions()
            result["precision"] = fs.stats["precision"]
            result["engine"] = fs.stats["engine"]
            if keep_features:
                result["features"] = {r["path"]: r["features"].toArray()
                                      for r in fs.train.select("path", "features").collect()}
            spark.catalog.clearCache()  # the next run must compute again
    return {p: with_median_rate(r) for p, r in out.items()}


def spark_path(spark, folder, model, weights, batch, repeat=1, precision="float32"):
    """:func:`spark_paths` at one precision."""
    return spark_paths(spark, folder, model, weights, batch, repeat, (precision,))[precision]


def digits_accuracy(spark, folder, model, weights, batch, precisions, per_class, seed=0):
    """Test accuracy of a logistic regression (scikit-learn, one seeded stratified split)
    on the digits featurized through the Spark path at each precision."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sparkdl_magics.datasets import write_digits
    from sparkdl_magics.featurizer import featurize
    from sparkdl_magics.loading import load_images
    write_digits(folder, per_class=per_class, seed=seed)
    images = load_images(folder, labels="folders", spark=spark)
    accuracy, predicted = {}, {}
    split = None
    for precision in precisions:
        fs = featurize(images, model, weights, batch_size=batch, cache="none",
                       precision=precision)
        splits = [df for df in (fs.train, fs.test, fs.validation) if df is not None]
        rows = sorted((r["path"], r["label_name"], r["features"].toArray()) for df in splits
                      for r in df.select("path", "label_name", "features").collect())
        x = np.stack([r[2] for r in rows])
        y = np.array([r[1] for r in rows])
        if split is None:  # the same images train and test at every precision
            split = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y,
                                     random_state=seed)
        train, test = split
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        clf.fit(x[train], y[train])
        predicted[precision] = clf.predict(x[test])
        accuracy[precision] = float(np.mean(predicted[precision] == y[test]))
    agree = {p: float(np.mean(predicted[p] == predicted["float32"])) for p in predicted}
    return accuracy, agree, len(split[1])


def choose_weights(weights, model, workdir):
    """(the ``weights`` value featurize gets, what the output calls them)."""
    from sparkdl_magics.models import cached_weights_path, get_model_info
    choice = weights or ("imagenet" if cached_weights_path(get_model_info(model))
                         else "trained-like")
    if choice == "trained-like":
        from trained_like import LABEL, trained_like_weights
        return str(trained_like_weights(model, os.path.join(workdir, "weights"))), LABEL
    return choice, {"none": "none (untrained: BatchNorm the identity)"}.get(choice, choice)


def cosines(a, b):
    """Per-image cosine between two {path: features} maps (same paths)."""
    paths = sorted(a)
    x = np.stack([a[p] for p in paths]).astype(np.float64)
    y = np.stack([b[p] for p in paths]).astype(np.float64)
    return (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)


def fmt(runs):
    return ", ".join(f"{t:.2f}" for t in runs)


def one_size(spark, folder, args, weights, precisions):
    """Decode alone, the model-only ceilings, plain Keras and the Spark path on one
    folder of photos, each as images/s and its ratio to the ceiling of its precision."""
    plain = plain_keras(folder, args.model, weights, args.cores, args.batch_size, args.repeat,
                        precisions)
    ceiling = plain["ceiling"]

    def line(what, result, precision="float32", note=""):
        rate = result["images_per_s"]
        top = ceiling[precision]["images_per_s"]
        print(f"  {what:<30} {rate:7.2f} images/s  {rate / top:5.2f}x {precision} ceiling  "
              f"(runs {fmt(result['runs'])} s{note})", flush=True)

    decode = plain["decode"]
    for name, what in (("draft", "decode alone (package)"), ("full", "decode alone (full)")):
        print(f"  {what:<30} {decode[name]['images_per_s']:7.2f} images/s per core "
              f"(runs {fmt(decode[name]['runs'])} s)", flush=True)
    cos_min, cos_median = plain["draft_cosine"]
    print(f"  draft vs full decoding: float32 features per-image cosine min {cos_min:.6f}, "
          f"median {cos_median:.6f}; worst image's mean pixel difference "
          f"{plain['draft_pixels']:.2f} of 255", flush=True)
    for precision, result in ceiling.items():
        line(f"model only, {precision}", result, precision, f"; ran {result['ran']}")
    line("plain Keras decode+predict", plain, "float32",
         f"; peak RSS {plain['peak_rss_mb']:.0f} MB")
    loop = task_loop(folder, args.model, weights, args.cores, args.batch_size, args.repeat,
                     precisions)
    for precision, result in loop.items():
        line(f"task loop, no Spark, {precision}", result, precision,
             f"; {args.cores} processes at once")
    with PeakRSS() as peaks:
        spark_runs = spark_paths(spark, folder, args.model, weights, args.batch_size,
                                 args.repeat, precisions, keep_features=True,
                                 engine=args.engine)
    decode_all = decode["draft"]["images_per_s"] * args.cores
    for precision, sp in spark_runs.items():
        line(f"Spark path, {precision}", sp, precision,
             f"; {sp['images_per_s'] / decode_all:.2f}x decode alone on {args.cores} cores; "
             f"{sp['partitions']} partitions; ran {sp['precision']} in {sp['engine']}")
        print(f"  Spark path / task loop, {precision}: "
              f"{sp['images_per_s'] / loop[precision]['images_per_s']:.2f}x (Spark's own cost)")
    base = spark_runs.get("float32")
    if base is not None:
        print(f"  Spark float32 / plain Keras: "
              f"{base['images_per_s'] / plain['images_per_s']:.2f}x")
    for precision in precisions[1:] if base is not None else ():
        sp = spark_runs[precision]
        cos = cosines(base["features"], sp["features"])
        print(f"  Spark {precision} / Spark float32: "
              f"{sp['images_per_s'] / base['images_per_s']:.2f}x (model only: "
              f"{ceiling[precision]['images_per_s'] / ceiling['float32']['images_per_s']:.2f}x);"
              f" per-image cosine vs float32: min {cos.min():.6f}, median "
              f"{np.median(cos):.6f} ({len(cos)} images)")
    print(f"  peak RSS (local[{args.cores}]: the driver JVM is the executor too): "
          f"{peaks.summary()}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ResNet50")
    ap.add_argument("--weights", default=None, help="imagenet, trained-like, none, or a "
                    "file [default: imagenet if cached, else trained-like]")
    ap.add_argument("--images", default="200", help="images per size: one count, or one "
                    "per --size (comma-separated)")
    ap.add_argument("--size", default="500x375", help="photo sizes WxH, comma-separated")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per side (median)")
    ap.add_argument("--precisions", default=None, help="comma-separated precisions for "
                    "the ceiling and the Spark path [default: float32,bfloat16, plus float16 "
                    "where a GPU is visible]")
    ap.add_argument("--engine", default="keras", help="what runs the model in the Spark "
                    "path: keras, openvino or auto (the ceilings stay Keras')")
    ap.add_argument("--digits-per-class", type=int, default=100,
                    help="digits per class for the accuracy check (0 to skip)")
    ap.add_argument("--memory-images", default="1000,10000",
                    help="comma-separated counts for the driver-memory check ('' to skip)")
    ap.add_argument("--memory-model", default="MobileNetV3Small")
    ap.add_argument("--memory-master", default="local-cluster[1,2,2048]",
                    help="master for the memory check: local-cluster keeps the driver JVM "
                    "apart from the executor that reads and shuffles the bytes")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sparkdl_bench"))
    args = ap.parse_args(argv)
    weights, weights_label = choose_weights(args.weights, args.model, args.workdir)
    sizes = [tuple(int(v) for v in text.split("x")) for text in args.size.split(",")]
    counts = [int(c) for c in args.images.split(",")]
    counts = counts * len(sizes) if len(counts) == 1 else counts
    if len(counts) != len(sizes):
        raise SystemExit("--images: one count, or one per --size")

    from sparkdl_magics.devices import visible_gpus
    precisions = [p.strip() for p in (args.precisions or "").split(",") if p.strip()] or \
        ["float32", "bfloat16"] + (["float16"] if visible_gpus() else [])
    if "float32" not in precisions:
        precisions.insert(0, "float32")  # the reference of every ratio and cosine

    print(f"{args.model} ({weights_label} weights), sizes {args.size}, {args.cores} cores, "
          f"batch {args.batch_size}, median of {args.repeat} runs", flush=True)
    from sparkdl_magics import session
    spark = session.start_local(f"local[{args.cores}]", conf={"spark.ui.enabled": "false"})
    for size, count in zip(sizes, counts):
        label = f"{size[0]}x{size[1]}"
        folder = os.path.join(args.workdir, f"photos_{label}_{count}")
        write_jpegs(folder, count, size)
        print(f"{label}: {count} images", flush=True)
        one_size(spark, folder, args, weights, precisions)
    if args.digits_per_class:
        accuracy, agree, tested = digits_accuracy(
            spark, os.path.join(args.workdir, f"digits_{args.digits_per_class}"), args.model,
            weights, args.batch_size, precisions, args.digits_per_class)
        ref = accuracy["float32"]
        print(f"digits, logistic regression on {args.model} features ({tested} test images): "
              + ", ".join(f"{p} {a:.4f} ({(a - ref) * 100:+.1f} points, same answer as "
                          f"float32 on {agree[p]:.1%})" for p, a in accuracy.items()),
              flush=True)
    session.stop()

    memory_counts = [int(c) for c in args.memory_images.split(",") if c.strip()]
    if memory_counts:
        spark = session.start_local(args.memory_master, conf={"spark.ui.enabled": "false"})
        print(f"driver memory on {args.memory_master}, {args.memory_model} "
              "(untrained weights):")
    for count in memory_counts:
        mfolder = os.path.join(args.workdir, f"photos_{sizes[0][0]}x{sizes[0][1]}_{count}")
        write_jpegs(mfolder, count, sizes[0])
        with PeakRSS() as mpeaks:
            res = spark_path(spark, mfolder, args.memory_model, "none", args.batch_size)
        print(f"  {count} images ({res['images_per_s']:.1f} images/s, {res['partitions']} "
              f"partitions): {mpeaks.summary()}", flush=True)
    session.stop()


if __name__ == "__main__":
    main()
