"""Load + featurize a few thousand small images in one go; report peak memory.

Peak RSS is sampled every 0.2 s with psutil for: the driver Python process, the driver
JVM, and the Spark Python workers (largest single worker, and all workers together).
Memory must not grow with the number of images: run with ``--images 1000`` and
``--images 4000`` and compare. Uses the seeded untrained weights (``weights: none``), so
no download is needed; the figures are about memory and throughput, not accuracy.

    .venv/bin/python benchmarks/load_featurize.py --images 3000 --master local[2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from peak_rss import PeakRSS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def write_images(root: Path, n: int, classes: int = 4) -> None:
    from imagegen import encode, synthetic_image
    per_class = n // classes
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = synthetic_image(c, c * 100_000 + i, (64, 48))
            (folder / f"{i:05d}.jpg").write_bytes(encode(image, "JPEG"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--model", default="MobileNetV3Small")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from sparkdl_magics import featurize, load_images, session
    mb = 2 ** 20
    with tempfile.TemporaryDirectory(prefix="sparkdl-bench-") as tmp:
        root = Path(tmp) / "images"
        t = time.perf_counter()
        write_images(root, args.images)
        print(f"wrote {args.images} images (64x48 JPEG) in {time.perf_counter() - t:.1f} s")
        spark = session.start_local(args.master, conf={"spark.ui.enabled": "false"})
        with PeakRSS() as peak:
            t0 = time.perf_counter()
            images = load_images(str(root), split=0.8, spark=spark)
            t1 = time.perf_counter()
            fs = featurize(images, model=args.model, weights="none",
                           batch_size=args.batch_size)
            t2 = time.perf_counter()
        n = fs.stats["images"]
        print(f"Spark {spark.version}, master {args.master}, model {args.model} "
              f"(untrained weights), batch {args.batch_size}")
        print(f"load_images: {images.num_images} images, {images.num_invalid} invalid, "
              f"{t1 - t0:.1f} s")
        print(f"featurize:   {n} images, {fs.stats['invalid']} invalid, {t2 - t1:.1f} s "
              f"({n / (t2 - t1):.1f} images/s)")
        print(f"peak RSS: {peak.summary()}")
        print(f"images x 64x48x3 bytes decoded would be {n * 64 * 48 * 3 / mb:.0f} MB; "
              f"x {args.model} input (224x224x3 float32) {n * 224 * 224 * 3 * 4 / mb:.0f} MB")
        fs.unpersist()
        session.stop()


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("SPARKDL_PROGRESS", "none")
    main()
