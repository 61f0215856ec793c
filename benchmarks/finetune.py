"""Benchmark: fine-tuning vs frozen features + logistic regression, same split and backbone.

    python benchmarks/finetune.py --per-class 50 --size 64 --epochs 10 --workers 2

scikit-learn's digits (``--per-class`` images per digit, upscaled to ``--size`` px JPEGs,
:func:`sparkdl_magics.datasets.write_digits`) are loaded once (split 0.8, seed 42) on
``local[--workers]``. Frozen: ``featurize`` with the backbone, ``fit`` a logistic
regression, ``evaluate`` on the test split. Fine-tuned: ``finetune`` (head + ``--unfreeze``
backbone layers, data-parallel over ``--workers`` barrier tasks), ``evaluate`` on the
same test split. Prints both accuracies, the fine-tuning's time per epoch and images/s
per worker (from the workers' own per-epoch timing: decode + train steps; the median of
the epochs after the first, which traces the training graph), and the
whole call's wall time (which includes starting TensorFlow in each worker).
``--weights``: ``auto`` uses ImageNet weights when Keras' cache has them, else untrained.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--model", default="MobileNetV3Small")
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--unfreeze", default="all")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--augment", default=None)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    from sparkdl_magics import evaluate, featurize, fit, load_images, session
    from sparkdl_magics.datasets import write_digits
    from sparkdl_magics.finetuning import finetune
    folder = os.path.join(tempfile.gettempdir(), f"sparkdl-bench-digits-{args.per_class}-"
                                                 f"{args.size}")
    write_digits(folder, per_class=args.per_class, size=args.size)
    spark = session.start_local(f"local[{args.workers}]",
                                conf={"spark.ui.enabled": "false",
                                      "spark.sql.shuffle.partitions": str(args.workers)})
    images = load_images(folder, split=0.8, seed=42, spark=spark)
    print(f"images: {images.summary()}", flush=True)

    started = time.perf_counter()
    features = featurize(images, model=args.model, weights=args.weights)
    clf = fit(features, "logistic_regression", maxIter=100)
    frozen = evaluate(clf, features)
    frozen_s = time.perf_counter() - started
    print(f"frozen {args.model} ({features.weights}) + logistic regression: accuracy "
          f"{frozen.metrics['accuracy']:.4f} ({frozen_s:.1f} s)", flush=True)

    started = time.perf_counter()
    tuned = finetune(images, model=args.model, weights=args.weights, unfreeze=args.unfreeze,
                     epochs=args.epochs, batch_size=args.batch_size,
                     learning_rate=args.learning_rate, workers=args.workers,
                     image_size=args.size, augment=args.augment,
                     on_epoch=lambda r: print(f"  epoch {r['epoch']}: loss {r['loss']:.4f} "
                                              f"accuracy {r['accuracy']:.4f} "
                                              f"({r['seconds']:.1f} s)", flush=True))
    tuned_s = time.perf_counter() - started
    tuned_ev = evaluate(tuned, images)
    history = tuned.history
    steady = history.iloc[1:] if len(history) > 1 else history  # epoch 1 traces the graph
    first_epoch = float(history["seconds"].iloc[0])
    per_epoch = float(steady["seconds"].median())
    per_worker = float(steady["images_per_s_per_worker"].median())
    print(f"fine-tuned {args.model} (unfreeze {args.unfreeze}, {len(history)} epochs, "
          f"{args.workers} workers, {args.size}x{args.size}): accuracy "
          f"{tuned_ev.metrics['accuracy']:.4f}")
    print(f"  time per epoch {per_epoch:.2f} s (median after the first; the first, which "
          f"traces the training graph: {first_epoch:.1f} s), {per_worker:.1f} images/s per "
          f"worker; whole finetune call {tuned_s:.1f} s")
    print(f"  workers' weights identical at every epoch: "
          f"{bool((tuned.checksums.groupby(['kind', 'epoch'])['checksum'].nunique() == 1).all())}")
    print(f"cpu: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
          "(shared machine: other work may slow both sides)")
    figures = {"frozen_accuracy": frozen.metrics["accuracy"],
               "finetuned_accuracy": tuned_ev.metrics["accuracy"],
               "seconds_per_epoch": per_epoch, "first_epoch_seconds": first_epoch, "images_per_s_per_worker": per_worker,
               "finetune_seconds": tuned_s, "frozen_seconds": frozen_s,
               "weights": features.weights, "args": vars(args)}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=1)
    session.stop()


if __name__ == "__main__":
    main()
