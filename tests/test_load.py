"""Many small cells in a row leak neither threads nor memory; the model cache is bounded.

(Featurizing thousands of images with bounded memory is measured, not timed, by
``benchmarks/load_featurize.py``.)
"""
from __future__ import annotations

import gc
import threading

import pytest

from imagegen import write_labelled_folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_labelled_folder(root, ("a", "b"), per_class=3, seed=4, sizes=[(32, 24)])
    return root


def _rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def _sparkdl_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("sparkdl"))


def test_many_small_cells_leak_no_threads_or_memory(spark, ip, tiny_folder):
    cells = ["%dlspark"] * 3 + [f"%%dlload imgs\npath: {tiny_folder}\nsplit: 0.5"]
    for cell in cells:  # warm-up: imports, Py4J connections, first jobs
        ip.run_cell(cell)
    gc.collect()
    threads_before = threading.active_count()
    rss_before = _rss_mb()
    for i in range(30):
        ip.run_cell("%dlspark")
        if i % 3 == 0:
            ip.run_cell(f"%%dlload imgs\npath: {tiny_folder}\nsplit: 0.5")
    gc.collect()
    assert ip.user_ns["imgs"].num_images == 6
    assert _sparkdl_threads() == [], "progress tickers left running"
    # Py4J may keep a spare connection thread or two; per-cell leaks would be >= 10
    assert threading.active_count() - threads_before <= 2, threading.enumerate()
    assert _rss_mb() - rss_before < 60, "driver memory grew over 40 small cells"


def test_interrupted_and_failed_cells_leave_no_progress_threads(spark, ip, tiny_folder):
    from IPython.core.error import UsageError
    for _ in range(10):
        with pytest.raises(UsageError):
            ip.run_cell(f"%%dlload bad\npath: {tiny_folder / 'missing'}")
    assert _sparkdl_threads() == []


def test_worker_model_cache_is_bounded(monkeypatch):
    """Switching models in one worker keeps at most MAX_CACHED_MODELS alive."""
    from sparkdl_magics import inference
    built = []

    def fake_build(spec):
        built.append(spec)
        return inference.LoadedModel(spec, object(), lambda x: x)

    monkeypatch.setattr(inference, "build", fake_build)
    inference.clear_cache()
    specs = [inference.ModelSpec(model=f"M{i}") for i in range(6)]
    for spec in specs * 3:
        inference.get_model(spec)
    assert len(inference._cache) == inference.MAX_CACHED_MODELS
    inference.get_model(specs[-1])  # the most recent one is kept, not rebuilt
    assert built.count(specs[-1]) == 3
    inference.clear_cache()
