"""Multi-label as a task: label sets from a table, one binary
classifier per label, metrics equal to scikit-learn's on the product's own predictions,
save/load, the magics and the display."""
from __future__ import annotations

import numpy as np
import pytest

from sparkdl_magics.errors import OptionError
from sparkdl_magics.results import FeatureSet, MultiLabelEvaluation, MultiLabelModel

LABELS = ["Cardiomegaly", "Effusion", "Nodule"]


def label_set_features(spark, n_train=90, n_test=60, seed=0):
    """A FeatureSet with label sets: each label moves two feature dimensions, noisy
    enough that the classifiers make mistakes (so every metric is non-trivial)."""
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.types import ArrayType, StringType, StructField, StructType
    rng = np.random.default_rng(seed)

    def frame(n, split):
        rows = []
        for j in range(n):
            y = rng.random(len(LABELS)) < [0.5, 0.35, 0.25]
            x = rng.normal(0, 1.0, 8)
            for i, on in enumerate(y):
                x[2 * i:2 * i + 2] += 1.3 * on
            labels = [c for c, on in zip(LABELS, y) if on]
            rows.append((f"file:/img/{split}{j:03d}.png", labels, "|".join(labels),
                         Vectors.dense(x.tolist())))
        return spark.createDataFrame(rows, StructType([
            StructField("path", StringType()), StructField("labels", ArrayType(StringType())),
            StructField("label_name", StringType()), StructField("features", VectorUDT())]))
    return FeatureSet(train=frame(n_train, "train"), test=frame(n_test, "test"),
                      classes=list(LABELS), model_name="synthetic")


def test_fit_one_classifier_per_label_and_metrics_equal_sklearn(spark, tmp_path):
    from sklearn.metrics import (accuracy_score, average_precision_score, f1_score,
                                 hamming_loss, roc_auc_score)

    from sparkdl_magics import evaluate, fit
    fs = label_set_features(spark)
    model = fit(fs, maxIter=50)
    assert isinstance(model, MultiLabelModel) and model.classes == LABELS
    assert len(model.pipeline_model.stages) == len(LABELS) and not model.has_featurizer

    ev = evaluate(model)
    assert isinstance(ev, MultiLabelEvaluation)
    rows = ev.predictions.select("labels", "label_probabilities", "predicted_labels") \
        .collect()
    y = np.array([[c in r["labels"] for c in LABELS] for r in rows], dtype=int)
    p = np.array([r["label_probabilities"] for r in rows])
    pred = np.array([[c in r["predicted_labels"] for c in LABELS] for r in rows], dtype=int)
    assert (pred == (p >= 0.5)).all() and len(rows) == ev.metrics["count"] == 60

    per = ev.per_label.set_index("label")
    for i, c in enumerate(LABELS):
        assert per.loc[c, "roc_auc"] == pytest.approx(roc_auc_score(y[:, i], p[:, i]), abs=1e-12)
        assert per.loc[c, "average_precision"] == pytest.approx(
            average_precision_score(y[:, i], p[:, i]), abs=1e-12)
        assert per.loc[c, "f1"] == pytest.approx(f1_score(y[:, i], pred[:, i]), abs=1e-12)
        assert per.loc[c, "support"] == y[:, i].sum()
    m = ev.metrics
    assert m["roc_auc_macro"] == pytest.approx(roc_auc_score(y, p, average="macro"), abs=1e-12)
    assert m["average_precision_macro"] == pytest.approx(
        average_precision_score(y, p, average="macro"), abs=1e-12)
    assert m["f1_micro"] == pytest.approx(f1_score(y, pred, average="micro"), abs=1e-12)
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y, pred), abs=1e-12)
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert 0 < m["hamming_loss"] < 0.5 and m["roc_auc_macro"] > 0.7  # learnt, not perfect

    # the images with the most wrong labels, worst first
    wrong = (pred != y).sum(axis=1)
    assert list(ev.errors["wrong_labels"]) == sorted(wrong[wrong > 0], reverse=True)[:12]

    # another threshold: the same probabilities, other label sets
    strict = evaluate(model, threshold=0.8)
    pred8 = (p >= 0.8).astype(int)
    assert strict.metrics["f1_micro"] == pytest.approx(f1_score(y, pred8, average="micro"))
    assert strict.metrics["roc_auc_macro"] == pytest.approx(m["roc_auc_macro"])

    # saved and loaded: the same probabilities
    model.save(str(tmp_path / "ml"))
    back = MultiLabelModel.load(str(tmp_path / "ml"))
    assert isinstance(back, MultiLabelModel) and back.classes == LABELS
    again = back.transform(fs.test).select("label_probabilities").collect()
    assert np.allclose([r[0] for r in again], p)

    html = ev._repr_html_() + model._repr_html_()
    assert "Images with the most wrong labels" in html and "roc_auc" in html


def test_label_not_always_present_notes_and_option_errors(spark):
    from sparkdl_magics import evaluate, fit
    fs = label_set_features(spark, n_train=40, n_test=20)
    with pytest.raises(OptionError, match=r"option 'classifier'.*valid: logistic_regression"):
        fit(fs, classifier="random_forest")
    with pytest.raises(OptionError, match=r"grids .* not supported for a multi-label fit"):
        fit(fs, regParam=[0.1, 0.01])
    with pytest.raises(OptionError, match=r"option 'threshold'"):
        fit(fs, threshold=1.5)
    from pyspark.sql import functions as F
    never = FeatureSet(train=fs.train.withColumn("labels", F.array_remove("labels", "Nodule")),
                       test=fs.test, classes=list(LABELS))
    model = fit(never, maxIter=5)
    assert any("'Nodule' is never present" in n for n in model.notes)
    with pytest.raises(OptionError, match=r"option 'threshold'"):
        evaluate(model, threshold=0)


def label_set_images(folder, n=40, seed=1):
    """Images with coloured bars and an NIH-style table naming the colours they show."""
    from imagegen import encode
    from PIL import Image
    rng = np.random.default_rng(seed)
    colours = {"Red": (220, 30, 30), "Green": (30, 200, 30), "Blue": (30, 30, 220)}
    root = folder / "images"
    root.mkdir(parents=True)
    lines = ["Image Index,Finding Labels"]
    for j in range(n):
        pixels = np.full((32, 32, 3), 128, dtype=np.uint8)
        present = [c for c in colours if rng.random() < 0.45]
        for k, c in enumerate(present):
            pixels[2 + 10 * k:10 + 10 * k, 4:28] = colours[c]
        (root / f"{j:05d}_000.png").write_bytes(encode(Image.fromarray(pixels), "PNG"))
        lines.append(f"{j:05d}_000.png,{'|'.join(present) or 'No Finding'}")
    (folder / "Data_Entry.csv").write_text("\n".join(lines) + "\n")
    return root, folder / "Data_Entry.csv"


def write_tiny_model(path, features):
    """A tiny seeded Keras CNN saved at *path*: *features* pooled outputs."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    tiny = keras.Sequential([keras.Input((32, 32, 3)),
                             keras.layers.Conv2D(8, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(features)])
    tiny.save(path)


def test_nih_table_to_label_sets_featurize_fit_evaluate_magics(ip, spark, tmp_path):
    """Label sets from an NIH-style table, through the magics, with a tiny Keras model
    written by the test (no download)."""
    root, _ = label_set_images(tmp_path, n=48)
    write_tiny_model(tmp_path / "tiny.keras", features=2)

    ip.run_cell(f"%%dlload xr\npath: {root}\nlabels: {tmp_path / 'Data_Entry.csv'}\n"
                "id_column: Image Index\nlabel_column: Finding Labels\nlabel_separator: '|'\n"
                "multi_label: keep\nempty_label: No Finding\nsplit: 0.6\nseed: 3\n")
    images = ip.user_ns["xr"]
    assert images.classes == ["Blue", "Green", "Red"]
    assert sum(images.split_sizes().values()) == images.num_images == 48
    ip.run_cell(f"%%featurize xr -> xr_features\nmodel: {tmp_path / 'tiny.keras'}\n"
                "preprocess: unit\nbatch_size: 16\n")
    model = ip.run_cell("%%fit xr_features -> xr_model\nmaxIter: 100\nthreshold: 0.5\n").result
    assert isinstance(model, MultiLabelModel), model
    ev = ip.run_cell("%%evaluate xr_model -> xr_eval\ntop_errors: 4\n").result
    assert isinstance(ev, MultiLabelEvaluation), ev
    assert ev.metrics["count"] == images.split_sizes()["test"]
    assert (ev.per_label["roc_auc"] > 0.5).all(), ev.per_label  # beats chance per label


# --------------------------------------------------------------------------- SQL, streams, %%predict

@pytest.fixture
def label_set_model(tmp_path):
    """Load (label sets) → featurize (a tiny seeded Keras model) → fit, in the active
    session: (images, model)."""
    from sparkdl_magics import featurize, fit, load_images

    def make():
        root, table = label_set_images(tmp_path)
        write_tiny_model(tmp_path / "tiny.keras", features=4)
        images = load_images(str(root), labels=str(table), id_column="Image Index",
                             label_column="Finding Labels", label_separator="|",
                             multi_label="keep", empty_label="No Finding", split=0.6, seed=3)
        fs = featurize(images, model=str(tmp_path / "tiny.keras"), preprocess="unit",
                       batch_size=16)
        return images, fit(fs, maxIter=50)
    return make


def by_path(rows, *cols):
    return {r["path"]: tuple(r[c] for c in cols) for r in rows}


def check_sql_label_sets(spark, label_set_model):
    images, model = label_set_model()
    images.test.createOrReplaceTempView("xr_test")
    fn = model.register_sql_function("tags", spark=spark)
    model.register_sql_function("tag_probs", output="probabilities", spark=spark)
    model.register_sql_function("strict_tags", threshold=0.8, spark=spark)
    assert fn.return_type == "array<string>" and fn.output == "labels"
    via_sql = by_path(spark.sql("SELECT path, tags(content) AS s, tag_probs(content) AS p, "
                                "strict_tags(content) AS s8 FROM xr_test").collect(),
                      "s", "p", "s8")
    via_model = by_path(model.predict(images.test).collect(), "predicted_labels",
                        "label_probabilities")
    assert set(via_sql) == set(via_model) and len(via_sql) == images.split_sizes()["test"]
    for path, (labels, probs, strict) in via_sql.items():
        want_labels, want_probs = via_model[path]
        np.testing.assert_allclose(probs, want_probs, atol=1e-5)
        near = [c for c, p in zip(model.classes, want_probs) if abs(p - 0.5) < 1e-5]
        assert set(labels) ^ set(want_labels) <= set(near), path
        assert strict == [c for c, p in zip(model.classes, probs) if p >= 0.8]
    assert any(via_sql[p][0] for p in via_sql)  # some images do get labels


def test_a_multi_label_model_as_a_sql_function_gives_label_sets(spark, label_set_model):
    check_sql_label_sets(spark, label_set_model)


@pytest.mark.parametrize("spark_connect", ["connect"], indirect=True)
def test_a_multi_label_model_as_a_sql_function_over_connect(spark_connect, label_set_model):
    check_sql_label_sets(spark_connect, label_set_model)


def test_a_multi_label_sql_function_says_which_outputs_there_are(spark, label_set_model):
    _, model = label_set_model()
    with pytest.raises(OptionError, match=r"output for a multi-label model.*labels, "
                                          r"probabilities"):
        model.register_sql_function("nope", output="features", spark=spark)
    with pytest.raises(OptionError, match=r"option 'threshold'"):
        model.register_sql_function("nope", threshold=2, spark=spark)


def test_a_multi_label_model_on_a_stream(spark, label_set_model, tmp_path):
    from sparkdl_magics import predict
    from sparkdl_magics.streaming import read_image_stream, run_available_now
    images, model = label_set_model()
    stream = read_image_stream(str(tmp_path / "images"), spark=spark)
    preds = predict(stream, model=model)
    assert preds.is_streaming and preds.multi_label and "streaming" in preds._repr_html_()
    run_available_now(preds.df.select("path", "predicted_labels", "label_probabilities"),
                      sink="memory", query_name="xr_stream")
    streamed = by_path(spark.sql("SELECT * FROM xr_stream").collect(), "predicted_labels",
                       "label_probabilities")
    static = by_path(model.predict(images).collect(), "predicted_labels", "label_probabilities")
    assert set(streamed) == set(static) and len(streamed) == images.num_images
    for path, (labels, probs) in streamed.items():
        assert labels == static[path][0], path
        np.testing.assert_allclose(probs, static[path][1], atol=1e-6)


def test_predict_magic_with_a_multi_label_model(ip, spark, label_set_model):
    images, model = label_set_model()
    ip.user_ns.update(xr=images, xr_model=model)
    result = ip.run_cell("%%predict xr -> xr_pred\nmodel: xr_model\nthreshold: 0.3\n"
                         "show: 5\n").result
    assert result is ip.user_ns["xr_pred"] and result.multi_label and result.threshold == 0.3
    assert "predicted_labels" in result.df.columns and "predictions" not in result.df.columns
    want = by_path(model.predict(images, threshold=0.3).collect(), "predicted_labels")
    got = by_path(result.df.collect(), "predicted_labels")
    assert got == want and len(got) == images.num_images
    html = result._repr_html_()
    assert "label sets (probability at least 0.3)" in html
    shown = result.rows
    assert len(shown) == 5 and "predicted_labels" in shown.columns
    with pytest.raises(Exception, match=r"option 'threshold'"):
        ip.run_cell("%%predict xr\nmodel: MobileNetV3Small\nthreshold: 0.3\n")
