"""Benchmark: explaining images (class heatmaps) vs predicting them, same images/cores.

    python benchmarks/explain.py --model MobileNetV3Small --images 48 --cores 2

Writes --images generated JPEGs (500x375) in two class folders, loads them with
``load_images`` (all in train), featurizes them with --model (untrained seeded weights:
offline machines; the cost is the same) and fits a logistic regression (not timed).
Then, each side warmed up once (models built on the workers) and timed --repeat
times (median counts):

- predict: ``fitted.predict(images.df)`` collected (featurizer + classifier, every image);
- explain: ``explain(fitted, images.df, n=images)``: the same prediction pass (to put
  mistakes first) plus the heatmap pass over the n images, thumbnails and overlays.

Prints both times and their ratio (the target: about 3x or less).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from featurize import write_jpegs  # noqa: E402  (next to this script)


def timed(fn, repeat: int) -> float:
    fn()  # warm-up: models built and cached on the workers
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MobileNetV3Small")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--method", default="auto")
    args = parser.parse_args()

    from sparkdl_magics import explain, featurize, fit, load_images, session
    folder = tempfile.mkdtemp(prefix="explain-bench-")
    half = args.images // 2
    write_jpegs(os.path.join(folder, "a"), half)
    write_jpegs(os.path.join(folder, "b"), args.images - half)
    spark = session.start_local(f"local[{args.cores}]", conf={"spark.ui.enabled": "false"})
    images = load_images(folder, split=1.0, spark=spark)
    features = featurize(images, model=args.model, weights="none")
    fitted = fit(features, maxIter=10)

    def predict():
        return fitted.predict(images.df).select("path", "prediction_name").collect()

    def explained():
        return explain(fitted, images.df, n=args.images, method=args.method)

    t_predict = timed(predict, args.repeat)
    t_explain = timed(explained, args.repeat)
    method = explained().method
    print(f"{args.images} images, {args.model} (weights none: untrained, seeded), "
          f"local[{args.cores}], median of {args.repeat}:")
    print(f"  predict  {t_predict:6.2f} s  ({args.images / t_predict:.1f} images/s)")
    print(f"  explain  {t_explain:6.2f} s  ({method}; prediction pass + heatmaps)")
    print(f"  ratio    {t_explain / t_predict:6.2f}x  (target: <= ~3x)")
    session.stop()


if __name__ == "__main__":
    main()
