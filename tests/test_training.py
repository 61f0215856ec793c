"""%%fit / %%evaluate and the training & evaluation API.

Inputs are FeatureSets built from real Spark DataFrames whose feature vectors are
seeded class-dependent Gaussian blobs (what a CNN featurizer would hand over), plus
tiny PNGs for the misclassified gallery. Metrics are checked against scikit-learn on
the same predictions; grid scores against our own fits on the same split.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from sklearn import metrics as skm

from imagegen import image_set_of
from sparkdl_magics.errors import DataError, OptionError
from sparkdl_magics.results import FeatureSet, ImageSet


# --------------------------------------------------------------------------- data

def _png(color) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (12, 8), tuple(int(c) for c in color)).save(buf, format="PNG")
    return buf.getvalue()


def _rows(classes, n, dim, rng, split, spread, offset=0.0):
    rows = []
    for label, name in enumerate(classes):
        center = np.zeros(dim)
        center[label % dim] = 2.0
        for i in range(n):
            x = center + rng.normal(0.0, spread, dim) + offset
            rows.append((f"/data/{name}/{split}_{i}.png", float(label), name, x.tolist()))
    return rows


def blobs(spark, classes=("daisy", "roses", "tulips"), n_train=20, n_test=10, dim=4,
          seed=0, spread=1.2, offset=0.0, test_classes=None, with_images=True):
    """A FeatureSet of Gaussian blobs (overlapping, so there are mistakes)."""
    from pyspark.ml.linalg import Vectors
    rng = np.random.default_rng(seed)
    train = _rows(classes, n_train, dim, rng, "train", spread, offset)
    test = _rows(classes, n_test, dim, rng, "test", spread, offset)
    if test_classes is not None:
        test = [r for r in test if r[2] in test_classes]

    def frame(rows):
        return _frame(spark, [(p, y, name, Vectors.dense(x)) for p, y, name, x in rows])

    images = None
    if with_images:
        colors = {name: (60 * i + 40, 200 - 50 * i, 90) for i, name in enumerate(classes)}
        content = [(p, bytearray(_png(colors[name]))) for p, _, name, _ in train + test]
        images = image_set_of(spark.createDataFrame(content, "path string, content binary"))
    return FeatureSet(train=frame(train), test=frame(test), classes=list(classes),
                      images=images, model_name="blobs")


def collect_predictions(ev):
    rows = ev.predictions.select("label", "prediction", "probability").collect()
    y = np.array([r["label"] for r in rows], dtype=int)
    p = np.array([r["prediction"] for r in rows], dtype=int)
    prob = np.array([r["probability"].toArray() for r in rows])
    return y, p, prob


def check_against_sklearn(ev, k):
    y, p, prob = collect_predictions(ev)
    labels = list(range(k))
    assert ev.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    for ours, average in (("f1", skm.f1_score), ("precision", skm.precision_score),
                          ("recall", skm.recall_score)):
        expected = average(y, p, labels=labels, average="weighted", zero_division=0)
        assert ev.metrics[ours] == pytest.approx(expected), ours
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, p, labels=labels, zero_division=0)
    np.testing.assert_allclose(ev.per_class["precision"], precision)
    np.testing.assert_allclose(ev.per_class["recall"], recall)
    np.testing.assert_allclose(ev.per_class["f1"], f1)
    np.testing.assert_array_equal(ev.per_class["support"], support)
    np.testing.assert_array_equal(ev.confusion.to_numpy(),
                                  skm.confusion_matrix(y, p, labels=labels))
    assert ev.metrics["log_loss"] == pytest.approx(skm.log_loss(y, prob, labels=labels),
                                                   rel=1e-9)
    assert int(ev.confusion.to_numpy().sum()) == len(y) == ev.metrics["count"]
    return y, p, prob


def _frame(spark, rows):
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType
    schema = StructType([StructField("path", StringType()), StructField("label", DoubleType()),
                         StructField("label_name", StringType()),
                         StructField("features", VectorUDT())])
    return spark.createDataFrame(rows, schema)


# --------------------------------------------------------------------------- fit + evaluate

def _fit_evaluate_matches_sklearn(spark):
    from sparkdl_magics import evaluate, fit
    fs = blobs(spark)
    model = fit(fs, maxIter=30, regParam=0.01)
    assert model.classes == ["daisy", "roses", "tulips"]
    assert model.objective_history and model.objective_history[-1] <= model.objective_history[0]
    ev = evaluate(model)
    y, p, _ = check_against_sklearn(ev, 3)
    assert len(y) == 30
    assert 0.3 < ev.metrics["accuracy"] < 1.0  # overlapping blobs: some mistakes to show
    # predictions carry the class name
    names = ev.predictions.select("prediction", "prediction_name").distinct().collect()
    assert all(model.classes[int(r[0])] == r[1] for r in names)
    # the most confident mistakes, with thumbnails, most confident first
    errors = ev.errors
    assert len(errors) == min(12, int((y != p).sum()))
    assert (errors["true"] != errors["predicted"]).all()
    assert list(errors["probability"]) == sorted(errors["probability"], reverse=True)
    assert errors["thumbnail"].map(lambda b: b[:4] == b"\x89PNG").all()
    html = ev._repr_html_()
    assert "confusion" in html.lower() and "tulips" in html and "data:image/png;base64" in html
    return model, ev


def test_fit_evaluate_metrics_equal_sklearn_local(spark):
    model, _ = _fit_evaluate_matches_sklearn(spark)
    assert "FittedModel" in model._repr_html_()


def test_fit_evaluate_metrics_equal_sklearn_connect(spark_connect, tmp_path):
    from sparkdl_magics import FittedModel
    model, ev = _fit_evaluate_matches_sklearn(spark_connect)
    # save and load back over Connect too
    model.save(str(tmp_path / "clf"))
    loaded = FittedModel.load(str(tmp_path / "clf"))
    fs = model.features
    before = [r["prediction_name"] for r in model.transform(fs.test).orderBy("path").collect()]
    after = [r["prediction_name"] for r in loaded.transform(fs.test).orderBy("path").collect()]
    assert before == after


def test_binary_auc_and_average_precision_equal_sklearn(spark):
    from sparkdl_magics import evaluate, fit
    fs = blobs(spark, classes=("cat", "dog"), n_train=25, n_test=20, dim=3, spread=1.5)
    ev = evaluate(fit(fs, maxIter=20))
    y, p, prob = check_against_sklearn(ev, 2)
    assert ev.metrics["auc"] == pytest.approx(skm.roc_auc_score(y, prob[:, 1]))
    assert ev.metrics["pr_auc"] == pytest.approx(skm.average_precision_score(y, prob[:, 1]))
    fpr, tpr, _ = skm.roc_curve(y, prob[:, 1], drop_intermediate=False)
    np.testing.assert_allclose(ev.roc["fpr"], fpr)
    np.testing.assert_allclose(ev.roc["tpr"], tpr)
    assert "ROC" in "".join(ev._repr_html_()) or ev.roc is not None


def test_grid_search_picks_the_best_point_by_the_metric(spark):
    """Each grid point's score equals our own fit on the same train/validation split,
    and the chosen point is the best of them."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import functions as F
    from sparkdl_magics import fit
    fs = blobs(spark, n_train=30, n_test=5, spread=1.4)
    grid_values = [0.0, 0.3, 5.0]
    model = fit(fs, regParam=grid_values, maxIter=15, validation=0.3, metric="accuracy",
                seed=7)
    grid = model.grid
    assert list(grid["regParam"]) == grid_values
    # our own per-point evaluation on TrainValidationSplit's split (rand(seed) >= ratio)
    df = fs.train.select("label", "features").select("*", F.rand(7).alias("r"))
    train, valid = df.filter(F.col("r") < 0.7), df.filter(F.col("r") >= 0.7)
    ours = []
    for reg in grid_values:
        lr = LogisticRegression(regParam=reg, maxIter=15).fit(train)
        rows = lr.transform(valid).select("label", "prediction").collect()
        ours.append(skm.accuracy_score([r[0] for r in rows], [r[1] for r in rows]))
    np.testing.assert_allclose(grid["accuracy"], ours)
    best = int(np.argmax(ours))
    assert list(grid["chosen"]) == [i == best for i in range(3)]
    assert model.params["regParam"] == grid_values[best]
    assert model.classifier_model.getRegParam() == grid_values[best]
    assert model.params["maxIter"] == 15
    html = model._repr_html_()
    assert "Grid search" in html and "data:image/png" in html


def test_grid_without_folds_uses_cross_validation_and_says_so(spark):
    from sparkdl_magics import fit
    fs = blobs(spark, n_train=12, n_test=3)
    model = fit(fs, classifier="random_forest", numTrees=[3, 6], maxDepth=3, metric="f1")
    assert model.tuning.startswith("3-fold cross-validation")
    assert any("3-fold cross-validation" in n for n in model.notes)
    assert len(model.grid) == 2 and "f1_std" in model.grid
    assert model.grid["chosen"].sum() == 1
    best = model.grid.loc[model.grid["chosen"], "f1"].iloc[0]
    assert best == model.grid["f1"].max()


def test_save_fresh_session_load_predicts_identically(spark, session_pool, tmp_path):
    from sparkdl_magics import FittedModel, fit
    fs = blobs(spark)
    model = fit(fs, classifier="mlp", hidden=8, maxIter=30)
    rows = model.transform(fs.test).select("path", "prediction_name", "probability") \
        .orderBy("path").collect()
    before = [(r[0], r[1], r[2].toArray().tolist()) for r in rows]
    test_rows = [tuple(r) for r in fs.test.collect()]
    path = str(tmp_path / "model")
    model.save(path)

    session_pool.close()  # a fresh session: nothing of the old one survives
    fresh = session_pool.get("local")
    loaded = FittedModel.load(path)
    assert loaded.classes == model.classes and loaded.classifier == "mlp"
    test = _frame(fresh, test_rows)
    rows = loaded.transform(test).select("path", "prediction_name", "probability") \
        .orderBy("path").collect()
    after = [(r[0], r[1], r[2].toArray().tolist()) for r in rows]
    assert [a[:2] for a in after] == [b[:2] for b in before]
    np.testing.assert_allclose([a[2] for a in after], [b[2] for b in before])

    # plain PySpark: PipelineModel.load, without FittedModel or the magics
    from pyspark.ml import PipelineModel
    plain = PipelineModel.load(path).transform(test.select("path", "features"))
    assert [(r["path"], r["prediction_name"]) for r in plain.orderBy("path").collect()] == \
        [b[:2] for b in before]


@pytest.mark.parametrize("name,params", [
    ("random_forest", {"numTrees": 5, "maxDepth": 3}),
    ("gbt", {"maxIter": 3, "maxDepth": 2}),
    ("linear_svc", {"maxIter": 10}),
    ("mlp", {"hidden": [[6, 4]], "maxIter": 20}),
    ("naive_bayes", {"smoothing": 1.0}),
    ("fm", {"maxIter": 5, "factorSize": 2}),
])
def test_every_classifier_fits_three_classes(spark, name, params):
    from sparkdl_magics import evaluate, fit
    fs = blobs(spark, n_train=10, n_test=4, offset=6.0 if name == "naive_bayes" else 0.0)
    model = fit(fs, classifier=name, **params)
    ev = evaluate(model, top_errors=0)
    assert ev.metrics["count"] == 12 and ev.confusion.to_numpy().sum() == 12
    assert ev.metrics["accuracy"] > 0.4
    if name in ("gbt", "linear_svc", "fm"):
        assert type(model.classifier_model).__name__ == "OneVsRestModel"
    if name == "mlp":
        assert list(model.classifier_model.getLayers()) == [4, 6, 4, 3]


# --------------------------------------------------------------------------- degenerate

def test_one_class_only_is_a_clear_error(spark):
    from sparkdl_magics import fit
    fs = blobs(spark, classes=("only",), n_train=5, n_test=2)
    with pytest.raises(DataError, match="only one class .'only'. in the training split"):
        fit(fs)


def test_empty_splits_are_clear_errors(spark):
    from sparkdl_magics import evaluate, fit
    fs = blobs(spark, n_train=6, n_test=2, test_classes=())
    model = fit(fs, maxIter=5)
    with pytest.raises(DataError, match="evaluation data is empty"):
        evaluate(model)
    empty = FeatureSet(train=fs.test, test=fs.test, classes=fs.classes)
    with pytest.raises(DataError, match="training split is empty"):
        fit(empty)


def test_class_missing_from_test_split_still_evaluates_with_a_note(spark):
    from sparkdl_magics import evaluate, fit
    fs = blobs(spark, n_train=15, n_test=8, test_classes=("daisy", "tulips"))
    ev = evaluate(fit(fs, maxIter=20))
    assert any("roses" in n and "no images" in n for n in ev.notes)
    assert ev.per_class.set_index("class").loc["roses", "support"] == 0
    check_against_sklearn(ev, 3)


def test_naive_bayes_needs_non_negative_features(spark):
    from sparkdl_magics import fit
    fs = blobs(spark, n_train=6, n_test=2)
    with pytest.raises(DataError, match="naive_bayes' needs non-negative features"):
        fit(fs, classifier="naive_bayes")


def test_bad_options_name_the_option_and_choices(spark):
    from sparkdl_magics import fit
    fs = blobs(spark, n_train=4, n_test=1, with_images=False)
    with pytest.raises(OptionError, match="did you mean 'regParam'"):
        fit(fs, regParm=0.1)
    with pytest.raises(OptionError, match="did you mean 'random_forest'"):
        fit(fs, classifier="random_forrest")
    with pytest.raises(OptionError, match="'metric'.*two classes"):
        fit(fs, metric="auc")
    with pytest.raises(OptionError, match="no probabilities"):
        fit(fs, classifier="linear_svc", metric="log_loss")
    with pytest.raises(OptionError, match="'maxIter'"):
        fit(fs, maxIter="many")
    with pytest.raises(OptionError, match="either 'folds'"):
        fit(fs, folds=3, validation=0.2)


# --------------------------------------------------------------------------- magics

def test_fit_and_evaluate_magics_store_results_and_compare(spark, ip):
    from sparkdl_magics import Evaluation, FittedModel
    from sparkdl_magics.results import Comparison
    ip.user_ns["feats"] = blobs(spark, n_train=12, n_test=5)
    ip.run_cell("%%fit feats -> clf\nmaxIter: 10\nregParam: [0.01, 1.0]\nfolds: 2\n")
    clf = ip.user_ns["clf"]
    assert isinstance(clf, FittedModel) and len(clf.grid) == 2 and clf.tuning.startswith("2-fold")
    ip.user_ns.pop("feats_model", None)
    ip.run_cell("%%fit feats\nclassifier: random_forest\nnumTrees: 4\n")
    ip.user_ns["forest"] = ip.user_ns.pop("feats_model")  # stored under the default name
    ip.run_line_magic("evaluate", "clf -> ev")
    assert isinstance(ip.user_ns["ev"], Evaluation) and ip.user_ns["ev"].name == "clf"
    ip.run_line_magic("evaluate", "clf forest --top_errors 0 -> both")
    both = ip.user_ns["both"]
    assert isinstance(both, Comparison)
    assert list(both.table["model"]) == ["clf", "forest"]
    assert both.table.loc[1, "accuracy"] == pytest.approx(both["forest"].metrics["accuracy"])
    assert "Model comparison" in both._repr_html_()


def test_magic_errors_are_one_line(spark, ip):
    from IPython.core.error import UsageError
    ip.user_ns["images"] = ImageSet(df=None, train=None, test=None, classes=["a", "b"],
                                    invalid=None, counts=None)
    with pytest.raises(UsageError, match="run %%featurize first"):
        ip.run_line_magic("fit", "images -> m")
    ip.user_ns["feats"] = blobs(spark, n_train=4, n_test=1, with_images=False)
    with pytest.raises(UsageError, match="unknown option 'maxIters'.*did you mean 'maxIter'"):
        ip.run_cell("%%fit feats -> m\nmaxIters: 3\n")
    with pytest.raises(UsageError, match="expected a fitted model"):
        ip.run_line_magic("evaluate", "feats")
    from sparkdl_magics.magics import fit as fit_magic
    help_text = fit_magic.SPEC.help_text()
    assert "regParam" in help_text and "naive_bayes" in help_text and "folds" in help_text


def test_grid_fit_and_evaluate_inside_a_magic_cell_scope(spark):
    """Regression: on Spark 4 classic, a session tag (spark.addTag) leaves the session
    holding a non-serializable thread-local that every LR training summary references,
    so tuning and evaluation failed with 'Task not serializable' inside a magic's cell
    scope. The scope now uses job groups on classic sessions."""
    from sparkdl_magics import evaluate, fit, progress
    fs = blobs(spark, classes=("cat", "dog"), n_train=20, n_test=10, dim=3, spread=1.5)
    with progress.cell_scope(spark, "fit", mode="none"):
        model = fit(fs, maxIter=10, regParam=[0.01, 0.1], validation=0.3)
        ev = evaluate(model)
    assert model.objective_history  # read before the summary is dropped
    assert sum(ev.confusion.to_numpy().ravel()) == fs.test.count()
