"""Benchmark: frozen features + logistic regression vs fine-tuning (plain, and linear probe
then fine-tune) vs plain Keras, on the same images, input size and trained backbone.

    python benchmarks/finetune.py --per-class 50 --size 64 --epochs 8 --workers 2

The backbone is a related task's network this script trains first (plain Keras, seeded):
a 3-conv CNN learns scikit-learn's digits 0-4 from the images *not* in the benchmark set,
and is saved as a ``.keras`` features model (pooled output). The benchmark set is
``--per-class`` images of all ten digits at ``--size`` px
(:func:`sparkdl_magics.datasets.write_digits`), loaded once (split 0.8, seed 42) on
``local[--workers]``. Setups, each evaluated on the same test split:

- frozen: ``featurize`` with the backbone + ``fit`` a logistic regression (the probe);
- plain fine-tuning: ``finetune(unfreeze="all", head_epochs=0)``, a new head from random
  weights, every epoch kept (what ``%%finetune`` did before the probe start);
- LP-FT, fitted head: ``finetune(head=<the probe>, unfreeze="all")``;
- LP-FT, warm-up: ``finetune(unfreeze="all")`` (``head_epochs: auto``: the linear head
  first fitted, inside the job, as a logistic regression on the frozen backbone's
  features, its L2 strength chosen on the validation images);
- plain Keras in this process: the backbone + a new softmax head, every layer training,
  ``--epochs`` of Adam 1e-3, batch ``--batch-size`` x workers, no Spark.

Two runs with the same ``--workdir`` (the images' paths pick each worker's share and the
validation split) and seed print the same weights checksums. Printed per setup: test accuracy, images/s per worker (fine-tuning: the workers' own
per-epoch timing, decode + steps, median after the first epoch; Keras: train images x
epochs / fit seconds, one process), and wall seconds. The machine may be shared: compare
the figures of one run with each other, not with another run's.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def related_task_backbone(path: str, size: int, seed: int, used: set, epochs: int) -> float:
    """Train the 3-conv CNN on digits 0-4 not in the benchmark set; save its features
    model (input -> pooled features) at *path*. Returns its training accuracy."""
    import keras
    from PIL import Image
    from sklearn.datasets import load_digits
    digits = load_digits()
    keep = [i for i in range(len(digits.target)) if digits.target[i] < 5 and i not in used]
    x = np.stack([np.asarray(Image.fromarray(
        (255 - digits.images[i] * (255 / 16)).astype(np.uint8), "L").convert("RGB").resize(
        (size, size), Image.Resampling.BICUBIC), np.float32) / 255.0 for i in keep])
    y = digits.target[keep]
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()  # the same backbone every run
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(32, 3, strides=2, activation="relu", name="conv2")(h)
    h = keras.layers.Conv2D(64, 3, strides=2, activation="relu", name="conv3")(h)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    out = keras.layers.Dense(5, activation="softmax", name="old_head")(pooled)
    net = keras.Model(inputs, out)
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    net.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    accuracy = float(net.evaluate(x, y, verbose=0)[1])
    keras.Model(inputs, pooled).save(path)
    return accuracy


def benchmark_indices(per_class: int, seed: int = 0) -> set:
    """The sklearn indices :func:`write_digits` picks (same rng), kept out of the backbone."""
    from sklearn.datasets import load_digits
    target = load_digits().target
    rng = np.random.default_rng(seed)
    used = set()
    for label in range(10):
        indices = np.flatnonzero(target == label)
        if per_class < len(indices):
            indices = np.sort(rng.choice(indices, size=per_class, replace=False))
        used.update(int(i) for i in indices)
    return used


def plain_keras(backbone: str, images, epochs: int, batch: int, seed: int):
    """The same network (backbone + new softmax head, all layers) fitted by Keras alone."""
    import keras

    from sparkdl_magics.imaging import decode_array

    def arrays(df):
        rows = df.select("content", "label").collect()
        x = np.stack([decode_array(r["content"], (size, size)) for r in rows]) / np.float32(255)
        return x, np.asarray([int(r["label"]) for r in rows])
    net = keras.saving.load_model(backbone, compile=False)
    size = int(net.input_shape[1])
    x, y = arrays(images.train)
    xt, yt = arrays(images.test)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(net.input_shape[1:])
    out = keras.layers.Dense(len(images.classes), activation="softmax")(net(inputs))
    model = keras.Model(inputs, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0)
    seconds = time.perf_counter() - started
    return float(model.evaluate(xt, yt, verbose=0)[1]), len(x) * epochs / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--backbone-epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "sparkdl_bench_finetune"),
                        help="images and backbone are written here (emptied first)")
    args = parser.parse_args()

    from sparkdl_magics import evaluate, featurize, fit, load_images, session
    from sparkdl_magics.datasets import write_digits
    from sparkdl_magics.finetuning import finetune
    # a fixed folder: the images' paths choose each worker's share and the validation
    # split, so two runs compare (same checksums) only on the same paths
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    folder = os.path.join(work, "digits")
    write_digits(folder, per_class=args.per_class, size=args.size)
    backbone = os.path.join(work, "digits0-4_features.keras")
    trained = related_task_backbone(backbone, args.size, args.seed,
                                    benchmark_indices(args.per_class), args.backbone_epochs)
    print(f"backbone: 3-conv CNN trained on digits 0-4 not in the set (training accuracy "
          f"{trained:.3f}), saved as a features model", flush=True)
    spark = session.start_local(f"local[{args.workers}]",
                                conf={"spark.ui.enabled": "false",
                                      "spark.sql.shuffle.partitions": str(args.workers)})
    images = load_images(folder, split=0.8, seed=42, spark=spark)
    print(f"images: {images.summary()}", flush=True)
    figures = {}

    def show(name, accuracy, per_worker, seconds, extra=""):
        figures[name] = {"accuracy": accuracy, "images_per_s_per_worker": per_worker,
                         "seconds": round(seconds, 1)}
        rate = f"{per_worker:7.1f}" if per_worker else "      -"
        print(f"{name:34s} accuracy {accuracy:.4f}  images/s/worker {rate}  "
              f"{seconds:6.1f} s  {extra}", flush=True)

    started = time.perf_counter()
    features = featurize(images, model=backbone, preprocess="unit")
    clf = fit(features, "logistic_regression", maxIter=100)
    show("frozen features + logistic reg.", evaluate(clf, features).metrics["accuracy"],
         None, time.perf_counter() - started)

    common = dict(model=backbone, preprocess="unit", unfreeze="all", epochs=args.epochs,
                  batch_size=args.batch_size, workers=args.workers, seed=args.seed)
    setups = [("plain fine-tuning (new head)", dict(head_epochs=0)),
              ("LP-FT, head: fitted regression", dict(head=clf)),
              ("LP-FT, automatic head warm-up", dict())]
    for name, extra in setups:
        started = time.perf_counter()
        tuned = finetune(images, **common, **extra)
        seconds = time.perf_counter() - started
        history = tuned.history[tuned.history["epoch"] > 0]
        steady = history.iloc[1:] if len(history) > 1 else history
        warm = ("none" if tuned.warmup is None else "regression C=%g" % tuned.warmup["probe_C"].iloc[0]
                if "probe_C" in tuned.warmup else f"{len(tuned.warmup)} epochs")
        show(name, evaluate(tuned, images, top_errors=0).metrics["accuracy"],
             float(steady["images_per_s_per_worker"].median()), seconds,
             f"(epochs run {len(history)}, kept {tuned.best_epoch}, head warm-up {warm}, "
             f"checksum {tuned.checksum})")
    accuracy, rate, seconds = plain_keras(backbone, images, args.epochs,
                                          args.batch_size * args.workers, args.seed)
    show("plain Keras, one process", accuracy, rate, seconds, "(all layers, new head)")
    print(f"cpu: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
          "(shared machine: other work slows every setup)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"setups": figures, "args": vars(args)}, f, indent=1)
    session.stop()


if __name__ == "__main__":
    main()
