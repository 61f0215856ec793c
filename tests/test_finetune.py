"""Fine-tuning as a Spark barrier stage (sparkdl_magics.finetuning, %%finetune).

A tiny CNN (a user model file) is fine-tuned on the synthetic flower folder by 2 barrier
tasks in local mode, a local-cluster and Spark Connect. The workers' weight checksums,
recorded after every step, must be identical (the all-reduce really synchronises them)
and change from step to step; the loss must fall; the result must evaluate to the same
predictions as plain Keras on the saved file, and predict the same after save and load
in a fresh session.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from sparkdl_magics import evaluate, load_images, load_model, session
from sparkdl_magics.display.finetune import EpochView, epoch_line
from sparkdl_magics.errors import OptionError
from sparkdl_magics.finetuning.cluster import barrier_refusal, check_workers, tf_config
from sparkdl_magics.finetuning import finetune
from sparkdl_magics.results import FineTunedModel, FittedModel

SIZE = 32
FAST = dict(preprocess="unit", unfreeze="all", batch_size=4, learning_rate=0.01, seed=7,
            head_epochs=0)


@pytest.fixture(scope="module")
def tiny_cnn(tmp_path_factory) -> Path:
    """A small CNN classifier file (BatchNormalization included) at 32x32."""
    import keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="old_head")(x)
    path = tmp_path_factory.mktemp("tiny") / "tiny_cnn.keras"
    keras.Model(inputs, outputs).save(path)
    return path


def _images(spark, folder):
    return load_images(str(folder), split=0.75, seed=1, spark=spark)


def _assert_in_sync(model: FineTunedModel, workers: int, kind: str = "step") -> None:
    """Every worker recorded every step (or epoch) with identical weights, which moved."""
    sums = model.checksums
    steps = sums[sums["kind"] == kind]
    assert len(steps) > 0
    by_step = steps.groupby(["epoch", "step"] if kind == "step" else ["epoch"])
    assert (by_step["rank"].nunique() == workers).all()  # every worker recorded every step
    assert (by_step["checksum"].nunique() == 1).all()  # ...and held identical weights
    assert steps[steps["rank"] == 0]["checksum"].nunique() == len(by_step)  # they moved


def _keras_predictions(model: FineTunedModel, paths):
    """Class names from plain Keras on the saved file (independent of Spark)."""
    import keras

    from sparkdl_magics.imaging import decode_array
    net = keras.saving.load_model(model.model_file, compile=False)
    batch = np.stack([decode_array(Path(p.replace("file:", "")).read_bytes(),
                                   model.input_size) for p in paths]) / np.float32(255)
    return [model.classes[i] for i in net.predict(batch, verbose=0).argmax(axis=1)]


@pytest.mark.slow
def test_two_barrier_tasks_train_in_sync_and_the_result_evaluates_and_reloads(
        spark, image_folder, tiny_cnn, tmp_path):
    images = _images(spark, image_folder)
    seen = []
    model = finetune(images, model=str(tiny_cnn), epochs=3, workers=2, trace_steps=True,
                     on_epoch=seen.append, **FAST)
    assert isinstance(model, FineTunedModel) and isinstance(model, FittedModel)
    _assert_in_sync(model, 2)
    loss = model.history["loss"].tolist()
    # the loss falls below its first epoch's (the last epoch alone may bounce back up:
    # fine-tuning is not yet bit-reproducible, a CI run saw 1.11, 1.05, 1.17)
    assert len(loss) == 3 and min(loss[1:]) < loss[0]
    assert [r["epoch"] for r in seen] == [1, 2, 3]  # live, epoch by epoch
    assert model.train_count == images.split_sizes()["train"]

    ev = evaluate(model, top_errors=0)  # default data: the image set's test split
    rows = ev.predictions.select("path", "prediction_name").collect()
    assert ev.metrics["count"] == images.split_sizes()["test"] == len(rows)
    want = _keras_predictions(model, [r["path"] for r in rows])
    assert [r["prediction_name"] for r in rows] == want

    saved = model.save(str(tmp_path / "ft_model"))
    session.stop()  # a fresh session: nothing of the first one is left
    fresh = session.start_local("local[2]", conf={"spark.ui.enabled": "false"})
    loaded = load_model(saved, fresh)
    assert isinstance(loaded, FineTunedModel) and loaded.classes == model.classes
    again = _images(fresh, image_folder)
    got = loaded.predict(again).select("path", "prediction_name").collect()
    by_path = {r["path"]: r["prediction_name"] for r in rows}
    assert {r["path"]: r["prediction_name"] for r in got if r["path"] in by_path} == by_path
    assert loaded.history["loss"].tolist() == pytest.approx(loss)


@pytest.mark.slow
def test_one_worker_trains_with_validation_and_augmentation(spark, image_folder, tiny_cnn):
    images = _images(spark, image_folder)
    model = finetune(images, model=str(tiny_cnn), epochs=2, workers=1, validation=0.3,
                     augment="flip, rotate=10", head=[8], **FAST)
    assert model.workers == 1
    assert set(model.history.columns) >= {"loss", "val_loss", "val_accuracy"}
    assert model.history["val_accuracy"].between(0, 1).all()
    ev = evaluate(model, top_errors=0)
    assert ev.metrics["count"] == images.split_sizes()["test"]
    want = {r["path"]: r["prediction_name"] for r in ev.predictions.collect()}
    model.register_sql_function("classify_ft", spark=spark)
    images.test.createOrReplaceTempView("ft_test")
    got = spark.sql("SELECT path, classify_ft(content) AS label FROM ft_test").collect()
    assert {r["path"]: r["label"] for r in got} == want


def test_more_workers_than_task_slots_is_one_line_before_any_task_starts(
        spark, image_folder, tiny_cnn):
    images = _images(spark, image_folder)
    started = time.perf_counter()
    with pytest.raises(OptionError) as err:
        finetune(images, model=str(tiny_cnn), workers=3, **FAST)
    assert "3 workers need 3 free task slots" in str(err.value)
    assert "only 2 task slots" in str(err.value) and "\n" not in str(err.value)
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize("bad, says", [
    (dict(unfreeze=99), "option 'unfreeze': the backbone has 2 layers"),
    (dict(unfreeze="some"), "option 'unfreeze'"),
    (dict(head="wide"), "option 'head'"),
    (dict(learning_rate=0), "option 'learning_rate'"),
    (dict(validation=1.5), "option 'validation'"),
])
def test_bad_options_are_one_line(spark, image_folder, tiny_cnn, bad, says):
    images = _images(spark, image_folder)
    with pytest.raises(OptionError, match=says) as err:
        finetune(images, model=str(tiny_cnn), **{**FAST, **bad})
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_interrupt_cancels_the_barrier_stage_and_leaves_no_training_process(
        spark, image_folder, tiny_cnn):
    from sparkdl_magics import progress
    images = _images(spark, image_folder)
    box = {}

    def interrupt_after_first_epoch(record):
        if "sent" not in box:
            box["sent"] = time.monotonic()
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        with progress.cell_scope(spark, "finetune", mode="none"):
            finetune(images, model=str(tiny_cnn), epochs=200, workers=2,
                     on_epoch=interrupt_after_first_epoch, **FAST)
    assert time.monotonic() - box["sent"] < 30
    deadline = time.monotonic() + 30
    while _training_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _training_processes() == []
    assert spark.range(10).count() == 10  # the session is still usable


def _training_processes():
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"sparkdl_magics.finetuning.worker" in cmd:
                found.append(int(pid))
    return found


@pytest.mark.slow
def test_local_cluster_trains_in_sync(spark_cluster, image_folder, tiny_cnn):
    images = _images(spark_cluster, image_folder)
    model = finetune(images, model=str(tiny_cnn), epochs=2, workers=2, trace_steps=True,
                     **FAST)
    _assert_in_sync(model, 2)
    assert evaluate(model, top_errors=0).metrics["count"] == images.split_sizes()["test"]


@pytest.mark.slow
def test_connect_trains_in_sync_and_the_magic_stores_the_model(spark_connect, image_folder,
                                                              tiny_cnn, ip, capsys):
    ip.user_ns["flowers"] = _images(spark_connect, image_folder)
    ip.run_cell_magic("finetune", "flowers -> ft", f"model: {tiny_cnn}\npreprocess: unit\n"
                      "unfreeze: all\nepochs: 2\nworkers: 2\nbatch_size: 4\n"
                      "learning_rate: 0.01\nhead_epochs: 0")
    model = ip.user_ns["ft"]
    assert isinstance(model, FineTunedModel) and len(model.history) == 2
    _assert_in_sync(model, 2, kind="epoch")
    assert "epoch 2/2: loss" in capsys.readouterr().out  # the live epoch lines
    ip.run_line_magic("evaluate", "ft")
    assert "<h4>FineTunedModel" in model._repr_html_()
    ip.run_cell_magic("predict", "flowers -> preds", "model: ft\ntop_k: 2\nshow: 0")
    rows = ip.user_ns["preds"].df.select("path", "prediction").collect()
    want = {r["path"]: r["prediction_name"] for r in
            model.predict(ip.user_ns["flowers"]).select("path", "prediction_name").collect()}
    assert {r["path"]: r["prediction"] for r in rows} == want  # the model's class names


# --------------------------------------------------------------------------- same seed

@pytest.mark.slow
def test_same_seed_gives_the_same_weights_and_the_same_test_mistakes(spark, image_folder,
                                                                     tiny_cnn):
    """Two runs on 2 workers: equal weights checksums and predictions; the same images
    delivered in another order and partitioning train the same weights (which worker
    trains on which image does not depend on the order rows arrive in)."""
    from pyspark.sql import functions as F
    images = _images(spark, image_folder)
    runs = [finetune(images, model=str(tiny_cnn), epochs=2, workers=2, **FAST)
            for _ in range(2)]
    assert runs[0].checksum and runs[0].checksum == runs[1].checksum
    got = [{r["path"]: r["prediction_name"] for r in
            evaluate(m, top_errors=0).predictions.select("path", "prediction_name").collect()}
           for m in runs]
    assert got[0] == got[1]
    shuffled = images.train.repartition(3).orderBy(F.desc("path"))
    again = finetune(shuffled, model=str(tiny_cnn), epochs=2, workers=2, **FAST)
    assert again.checksum == runs[0].checksum


# --------------------------------------------------------------------------- LP-FT

@pytest.fixture
def probe(spark, image_folder, tiny_cnn):
    """The linear probe on the tiny CNN's features: featurize + logistic regression."""
    from sparkdl_magics import featurize, fit
    images = _images(spark, image_folder)
    features = featurize(images, model=str(tiny_cnn), preprocess="unit")
    return images, fit(features, maxIter=50, regParam=0.01)


def _predictions(model, images):
    return {r["path"]: r["prediction_name"] for r in
            model.predict(images.test).select("path", "prediction_name").collect()}


@pytest.mark.slow
def test_a_fitted_head_is_epoch_0_and_kept_when_fine_tuning_only_hurts(probe, tiny_cnn):
    """head: clf starts from the regression (the network predicts what it does); a
    backbone learning rate that wrecks the features makes every later epoch worse on
    validation, so epoch 0, the probe itself, is what the result holds."""
    images, clf = probe
    model = finetune(images, model=str(tiny_cnn), head=clf, epochs=2, workers=2,
                     **{**FAST, "learning_rate": [0.01, 5.0], "head_epochs": "auto"})
    assert model.history["epoch"].iloc[0] == 0 and model.best_epoch == 0
    assert model.params["head"] == "fitted model" and model.warmup is None
    assert _predictions(model, images) == _predictions(clf, images)


@pytest.mark.slow
def test_the_automatic_warm_up_of_a_linear_head_is_the_converged_regression(
        spark, image_folder, tiny_cnn):
    """head_epochs: auto with the default linear head: epoch 0 is a logistic regression
    fitted on every worker's frozen features (the train split, validation included) at
    the L2 strength chosen on validation: the same probabilities as scikit-learn's fit of
    the plain-Keras features of those images. Epoch 1 runs at a learning rate too small to
    move the validation loss, so epoch 0 is kept (an epoch must improve it to replace
    the kept one); a rate that wrecks the network does not ensure that: on a 5-image
    validation split (seeded by path, so by the temporary folder) a wrecked network
    predicting one class once beat the regression."""
    import keras
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from sparkdl_magics.imaging import decode_array
    images = _images(spark, image_folder)
    model = finetune(images, model=str(tiny_cnn), epochs=1, workers=2,
                     **{**FAST, "learning_rate": [1e-9, 1e-9], "head_epochs": "auto"})
    assert model.best_epoch == 0 and model.params["validation"] == 0.2
    assert model.params["head"] == "logistic regression on the frozen features"
    c = float(model.warmup["probe_C"].iloc[0])
    assert model.warmup["train"].iloc[0] < images.train.count()  # validation held out
    rows = images.train.select("content", "label").collect()
    x = np.stack([decode_array(r["content"], (SIZE, SIZE)) for r in rows]) / 255.0
    y = np.array([int(r["label"]) for r in rows])
    backbone = keras.models.load_model(tiny_cnn)
    feats = np.asarray(keras.Model(backbone.inputs, backbone.get_layer("pool").output)(x))
    scaler = StandardScaler().fit(feats)
    ours = LogisticRegression(C=c, max_iter=2000, tol=1e-6).fit(scaler.transform(feats), y)
    tuned = keras.models.load_model(model.model_file)
    np.testing.assert_allclose(np.asarray(tuned(x)), ours.predict_proba(scaler.transform(feats)),
                               atol=2e-3)


@pytest.mark.slow
def test_a_hidden_layer_head_warms_up_by_epochs_until_validation_stops_improving(
        spark, image_folder, tiny_cnn):
    images = _images(spark, image_folder)
    model = finetune(images, model=str(tiny_cnn), epochs=2, workers=2, head=[8],
                     **{**FAST, "learning_rate": [0.01, 5.0], "head_epochs": "auto"})
    warm = model.warmup
    assert warm is not None and 1 <= len(warm) < 100  # stopped by the criterion
    best = warm["val_loss"].min()
    # stopped FINETUNE_HEAD_PATIENCE epochs after its best (or at the cap)
    assert len(warm) - int(warm["val_loss"].idxmin()) - 1 == 5
    # epoch 0 is the warmed-up head (its best epoch); the kept epoch is the best of all,
    # epoch 0 included. Which one that is depends on the validation split (seeded by path,
    # so on the temporary folder): a wrecked network predicting the class priors can beat
    # a barely-learnt hidden-layer head on 5 images. The linear-head tests above show
    # epoch 0 kept where the probe is clearly better.
    history = model.history
    assert history["val_loss"].iloc[0] == pytest.approx(best, rel=1e-4)
    assert model.best_epoch == int(history.loc[history["val_loss"].idxmin(), "epoch"])
    sums = model.checksums
    kept = sums[(sums["kind"] == "epoch") & (sums["epoch"] == model.best_epoch)]
    assert set(kept["checksum"]) == {model.checksum}  # the result holds that epoch's weights
    assert model.params["validation"] == 0.2


def test_a_head_from_another_backbone_or_a_non_regression_is_one_line(probe, tmp_path):
    import keras

    from sparkdl_magics import fit
    images, clf = probe
    other = tmp_path / "other.keras"
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x)).save(other)
    with pytest.raises(OptionError, match="option 'head': the fitted model's features came "
                                          "from") as err:
        finetune(images, model=str(other), head=clf, **FAST)
    assert "\n" not in str(err.value)
    forest = fit(clf.features, classifier="random_forest", numTrees=3)
    with pytest.raises(OptionError, match="must be a logistic regression"):
        finetune(images, model=str(other), head=forest, **FAST)


@pytest.mark.slow
def test_batchnorm_adapt_sets_the_statistics_from_the_training_images(spark, image_folder,
                                                                      tiny_cnn):
    import keras
    images = _images(spark, image_folder)
    model = finetune(images, model=str(tiny_cnn), epochs=1, workers=2, batchnorm="adapt",
                     **{**FAST, "learning_rate": 1e-7})
    net = keras.saving.load_model(model.model_file, compile=False)
    bn = next(lay for lay in net.layers if isinstance(lay, keras.Model)).get_layer("bn1")
    before = keras.saving.load_model(str(tiny_cnn), compile=False).get_layer("bn1")
    assert np.allclose(before.moving_mean.numpy(), 0) and not np.allclose(bn.moving_mean.numpy(), 0)
    assert not np.allclose(bn.moving_variance.numpy(), 1) and model.params["batchnorm"] == "adapt"


# --------------------------------------------------------------------------- no Spark

def test_tf_config_names_every_worker_in_partition_order():
    config = tf_config(["h1:1000", "h2:2000"], 1)
    assert config == {"cluster": {"worker": ["h1:1000", "h2:2000"]},
                      "task": {"type": "worker", "index": 1}}


def test_workers_default_to_the_slots_and_more_is_one_line():
    assert check_workers(None, 4) == 4 and check_workers("auto", 3) == 3
    assert check_workers(2, 2) == 2
    with pytest.raises(OptionError, match="5 workers need 5 free task slots.*only 4"):
        check_workers(5, 4)
    with pytest.raises(OptionError, match="at least 1"):
        check_workers(0, 4)


def test_sparks_own_barrier_refusals_become_one_line():
    spark_says = ("[SPARK-24819]: Barrier execution mode does not allow run a barrier stage "
                  "that requires more slots than the total number of slots in the cluster "
                  "currently. Please init a new cluster with more resources")
    assert "3 workers need 3 free task slots" in barrier_refusal(Exception(spark_says), 3)
    dynamic = ("[SPARK-24942]: Barrier execution mode does not support dynamic resource "
               "allocation for now.")
    assert "dynamicAllocation" in barrier_refusal(Exception(dynamic), 2)
    assert barrier_refusal(Exception("some other failure"), 2) is None


def test_epoch_view_prints_one_line_per_epoch(capsys):
    view = EpochView("text", epochs=3)
    record = {"epoch": 1, "loss": 0.5, "accuracy": 0.75, "val_loss": 0.6,
              "val_accuracy": 0.5, "seconds": 2.0, "images_per_s_per_worker": 10.0}
    view(record)
    out = capsys.readouterr().out
    assert out.strip() == "sparkdl_magics: " + epoch_line(record, 3)
    assert "epoch 1/3: loss 0.5000 accuracy 0.7500 | val_loss 0.6000" in out


@pytest.mark.parametrize("classes, present", [(2, [0, 1]), (4, [0, 1, 3])])
def test_the_linear_probe_head_predicts_what_the_regression_does(classes, present):
    """The fitted regression folded into one softmax layer on unstandardised features:
    binary and multinomial, a class the images lack given (almost) no probability."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from sparkdl_magics.finetuning.linear_probe import fit_linear_probe
    rng = np.random.default_rng(3)
    y = rng.choice(present, 120)
    x = rng.normal(size=(120, 6)) * [1, 10, 0.01, 5, 1, 1] + [0, 50, 1, -3, 0, 7]
    x[:, 0] += 2.0 * y  # informative
    fitted = fit_linear_probe(x[:90], y[:90], x[90:], y[90:], classes, seed=0)
    logits = x @ fitted["kernel"] + fitted["bias"]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    scaler = StandardScaler().fit(x)
    sk = LogisticRegression(C=fitted["C"], max_iter=2000, tol=1e-6).fit(scaler.transform(x), y)
    np.testing.assert_allclose(probs[:, present], sk.predict_proba(scaler.transform(x)),
                               atol=1e-6)
    absent = sorted(set(range(classes)) - set(present))
    assert absent == [] or probs[:, absent].max() < 1e-9
    assert fitted["C"] in (0.01, 0.1, 1.0, 10.0, 100.0) and fitted["val_loss"] > 0
