"""The widget app driven headlessly against real local Spark: set values, click Run,
wait, and check the results, the tabs and the progress widget's final state."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("ipywidgets")

SMALL = "MobileNetV3Small"  # cheap; weights 'none' needs no download


def _app(image_folder, spark):
    from sparkdl_magics import App
    app = App(spark=spark)
    app.path.value = str(image_folder)
    app.label_mode.value = "folders"
    app.sample.value = 1.0
    app.split.value = 0.75
    app.seed.value = 7
    app.model.value = SMALL
    app.weights.value = "none"
    app.classifier.value = "logistic_regression"
    app.params["maxIter"].value = 5
    return app


def test_app_runs_the_pipeline_and_shows_every_result(spark, image_folder):
    app = _app(image_folder, spark)
    assert SMALL in app.model.options and "InceptionV3" in app.model.options  # the registry
    app.run_button.click()
    assert app.cancel_button.disabled is False
    assert app.wait(timeout=240), "the app did not finish"
    assert app.status == "done", app.error

    images, model, ev = app.results["images"], app.results["model"], app.results["evaluation"]
    assert sorted(images.classes) == ["daisy", "roses", "tulips"]
    assert 0.0 <= ev.metrics["accuracy"] <= 1.0
    assert ev.confusion.values.sum() == images.test.count()
    assert [s["step"] for s in app.steps] == ["load", "featurize", "fit", "evaluate"]
    assert all(s["status"] == "done" for s in app.steps)
    # the progress widget's final state is the last step's Spark progress
    last = app.steps[-1]["progress"]
    assert last["status"] == "done" and last["tasks_total"] > 0
    assert last["tasks_done"] == last["tasks_total"]
    assert app.progress_view.bar.value == app.progress_view.bar.max == last["tasks_total"]
    assert app.progress_view.bar.bar_style == "success"
    featurize_progress = app.steps[1]["progress"]
    assert featurize_progress["tasks_done"] == featurize_progress["tasks_total"] > 0
    # every tab has content; the buttons are back
    for name in ("Preview", "Metrics", "Confusion matrix", "Misclassified", "Model", "Code"):
        assert app.outputs[name].outputs, name
    metrics_tab = app.outputs["Metrics"].outputs[0]["data"]["text/html"]
    assert "accuracy" in metrics_tab
    assert f">{ev.metrics['count']}<" in metrics_tab and f"{ev.metrics['count']}.0000" not in metrics_tab
    assert "white-space:pre" in app.outputs["Code"].outputs[0]["data"]["text/html"]
    assert app.run_button.disabled is False and app.cancel_button.disabled is True
    assert "done" in app.status_html.value


def test_app_shows_the_equivalent_code(tmp_path):
    from sparkdl_magics import App
    app = App(path=str(tmp_path), model="ResNet50")
    app.sample.value = 0.5
    app.classifier.value = "random_forest"
    app.params["numTrees"].value = 30
    code = app.code()
    assert f"images = load_images({str(tmp_path)!r}, labels='folders', sample=0.5" in code
    assert "featurize(images, model='ResNet50', weights='auto')" in code
    assert "fit(features, classifier='random_forest', numTrees=30, maxDepth=5)" in code
    cells = app.magic_cells()
    assert cells[0].startswith("%%dlload images\npath: ") and "sample: 0.5" in cells[0]
    assert cells[2] == "%%fit features -> model\nclassifier: random_forest\nnumTrees: 30\nmaxDepth: 5\n"
    # the code compiles
    compile(code, "<app>", "exec")


def test_app_code_tab_scrolls_instead_of_wrapping(tmp_path):
    from sparkdl_magics import App
    app = App(path=str(tmp_path))
    app.view.start(app.code(), app.magic_cells())  # what Run shows first
    shown = app.outputs["Code"].outputs[0]["data"]["text/html"]
    assert shown.count("<pre style='white-space:pre;overflow-x:auto'>") == 2
    assert "<pre>" not in shown


def test_app_weights_default_is_offline_safe(tmp_path):
    from sparkdl_magics import App, defaults
    app = App(path=str(tmp_path))
    assert app.model.value == defaults.MODEL
    assert app.weights.value == defaults.WEIGHTS_OFFLINE_SAFE == "auto"  # 'imagenet' fails offline
    assert app.options()["featurize"] == {"model": defaults.MODEL, "weights": "auto"}
    app.weights.value = " "
    assert app.options()["featurize"]["weights"] == "auto"


def test_app_progress_bar_is_idle_before_a_run():
    from sparkdl_magics import App
    app = App()
    stats = app.progress_view.stats.value
    assert "starting" not in stats and stats == "idle"  # nothing runs yet
    assert app.status == "ready" and app.progress_view.bar.value == 0


def _evaluation():
    import pandas as pd
    from sparkdl_magics.results import Evaluation
    classes = ["daisy", "roses"]
    confusion = pd.DataFrame([[9, 1], [2, 8]], index=pd.Index(classes, name="true"),
                             columns=pd.Index(classes, name="predicted"))
    per_class = pd.DataFrame({"class": classes, "precision": [0.8181818, 0.8888889],
                              "recall": [0.9, 0.8], "f1": [0.8571429, 0.8421053],
                              "support": [10, 10]})
    metrics = {"accuracy": 0.85, "f1": 0.8496241, "precision": 0.8535354,
               "recall": 0.85, "count": 20}
    return Evaluation(metrics=metrics, per_class=per_class, confusion=confusion,
                      predictions=None, classes=classes)


def test_app_metrics_tab_shows_evaluates_tables():
    """Metrics as %%evaluate shows them: the count an integer, no pandas index column."""
    from sparkdl_magics import App
    from sparkdl_magics.display.html import frame_html, kv_table
    app = App()
    ev = _evaluation()
    app.view.show_result("evaluate", ev)
    tab = app.outputs["Metrics"].outputs[0]["data"]["text/html"]
    assert ">20<" in tab and "20.0000" not in tab
    assert kv_table(ev.metrics) in tab and frame_html(ev.per_class) in tab
    assert "<th>0</th>" not in tab and "<th></th>" not in tab  # no index column
    assert ">0.8182<" in tab  # the per-class table's 4 decimals
    assert app.outputs["Confusion matrix"].outputs and app.outputs["Misclassified"].outputs


def test_app_cancel_stops_the_running_step(spark, image_folder, monkeypatch):
    """Cancel during a long step: its Spark jobs stop within seconds; the session works."""
    import sparkdl_magics.featurizer as featurizer
    from pyspark.sql import functions as F

    @F.udf("long")
    def sleepy(x):
        import time as _t
        _t.sleep(120)
        return x

    def slow_featurize(images, **kwargs):  # a long Spark job in place of the CNN
        images.df.select(sleepy(F.lit(1))).collect()

    monkeypatch.setattr(featurizer, "featurize", slow_featurize)
    app = _app(image_folder, spark)
    app.run()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        scope = app._scope
        if scope is not None and scope.label == "app-featurize" and scope.snapshot().tasks_active:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"featurize never started: {app.steps} {app.error!r}")
    started = time.monotonic()
    app.cancel_button.click()
    assert app.wait(timeout=30)
    assert time.monotonic() - started < 15
    assert app.status == "cancelled"
    assert [s["status"] for s in app.steps] == ["done", "cancelled"]
    assert "model" not in app.results
    assert app.progress_view.bar.bar_style == "warning"
    assert spark.range(10).count() == 10


def test_dlapp_magic_returns_and_stores_the_app(ip):
    from sparkdl_magics.app import App
    app = ip.run_line_magic("dlapp", "myapp --path data/x --classifier random_forest")
    assert isinstance(app, App) and ip.user_ns["myapp"] is app
    assert app.path.value == "data/x" and app.classifier.value == "random_forest"
