"""Listing and counting many small image files with load_images keeps driver memory flat.

Writes N small JPEGs (default 20,000, in 4 class folders) to a temp dir, then runs
``load_images`` (Spark lists the files, checks every header, plans the split) on 1/10
of them and on all of them, and prints wall time and the driver's resident memory
(the Python process and the Spark driver JVM) before and at peak. Flat means the peak
barely moves between N/10 and N images: the driver only collects counts, invalid paths
and a few preview paths, never the bytes.

    .venv/bin/python benchmarks/load_listing.py [--images 20000] [--master local[2]]
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_images(root: Path, n: int, classes: int = 4) -> None:
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (16, 12), ((i * 37) % 256, (i * 11) % 256, 90)).save(buf, "JPEG")
        (root / f"class_{i % classes}" / f"img_{i:06d}.jpg").write_bytes(buf.getvalue())


class PeakRSS:
    """Samples the RSS of this process and of its Java children every 50 ms."""

    def __init__(self):
        self.me = psutil.Process()
        self.peak_py = self.peak_jvm = 0
        self._stop = threading.Event()

    def jvm_rss(self) -> int:
        total = 0
        for child in self.me.children(recursive=True):
            try:
                if "java" in child.name():
                    total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def sample(self) -> None:
        self.peak_py = max(self.peak_py, self.me.memory_info().rss)
        self.peak_jvm = max(self.peak_jvm, self.jvm_rss())

    def __enter__(self):
        self.peak_py = self.peak_jvm = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def mib(n: int) -> str:
    return f"{n / 2**20:7.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    from sparkdl_magics import session
    from sparkdl_magics.loading import load_images

    tmp = Path(tempfile.mkdtemp(prefix="sparkdl_load_bench_"))
    try:
        t0 = time.time()
        write_images(tmp / "all", args.images)
        small = tmp / "small"
        for folder in (tmp / "all").iterdir():
            (small / folder.name).mkdir(parents=True)
            for f in sorted(folder.iterdir())[: args.images // 40]:
                os.link(f, small / folder.name / f.name)
        print(f"wrote {args.images} images in {time.time() - t0:.1f}s to {tmp}")

        spark = session.start_local(args.master, conf={"spark.ui.enabled": "false"})
        load_images(str(small), spark=spark)  # warm-up: JVM, Python workers, code paths
        probe = PeakRSS()
        probe.sample()
        print(f"after warm-up: python {mib(probe.peak_py)}, JVM {mib(probe.peak_jvm)}")
        for label, folder in (("N/10", small), ("N", tmp / "all")):
            n = sum(1 for _ in folder.rglob("*.jpg"))
            before_py = probe.me.memory_info().rss
            before_jvm = probe.jvm_rss()
            with probe:
                t = time.time()
                images = load_images(str(folder), spark=spark)
                elapsed = time.time() - t
            total = int(images.counts["total"].sum())
            assert total == n, (total, n)
            print(f"{label:>4}: {n:6d} images, load_images {elapsed:6.1f}s "
                  f"({n / elapsed:7.0f} files/s) | python before {mib(before_py)} "
                  f"peak {mib(probe.peak_py)} | JVM before {mib(before_jvm)} "
                  f"peak {mib(probe.peak_jvm)} | {images.summary()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        session.stop()


if __name__ == "__main__":
    main()
