"""MLflow tracking (sparkdl_magics.tracking) against a real MLflow server on 127.0.0.1.

The server is ``mlflow server`` with a SQLite store and a local artifact folder, started
by the tests and stopped at the end (also when they fail). Runs are read back with
``MlflowClient``; the logged Spark model is loaded with ``mlflow.spark.load_model`` and
must predict what the fitted model predicts. Without a tracking URI nothing is logged and
no file appears in the working folder. The exported network, logged as an MLflow pyfunc
model, is loaded in a fresh process that never imports Spark (nor this package) and must
give the Spark pipeline's probabilities on encoded image files.
"""
from __future__ import annotations

import atexit
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import blobs, local_path, small_cnn_file

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    from mlflow_server import MlflowServer
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    atexit.register(server.stop)  # a run that dies still stops it
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def tracked(mlflow_server, monkeypatch):
    """The tracking URI set the way users set it (the environment), for one test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "sparkdl-tests")
    return mlflow_server


def test_importing_the_extension_never_imports_mlflow():
    code = ("import sys, sparkdl_magics, sparkdl_magics.magics, sparkdl_magics.training, "
            "sparkdl_magics.evaluation, sparkdl_magics.tracking, sparkdl_magics.finetuning; "
            "from sparkdl_magics import tracking; assert not tracking.active(); "
            "assert 'mlflow' not in sys.modules, 'mlflow imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in __import__("os").environ.items()
                               if k != "MLFLOW_TRACKING_URI"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_without_a_tracking_uri_nothing_is_logged_and_no_file_appears(
        spark, tmp_path, monkeypatch):
    from sparkdl_magics import evaluate, fit
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None)
    monkeypatch.chdir(tmp_path)
    model = fit(blobs(spark, n_train=8, n_test=3), maxIter=5)
    evaluation = evaluate(model)
    assert model.run_id is None and evaluation.run_id is None
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_track_false_wins_over_a_configured_uri(
        spark, monkeypatch):
    """track: false wins over a configured URI (nothing logged, no server needed)."""
    from sparkdl_magics import fit
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens
    model = fit(blobs(spark, n_train=8, n_test=3), maxIter=5, track=False)
    assert model.run_id is None


def test_fit_grid_and_evaluation_are_logged_and_read_back(spark, tracked):
    from mlflow.tracking import MlflowClient
    from sparkdl_magics import evaluate, fit
    from sparkdl_magics.tracking import run_line
    features = blobs(spark, n_train=12, n_test=5)
    model = fit(features, regParam=[0.01, 1.0], maxIter=10, folds=2, seed=3)
    evaluation = evaluate(model)
    assert model.run_id and evaluation.run_id == model.run_id
    client = MlflowClient(tracked.url)
    run = client.get_run(model.run_id)
    print("\nparams:", dict(sorted(run.data.params.items())))
    print("metrics:", dict(sorted(run.data.metrics.items())))
    artifacts = sorted(a.path for a in client.list_artifacts(model.run_id))
    print("artifacts:", artifacts)
    assert run.data.params["classifier"] == "logistic_regression"
    assert run.data.params["classifier.maxIter"] == "10"
    assert float(run.data.params["classifier.regParam"]) == model.params["regParam"]
    assert run.data.params["images.classes"] == '["daisy", "roses", "tulips"]'
    for key in ("accuracy", "f1", "precision", "recall", "log_loss"):
        assert run.data.metrics[key] == pytest.approx(evaluation.metrics[key])
    f1 = dict(zip(evaluation.per_class["class"], evaluation.per_class["f1"]))
    assert run.data.metrics["f1_daisy"] == pytest.approx(f1["daisy"])
    assert "spark_model" in artifacts and "confusion_matrix.csv" in artifacts
    confusion = client.download_artifacts(model.run_id, "confusion_matrix.csv")
    assert open(confusion).read() == evaluation.confusion.to_csv()
    # one nested run per grid point, with its cross-validation score; the best is marked
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{model.run_id}'")
    assert len(children) == 2
    by_reg = {float(c.data.params["regParam"]): c for c in children}
    for _, row in model.grid.iterrows():
        child = by_reg[float(row["regParam"])]
        assert child.data.metrics["cv_f1"] == pytest.approx(row["f1"])
        assert child.data.tags["chosen"] == str(bool(row["chosen"])).lower()
    line = run_line(model.run_id)
    assert "sparkdl-tests" in line and model.run_id in line and tracked.url in line
    # the logged Spark model predicts what the fitted model predicts
    import mlflow.spark
    loaded = mlflow.spark.load_model(f"runs:/{model.run_id}/spark_model")
    ours = [r["prediction_name"] for r in model.transform(features.test)
            .orderBy("path").collect()]
    theirs = [r["prediction_name"] for r in loaded.transform(features.test)
              .orderBy("path").collect()]
    assert ours == theirs and len(ours) == 15


def test_magic_option_and_switch_override_the_uri(spark, tracked, ip, capsys):
    from sparkdl_magics import tracking
    ip.user_ns["feats"] = blobs(spark, n_train=8, n_test=3)
    ip.run_cell_magic("fit", "feats -> clf", "maxIter: 5\ntrack: false")
    assert ip.user_ns["clf"].run_id is None
    try:
        tracking.TRACK = False
        ip.run_cell_magic("fit", "feats -> clf2", "maxIter: 5")
        assert ip.user_ns["clf2"].run_id is None
        ip.run_cell_magic("fit", "feats -> clf3", "maxIter: 5\ntrack: true")
        assert ip.user_ns["clf3"].run_id
    finally:
        tracking.TRACK = None
    out = capsys.readouterr().out
    assert f"run {ip.user_ns['clf3'].run_id}" in out
    assert out.count("MLflow: experiment") == 1
    assert "View run" not in out  # MLflow's own two lines are not added to ours


def test_logged_network_predicts_spark_probabilities_from_image_bytes_without_spark(
        spark, tracked, image_folder, tmp_path):
    """A fit on real images (a small CNN file as the backbone) logs ``keras_model``; a
    new process loads it with ``mlflow.pyfunc.load_model`` and predicts on a pandas
    frame of the test images' file bytes: Spark's probabilities within 1e-5."""
    from mlflow.tracking import MlflowClient
    from sparkdl_magics import featurize, fit, load_images
    backbone = small_cnn_file(tmp_path / "backbone.keras")
    images = load_images(str(image_folder), split=0.75, seed=1, spark=spark)
    model = fit(featurize(images, model=str(backbone), preprocess="caffe"), maxIter=30,
                regParam=0.01, seed=5)
    assert model.run_id
    spark_out = {local_path(r["path"]): r["probability"].toArray().tolist()
                 for r in model.transform(images.test).select("path", "probability")
                 .collect()}
    uri = f"runs:/{model.run_id}/keras_model"
    info = mlflow.models.get_model_info(uri)
    assert [c.name for c in info.signature.inputs.inputs] == ["image"]
    assert [c.name for c in info.signature.outputs.inputs] == list(model.classes)
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"uri": uri, "images": list(spark_out)}))
    script = textwrap.dedent("""
        import importlib.abc, json, sys
        from pathlib import Path

        class NotInstalled(importlib.abc.MetaPathFinder):
            \"\"\"As where the model is served: no Spark, no sparkdl_magics (MLflow
            itself imports pyspark where it is installed, only to probe for it).\"\"\"
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("pyspark", "py4j", "sparkdl_magics"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, NotInstalled())
        import mlflow.pyfunc, pandas as pd
        job = json.loads(Path(sys.argv[1]).read_text())
        frame = pd.DataFrame({"image": [Path(p).read_bytes() for p in job["images"]]})
        out = mlflow.pyfunc.load_model(job["uri"]).predict(frame)
        assert not [m for m in sys.modules
                    if m.split(".")[0] in ("pyspark", "py4j", "sparkdl_magics")]
        print(json.dumps({"columns": list(out.columns), "values": out.values.tolist()}))
    """)
    done = subprocess.run([sys.executable, "-c", script, str(request)], capture_output=True,
                          text=True, timeout=600, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["columns"] == list(model.classes)
    ours = np.array(result["values"])
    theirs = np.array(list(spark_out.values()))
    assert ours.shape == theirs.shape == (len(spark_out), len(model.classes))
    assert len(spark_out) >= 6
    diff = float(np.abs(ours - theirs).max())
    print(f"\npyfunc keras_model vs Spark: max abs probability difference {diff:.3g}")
    assert diff <= 1e-5
    artifacts = sorted(a.path for a in MlflowClient(tracked.url).list_artifacts(model.run_id))
    print("artifacts:", artifacts)


@pytest.mark.slow
def test_finetune_logs_each_epoch_as_a_metric_step(spark, tracked, image_folder, tmp_path):
    """Per-epoch loss and validation metrics read back as metric steps (the epoch), the
    options as params, the trained file and the network as a pyfunc model."""
    from mlflow.tracking import MlflowClient
    from sparkdl_magics import load_images
    from sparkdl_magics.finetuning import finetune
    backbone = small_cnn_file(tmp_path / "backbone.keras")
    images = load_images(str(image_folder), split=0.75, seed=1, spark=spark)
    model = finetune(images, model=str(backbone), epochs=2, workers=1, validation=0.3,
                     preprocess="unit", unfreeze="all", batch_size=8, head_epochs=0,
                     seed=7, spark=spark)
    assert model.run_id
    client = MlflowClient(tracked.url)
    history = model.history.reset_index(drop=True)
    assert len(history) >= 2
    for key in ("loss", "val_loss", "val_accuracy"):
        known = history[history[key].notna()]  # epoch 0 (before training): no loss
        logged = sorted(client.get_metric_history(model.run_id, key), key=lambda m: m.step)
        assert len(known) >= 2 and [m.step for m in logged] == known["epoch"].tolist(), key
        assert [m.value for m in logged] == pytest.approx(known[key].tolist()), key
    run = client.get_run(model.run_id)
    print("\nfinetune params:", dict(sorted(run.data.params.items())))
    assert run.data.params["epochs"] == "2"  # trained; epoch 0 is the start
    assert "epoch" not in run.data.metrics  # the step, not a metric
    assert run.data.params["unfreeze"] == str(model.unfreeze)
    assert run.data.tags["sparkdl_magics.stage"] == "finetune"
    assert [a.path for a in client.list_artifacts(model.run_id, "finetuned")]
    info = mlflow.models.get_model_info(f"runs:/{model.run_id}/keras_model")
    assert [c.name for c in info.signature.outputs.inputs] == list(model.classes)


@pytest.mark.parametrize("spark_connect", ["connect"], indirect=True)
def test_a_fit_over_spark_connect_is_logged_and_says_why_no_spark_model(
        spark_connect, tracked, image_folder, tmp_path):
    """Over Spark Connect the run holds the parameters, the evaluation's metrics and the
    exported network (a pyfunc model); MLflow's Spark flavour needs a classic session,
    so the run says so in one tag instead of a Spark model."""
    from mlflow.tracking import MlflowClient
    from sparkdl_magics import evaluate, featurize, fit, load_images
    backbone = small_cnn_file(tmp_path / "backbone.keras")
    images = load_images(str(image_folder), split=0.75, seed=1, spark=spark_connect)
    model = fit(featurize(images, model=str(backbone), preprocess="caffe"), maxIter=20,
                regParam=0.01, seed=5)
    evaluation = evaluate(model)
    assert model.run_id and evaluation.run_id == model.run_id
    run = MlflowClient(tracked.url).get_run(model.run_id)
    assert run.data.params["classifier"] == "logistic_regression"
    assert run.data.metrics["accuracy"] == pytest.approx(evaluation.metrics["accuracy"])
    assert "classic" in run.data.tags["spark_model"] and "\n" not in run.data.tags["spark_model"]
    artifacts = [a.path for a in MlflowClient(tracked.url).list_artifacts(model.run_id)]
    assert "spark_model" not in artifacts
    info = mlflow.models.get_model_info(f"runs:/{model.run_id}/keras_model")
    assert [c.name for c in info.signature.outputs.inputs] == list(model.classes)
