"""Live progress and cancellation, against real Spark (classic and Connect).

The progress display is fed by Spark itself (status tracker / Connect progress
handler); these tests run real multi-stage jobs and check the final widget and text
state against the snapshot's own stage data, cancel long jobs from another thread and
with a real SIGINT, and check no ticker thread outlives its cell.
"""
from __future__ import annotations

import io
import os
import signal
import threading
import time

import pytest

from sparkdl_magics import progress
from sparkdl_magics.display.progress import TextProgressView, WidgetProgressView


def _multistage(spark, task_seconds=0.0):
    """A shuffle: a map stage over 4 partitions, then the reduce side (each task of
    both taking at least *task_seconds*)."""
    df = spark.range(0, 2000, numPartitions=4)
    if not task_seconds:
        return df.groupBy((df.id % 5).alias("k")).count().collect()

    def slow(batches):
        import time as _time
        _time.sleep(task_seconds)
        yield from batches
    mapped = df.mapInPandas(slow, df.schema)
    counts = mapped.groupBy((mapped.id % 5).alias("k")).count()
    return counts.mapInPandas(slow, counts.schema).collect()  # the reduce side takes time too


def _sleepy_udf(seconds):
    from pyspark.sql import functions as F

    @F.udf("long")
    def sleepy(x):
        import time as _time
        _time.sleep(seconds)
        return x
    return sleepy


def _wait_for(predicate, timeout=60.0, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def _assert_complete(snap, source):
    assert snap.status == "done"
    assert snap.source == source
    assert snap.tasks_total > 0
    assert snap.tasks_done == snap.tasks_total
    assert len(snap.counted) >= 2, snap.as_dict()  # a map stage and a reduce stage
    assert snap.tasks_failed in (0, None)


# --------------------------------------------------------------------------- classic

def test_classic_widget_ends_with_every_task_of_every_stage(spark):
    view = WidgetProgressView("featurize")
    with progress.cell_scope(spark, "featurize", view=view) as scope:
        rows = _multistage(spark)
    assert sorted(r["k"] for r in rows) == [0, 1, 2, 3, 4]
    snap = scope.snapshot()
    _assert_complete(snap, "status-tracker")
    # stages are named by what the cell does, never by Spark's call site (a file path)
    assert all(s.name == "featurize" for s in snap.counted)
    assert snap.jobs >= 1
    assert view.bar.value == view.bar.max == snap.tasks_total
    assert view.bar.bar_style == "success"
    assert f"{snap.tasks_total}/{snap.tasks_total} tasks" in view.stats.value
    assert "done" in view.stats.value
    assert progress.last is not None and progress.last.as_dict() == snap.as_dict()


def test_text_view_prints_a_final_summary_from_the_same_data(spark):
    out = io.StringIO()
    view = TextProgressView(interval=5.0, delay=2.0, stream=out)
    with progress.cell_scope(spark, "fit", view=view) as scope:
        _multistage(spark)
    snap = scope.snapshot()
    _assert_complete(snap, "status-tracker")
    lines = out.getvalue().splitlines()
    assert lines[-1] == view.lines[-1] == snap.describe()
    assert lines[-1].startswith("fit: done")
    assert f"{snap.tasks_total}/{snap.tasks_total} tasks" in lines[-1]


def test_cancel_from_another_thread_stops_only_that_work(spark):
    _check_cancel_from_thread(spark)


def test_keyboard_interrupt_cancels_this_cells_jobs_and_not_others(spark, caplog):
    other = _check_keyboard_interrupt(spark)
    # It never lands inside Py4J: Py4J's clean-up for that shuts down every gateway
    # connection it can find, failing the other thread's query at random.
    assert "KeyboardInterrupt while sending command" not in caplog.text
    sc = spark.sparkContext

    def statuses(tag):
        tracker = sc.statusTracker()
        return {str(tracker.getJobInfo(j).status) for j in tracker.getJobIdsForGroup(tag)}
    # cancelled jobs end as failed (the listener bus reports it a moment later)
    assert _wait_for(lambda: statuses(other["long"].tag) == {"FAILED"}, timeout=15)
    assert statuses(other["tag"]) == {"SUCCEEDED"}


def test_a_cancelled_cell_starts_no_more_jobs(spark):
    with progress.cell_scope(spark, "stopped", mode="none") as scope:
        scope.cancel()
        started = time.monotonic()
        with pytest.raises(Exception, match="cancelled"):
            spark.range(0, 2, numPartitions=2).select(_sleepy_udf(30)("id")).collect()
        assert time.monotonic() - started < 10
    assert spark.range(10).count() == 10  # outside the scope, jobs run again


def test_interrupt_during_a_jvm_call_that_is_no_job_says_so_and_a_second_one_stops(
        spark, capsys):
    box = {}

    def press_twice():
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)
        box["said"] = _wait_for(lambda: "interrupt again" in capsys.readouterr().err, 15, 0.1)
        box["sent"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_twice)
    presser.start()
    with pytest.raises(KeyboardInterrupt):
        with progress.cell_scope(spark, "sleeping-jvm", mode="none"):
            spark.sparkContext._jvm.java.lang.Thread.sleep(30_000)  # a Py4J call, no job
    presser.join(20)
    assert box["said"], "no hint after the first interrupt"
    assert time.monotonic() - box["sent"] < 15  # half the 30 s sleep: stopped, not waited
    assert spark.range(10).count() == 10  # the gateway still serves this thread


def test_no_thread_leak_after_many_scopes(spark):
    before = set(threading.enumerate())
    for i in range(20):
        view = TextProgressView(interval=0, delay=0, stream=io.StringIO())
        with progress.cell_scope(spark, f"cell{i}", view=view):
            spark.range(0, 10, numPartitions=1).count()
    time.sleep(0.2)
    leaked = [t for t in set(threading.enumerate()) - before if t.name.startswith("sparkdl-progress")]
    assert leaked == []
    assert threading.active_count() <= len(before)


def test_scope_restores_the_users_job_group_and_tags(spark):
    sc = spark.sparkContext
    sc.setJobGroup("mine", "my group")
    try:
        with progress.cell_scope(spark, "x", mode="none") as scope:
            assert sc.getLocalProperty("spark.jobGroup.id") == scope.tag
            # classic sessions get no session tag (it breaks MLlib model summaries)
            assert scope.tag not in spark.getTags()
        assert sc.getLocalProperty("spark.jobGroup.id") == "mine"
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
        sc.setLocalProperty("spark.job.interruptOnCancel", None)


def test_magic_context_scope_is_the_cell_scope(spark, ip):
    from sparkdl_magics.magics import dlspark
    from sparkdl_magics.magics.runner import Context
    ctx = Context(ip, dlspark.SPEC, None)
    view = TextProgressView(stream=io.StringIO())
    with ctx.progress_scope("evaluate", view=view) as scope:
        spark.range(5).count()
    assert scope.label == "evaluate" and scope.snapshot().status == "done"


# --------------------------------------------------------------------------- Connect

def test_connect_widget_ends_with_every_task_of_every_stage(spark_connect):
    view = WidgetProgressView("featurize")
    with progress.cell_scope(spark_connect, "featurize", view=view) as scope:
        # The server reports progress from an asynchronous Spark listener: a query of a
        # fraction of a second can end before that listener saw its job (seen once in CI,
        # no stage ever reported), so the map tasks here last a second each.
        rows = _multistage(spark_connect, task_seconds=1.5)
    assert sorted(r["k"] for r in rows) == [0, 1, 2, 3, 4]
    snap = scope.snapshot()
    _assert_complete(snap, "connect")
    assert view.bar.value == view.bar.max == snap.tasks_total
    assert view.bar.bar_style == "success"
    # the handler is removed when the cell ends
    assert scope._source not in spark_connect._client._progress_handlers


def test_connect_cancel_from_another_thread(spark_connect):
    scope = _check_cancel_from_thread(spark_connect)
    assert scope.interrupted  # the server reported the interrupted operation


def test_connect_keyboard_interrupt_cancels_this_cells_jobs(spark_connect):
    _check_keyboard_interrupt(spark_connect)


def test_connect_handler_ignores_other_threads(spark_connect):
    """Another thread's query (e.g. the app running beside a cell) is not counted."""
    with progress.cell_scope(spark_connect, "mine", mode="none",
                             view=TextProgressView(stream=io.StringIO())) as scope:
        worker = threading.Thread(target=lambda: _multistage(spark_connect))
        worker.start()
        worker.join(120)
    assert scope.snapshot().tasks_total == 0


# --------------------------------------------------------------------------- shared checks

def _check_cancel_from_thread(spark):
    sleepy = _sleepy_udf(120)
    box = {}

    def cell():
        try:
            with progress.cell_scope(spark, "long", view=TextProgressView(stream=io.StringIO())) as scope:
                box["scope"] = scope
                spark.range(0, 2, numPartitions=2).select(sleepy("id")).collect()
        except Exception as exc:  # the cancelled query fails
            box["error"] = exc
        box["ended"] = time.monotonic()

    worker = threading.Thread(target=cell)
    worker.start()
    assert _wait_for(lambda: "scope" in box and box["scope"].snapshot().tasks_active > 0
                     or "ended" in box, timeout=90), "the long job never started"
    started = time.monotonic()
    box["scope"].cancel()
    worker.join(30)
    assert not worker.is_alive()
    assert box["ended"] - started < 15
    assert "error" in box
    snap = box["scope"].snapshot()
    assert snap.status == "cancelled" and snap.tasks_done < snap.tasks_total
    assert spark.range(10).count() == 10  # the session still runs queries
    return box["scope"]


def _check_keyboard_interrupt(spark):
    """SIGINT while this thread's job runs: KeyboardInterrupt here within seconds, the
    other thread's job (another cell's work) still finishes."""
    sleepy, short = _sleepy_udf(120), _sleepy_udf(4)
    other = {}

    def other_cell():
        with progress.cell_scope(spark, "other", mode="none") as scope:
            other["tag"] = scope.tag
            other["rows"] = spark.range(0, 1, numPartitions=1).select(short("id")).collect()

    box = {}

    def interrupt_when_running():
        if _wait_for(lambda: "scope" in box and box["scope"].snapshot().tasks_active > 0, 90):
            time.sleep(0.5)
        box["sent"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    worker = threading.Thread(target=other_cell)
    worker.start()
    killer = threading.Thread(target=interrupt_when_running)
    killer.start()
    with pytest.raises(KeyboardInterrupt):
        with progress.cell_scope(spark, "long", view=TextProgressView(stream=io.StringIO())) as scope:
            box["scope"] = scope
            spark.range(0, 1, numPartitions=1).select(sleepy("id")).collect()
    assert time.monotonic() - box["sent"] < 10
    killer.join(5)
    worker.join(120)
    assert len(other.get("rows", [])) == 1  # the other cell's job was not cancelled
    assert scope.snapshot().status == "cancelled"
    assert spark.range(10).count() == 10
    return {**other, "long": scope}


# --------------------------------------------------------------------------- no Spark

def _fake_snapshot(done, total, elapsed, status="running"):
    snap = progress.ProgressSnapshot(label="featurize", source="status-tracker", status=status,
                                     elapsed=elapsed, items=400, unit="images")
    snap.stages = [progress.StageProgress(0, "mapPartitions at x", total, done, 2, 0)]
    return snap


def test_text_view_does_not_flood():
    out = io.StringIO()
    view = TextProgressView(interval=5.0, delay=2.0, stream=out)
    for i in range(200):  # 200 updates within a second of work: too short to print
        view.update(_fake_snapshot(i % 40, 40, elapsed=i / 200))
    assert out.getvalue() == ""
    for i in range(200):  # past the delay: at most one line per interval
        view.update(_fake_snapshot(i % 40, 40, elapsed=3 + i / 200))
    assert len(out.getvalue().splitlines()) == 1
    view.finish(_fake_snapshot(40, 40, elapsed=4.0, status="done"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("featurize: done 40/40 tasks")


def test_snapshot_rates_and_eta_are_data():
    snap = _fake_snapshot(10, 40, elapsed=5.0)
    data = snap.as_dict()
    assert data["tasks_done"] == 10 and data["tasks_total"] == 40
    assert data["tasks_per_s"] == pytest.approx(2.0)
    assert data["items_per_s"] is None  # no images counted: no images rate made up
    assert data["eta"] == pytest.approx(15.0)
    # images counted at the model's stage: the bar, rate and ETA are images
    snap.items_done, snap.work_elapsed = 100, 4.0
    data = snap.as_dict()
    assert data["progress"] == [100, 400] and data["fraction"] == pytest.approx(0.25)
    assert data["items_per_s"] == pytest.approx(25.0)
    assert data["eta"] == pytest.approx(12.0)
    line = snap.describe()
    assert "100/400 images (25 %)" in line and "25.0 images/s" in line and "ETA 12.0 s" in line


def test_work_counts_images_of_the_inference_stage_only():
    """A shuffled split: the scan (first stage of each job) and a later stage with
    another task count are not the model; the model's stage with 4 tasks of 25 images
    each is; the count never goes back."""
    w = progress.Work("k", "featurize: M on 100 train images", items=100, tasks=4, shuffled=True)
    scan = progress.StageProgress(0, num_tasks=4, completed=4)
    model = progress.StageProgress(2, num_tasks=4, completed=1)
    final = progress.StageProgress(3, num_tasks=1)
    jobs = [[scan], [progress.StageProgress(1, num_tasks=4, skipped=True), model, final]]
    w.count(jobs)
    assert w.done == 25
    model.completed = 0  # a retried attempt reports fewer: the bar does not go back
    w.count(jobs)
    assert w.done == 25
    model.completed = 4
    w.count(jobs)
    assert w.done == 100


def test_connect_end_counts_the_stages_seen_running_and_the_result_stage_only():
    """The server's last report lagged: the map stage done, the reduce copy of it (AQE:
    already computed, skipped; once listed as the latest stage while map tasks ran) and
    the result stage not started yet. When the operation
    succeeded, the result stage ran all its tasks and the never-started copy did not:
    5 tasks ran, not 9."""
    from types import SimpleNamespace

    from pyspark.sql.connect.shell.progress import StageInfo

    from sparkdl_magics.progress.connect import ConnectSource
    handlers = []  # the session's handler list (what registerProgressHandler fills)
    spark = SimpleNamespace(registerProgressHandler=handlers.append,
                            removeProgressHandler=handlers.remove)
    source = ConnectSource(spark)
    handlers[0](stages=[StageInfo(0, 4, 2, 0, False)], inflight_tasks=2, operation_id="op",
                done=False)
    # the reduce copy listed while the map stage's last tasks run: the in-flight tasks
    # (reported per operation) are not its own
    handlers[0](stages=[StageInfo(0, 4, 3, 0, False), StageInfo(1, 4, 0, 0, False)],
                inflight_tasks=1, operation_id="op", done=False)
    report = [StageInfo(0, 4, 4, 0, True), StageInfo(1, 4, 0, 0, False),
              StageInfo(2, 1, 0, 0, False)]
    handlers[0](stages=report, inflight_tasks=0, operation_id="op", done=False)
    handlers[0](stages=report, inflight_tasks=0, operation_id="op", done=True)
    source.finish(succeeded=True)
    assert handlers == []
    snap = progress.ProgressSnapshot(label="x", source="connect", status="done")
    source.fill(snap)
    assert [(s.stage_id, s.completed, s.skipped) for s in snap.stages] == [
        (0, 4, False), (1, 0, True), (2, 1, False)]
    assert (snap.tasks_done, snap.tasks_total) == (5, 5)


def test_skipped_stages_do_not_count():
    from sparkdl_magics.progress.snapshot import mark_skipped
    stages = [progress.StageProgress(1, "a", 4), progress.StageProgress(2, "b", 1, completed=1)]
    mark_skipped(stages)
    assert stages[0].skipped and not stages[1].skipped


def test_mode_setting(monkeypatch):
    old = progress.settings.mode
    try:
        assert progress.resolve_mode("auto") == "text"  # no kernel here
        progress.configure(mode="none")
        assert progress.resolve_mode() == "none"
        assert progress.resolve_mode("widget") == "widget"
        from sparkdl_magics.errors import OptionError
        with pytest.raises(OptionError, match="expected one of auto, widget, text, none"):
            progress.configure(mode="bars")
    finally:
        progress.settings.mode = old


# --------------------------------------------------------------------------- featurize

N_IMAGES = 200  # small 32x32 files; 8 partitions of 25 images: the model's stage has 8 tasks


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    from imagegen import write_labelled_folder
    root = tmp_path_factory.mktemp("many")
    write_labelled_folder(root, ("a", "b"), per_class=N_IMAGES // 2, seed=5, sizes=[(32, 32)])
    return root


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from helpers import SMALL, write_weights
    return write_weights(SMALL, tmp_path_factory.mktemp("w"))


class RecordingView(WidgetProgressView):
    """The widget, recording every snapshot it receives and the bar it then shows."""

    def __init__(self, label):
        super().__init__(label)
        self.seen = []

    def update(self, snap):
        super().update(snap)
        self.seen.append((snap, self.bar.value, self.bar.max, self.detail.value))


def _featurize_progress(spark, folder, weights):
    from helpers import image_set_of
    from helpers import SMALL, binary_images
    from sparkdl_magics import featurize
    df = binary_images(spark, folder)
    images = image_set_of(df.filter("path not like '%0001%'"), df.filter("path like '%0001%'"),
                          ["a", "b"])
    old = progress.settings.poll_interval
    progress.configure(poll_interval=0.2)
    view = RecordingView("featurize")
    try:
        with progress.cell_scope(spark, "featurize", view=view) as scope:
            fs = featurize(images, model=SMALL, weights=str(weights), batch_size=8, partitions=8)
    finally:
        progress.configure(poll_interval=old)
    fs.unpersist()
    return fs, scope.snapshot(), view


def _check_featurize_progress(fs, final, view):
    counted = [(snap, value, top, detail) for snap, value, top, detail in view.seen
               if snap.counts_items]
    sequence = [(round(s.elapsed, 1), *s.progress) for s, *_ in counted]
    print("bar (elapsed, images done, of):", sequence)
    assert counted, "the images were never counted"
    # the total is the images asked for, fixed from the first counted snapshot on
    assert {s.items for s, *_ in counted} == {N_IMAGES}
    assert {s.unit for s, *_ in counted} == {"images"}
    assert {top for _, _, top, _ in counted} == {N_IMAGES}
    # images done and the bar never go back; they end at 100 %
    done = [s.items_done for s, *_ in counted]
    values = [value for _, value, _, _ in counted]
    assert done == sorted(done) and values == sorted(values), sequence
    assert any(0 < d < N_IMAGES for d in done), sequence  # counted while the model ran
    assert final.status == "done" and final.progress == (N_IMAGES, N_IMAGES)
    assert view.bar.value == view.bar.max == N_IMAGES and view.bar.bar_style == "success"
    assert "100 %" in view.stats.value
    # no running snapshot claims everything done before the work ended
    assert all(s.items_done < N_IMAGES for s, *_ in counted if s.status == "running"
               and s.description.endswith("train images"))
    # the ETA comes from the images rate
    for s, *_ in counted:
        if s.status == "running" and s.items_done:
            assert s.eta == pytest.approx((N_IMAGES - s.items_done) / s.items_per_s)
    # what runs is said in the user's words: never a file path or a call site
    texts = [detail for *_, detail in view.seen] + [s.describe() for s, *_ in view.seen]
    texts += [st.name for st in final.stages]
    for text in texts:
        assert ".py:" not in text and ".java:" not in text and "sparkdl_magics/" not in text, text
    assert any("featurize: MobileNetV3Small on " in t and "train images" in t for t in texts)
    # the summary's time and the bar's are one measurement
    assert fs.stats["seconds"] == pytest.approx(final.elapsed, abs=0.5)


def test_featurize_bar_counts_images_classic(spark, many_images, tiny_weights):
    fs, final, view = _featurize_progress(spark, many_images, tiny_weights)
    _check_featurize_progress(fs, final, view)


def test_featurize_bar_counts_images_connect(spark_connect, many_images, tiny_weights):
    fs, final, view = _featurize_progress(spark_connect, many_images, tiny_weights)
    _check_featurize_progress(fs, final, view)


def test_a_widget_bar_never_moves_back_a_new_count_gets_a_fresh_bar():
    """The next job of a fit starts at 0: a new bar replaces the full one."""
    from sparkdl_magics.progress import ProgressSnapshot, StageProgress
    view = WidgetProgressView("fit")

    def snap(job, done, total, status="running"):
        stage = StageProgress(stage_id=job, name="fit", num_tasks=total, completed=done,
                              job=job)
        return ProgressSnapshot(label="fit", source="status-tracker", stages=[stage],
                                jobs=job, elapsed=1.0, status=status, current_job=job)
    seen = []  # (bar object, fraction shown) after every update
    for s in (snap(1, 2, 4), snap(1, 1, 4), snap(1, 4, 4), snap(2, 1, 10), snap(2, 5, 10),
              snap(2, 10, 10, "done")):
        view.update(s)
        seen.append((view.bar, view.bar.value / view.bar.max))
    bars = list(dict.fromkeys(b for b, _ in seen))
    assert len(bars) == 2 and view.row.children[1] is bars[-1]
    for bar in bars:
        fractions = [f for b, f in seen if b is bar]
        assert fractions == sorted(fractions), fractions
    assert seen[-1][1] == 1.0
    assert bars[0].value == bars[0].max  # the replaced job's bar was completed, not left


# --------------------------------------------------------------------------- magics

def _cells_end_complete(ip, folder, spark):
    """Each magic's last progress is its own, finished: every task of every stage it ran
    counted (none left at 5/7), and its line names each thing once."""
    cells = {"dlload": f"%%dlload flowers\npath: {folder}\nsplit: 0.5\nseed: 3\n",
             "featurize": "%%featurize flowers -> feats\nmodel: MobileNetV3Small\n"
                          "weights: none\nbatch_size: 8\n",
             "fit": "%%fit feats -> clf\nmaxIter: 5\n",
             "evaluate": "%evaluate clf -> report"}
    old = progress.settings.mode
    progress.configure(mode="text")
    try:
        for label, cell in cells.items():
            progress.last = None
            ip.run_cell(cell)
            snap = progress.last
            assert snap is not None and snap.label == label, (label, snap)
            assert snap.status == "done", (label, snap.as_dict())
            assert snap.tasks_done == snap.tasks_total, (label, snap.as_dict())
            # a Connect server reports from an asynchronous listener: an operation that
            # ends before it saw the job (a quick %%dlload or %evaluate job) may never be
            # reported; a featurize or fit runs long enough, and a local session's always is
            quick = snap.source == "connect" and label in ("dlload", "evaluate")
            assert snap.tasks_total > 0 or quick, (label, snap.as_dict())
            line = snap.describe()
            assert line.startswith(f"{label}: done") and line.count(f"{label}:") == 1, line
            ids = [s.stage_id for s in snap.stages]
            assert len(ids) == len(set(ids)), (label, snap.as_dict())  # no stage twice
    finally:
        progress.configure(mode=old)
        for name in ("flowers", "feats", "clf", "report"):
            ip.user_ns.pop(name, None)


def test_every_magic_ends_with_all_its_tasks_counted_classic(spark, ip, image_folder):
    _cells_end_complete(ip, image_folder, spark)


def test_every_magic_ends_with_all_its_tasks_counted_connect(spark_connect, ip, image_folder):
    _cells_end_complete(ip, image_folder, spark_connect)


# --------------------------------------------------------------------------- Connect, live

class _Recorder:
    """A view that keeps, as plain data, every snapshot the scope sends it (the stage
    objects change under a snapshot later; ``as_dict`` copies their counts now)."""

    def __init__(self):
        self.seen = []
        self.final = None

    def show(self):
        pass

    def update(self, snap):
        self.seen.append(snap.as_dict())

    def finish(self, snap):
        self.final = snap.as_dict()


def _logging_multistage(spark, log, task_seconds):
    """:func:`_multistage`, each task of both sides appending one line to *log* (the
    server runs on this machine): the lines are the tasks that really ran."""
    def slow(batches):
        import time as _time

        from pyspark import TaskContext
        ctx = TaskContext.get()
        with open(log, "a") as out:
            out.write(f"{ctx.stageId()} {ctx.partitionId()} {ctx.attemptNumber()}\n")
        _time.sleep(task_seconds)
        yield from batches
    df = spark.range(0, 2000, numPartitions=4)
    mapped = df.mapInPandas(slow, df.schema)
    counts = mapped.groupBy((mapped.id % 5).alias("k")).count()
    return counts.mapInPandas(slow, counts.schema).collect()


def test_connect_counts_grow_while_the_work_runs_and_end_at_the_tasks_that_ran(
        spark_connect, tmp_path):
    """What the server reported while the work ran, not what the end assumes: tasks done
    go up while it runs (each stage's count never goes back), no running snapshot claims
    it all done, and the end counts exactly the tasks that ran (one log line each). A
    count only the end supplies is limited to stages the server saw start."""
    log = tmp_path / "tasks.log"
    view = _Recorder()
    old = progress.settings.poll_interval
    progress.configure(poll_interval=0.2)
    try:
        with progress.cell_scope(spark_connect, "featurize", view=view) as scope:
            rows = _logging_multistage(spark_connect, str(log), task_seconds=1.5)
    finally:
        progress.configure(poll_interval=old)
    assert sorted(r["k"] for r in rows) == [0, 1, 2, 3, 4]
    ran = log.read_text().splitlines()
    running = [s for s in view.seen if s["status"] == "running"]
    done = [s["tasks_done"] for s in running]
    print("running (tasks done, of):", [(s["tasks_done"], s["tasks_total"]) for s in running])
    assert done == sorted(done), done
    assert any(0 < s["tasks_done"] < s["tasks_total"] for s in running), done  # counted live
    assert all(s["tasks_done"] <= len(ran) for s in running), done
    per_stage = {}
    for s in running + [view.final]:
        for stage in s["stages"]:
            per_stage.setdefault(stage["stage_id"], []).append(stage["completed"])
    for stage_id, counts in per_stage.items():
        assert counts == sorted(counts), (stage_id, counts)
    final = view.final
    assert final["status"] == "done" and final["source"] == "connect"
    assert final["tasks_done"] == final["tasks_total"] == len(ran), (final, ran)
    # a stage the end counts was seen running, or is the operation's result stage
    seen_running = {st["stage_id"] for s in running for st in s["stages"]
                    if st["completed"] or st["active"] or st["done"]}
    last = max(st["stage_id"] for st in final["stages"])
    counted = {st["stage_id"] for st in final["stages"] if not st["skipped"]}
    assert counted <= seen_running | {last}, (counted, seen_running)
    assert len(counted) >= 2, final  # a map stage and a reduce stage


def _ticking_udf(path, seconds):
    """A UDF that appends a line to *path* every 0.2 s for *seconds*: while the file
    grows, the server's task still runs."""
    from pyspark.sql import functions as F

    @F.udf("long")
    def ticking(x):
        import time as _time
        end = _time.monotonic() + seconds
        while _time.monotonic() < end:
            with open(path, "a") as out:
                out.write("tick\n")
            _time.sleep(0.2)
        return x
    return ticking


def _lines(path):
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def test_connect_interrupt_stops_the_job_on_the_server(spark_connect, tmp_path):
    """The stop button over Connect: not only the one-line message here, the server's
    task stops: its side effect, a line every 0.2 s, stops growing. (Whether the scope's
    ``interruptTag`` or the client's own release of the interrupted call stopped it, the
    job on the server is what counts.)"""
    ticks = tmp_path / "ticks.log"
    box = {}

    def interrupt_when_ticking():
        box["ticking"] = _wait_for(lambda: _lines(ticks) >= 3, timeout=90, step=0.1)
        os.kill(os.getpid(), signal.SIGINT)

    killer = threading.Thread(target=interrupt_when_ticking)
    killer.start()
    with pytest.raises(KeyboardInterrupt):
        with progress.cell_scope(spark_connect, "long", mode="none") as scope:
            spark_connect.range(0, 1, numPartitions=1).select(
                _ticking_udf(str(ticks), 120)("id")).collect()
    killer.join(5)
    assert box["ticking"], "the server's task never started"

    def settled():
        before = _lines(ticks)
        time.sleep(1.0)
        return _lines(ticks) == before
    assert _wait_for(settled, timeout=30, step=0), "the server's task still runs"
    stopped = _lines(ticks)
    time.sleep(3)
    assert _lines(ticks) == stopped, "the server's task started again"
    assert spark_connect.range(10).count() == 10  # the session still runs queries
