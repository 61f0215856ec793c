"""%%fit / %%evaluate and the training & evaluation API.

Inputs are FeatureSets built from real Spark DataFrames whose feature vectors are
seeded class-dependent Gaussian blobs (what a CNN featurizer would hand over), plus
tiny PNGs for the misclassified gallery. Metrics are checked against scikit-learn on
the same predictions; grid scores against our own fits on the same split.
"""
from __future__ import annotations


import numpy as np
import pytest
from sklearn import metrics as skm

from sparkdl_magics.errors import DataError, OptionError
from sparkdl_magics.results import FeatureSet, ImageSet
from helpers import _frame, blobs


# --------------------------------------------------------------------------- data


# --------------------------------------------------------------------------- fit + evaluate


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
    # our own per-point evaluation on TrainValidationSplit's split (rand(seed) >= ratio),
    # drawn over the layout fit gives its training rows
    from sparkdl_magics.partitioning import canonical_layout
    df = canonical_layout(fs.train, ["label", "features"]).select("*", F.rand(7).alias("r"))
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


def test_a_fit_and_its_metrics_do_not_depend_on_how_the_rows_are_partitioned(spark):
    """The same rows in other partitions, in another order or under other paths (the
    same images in another folder) train the same model to the last bit and give the
    same metrics: MLlib adds partition sums in the order their tasks finish, so fit and
    the log loss get a layout that the rows' values alone decide."""
    from pyspark.sql import functions as F

    from sparkdl_magics import evaluate, fit
    fs = blobs(spark, n_train=60, n_test=30, dim=16, spread=2.0, with_images=False)
    layouts = {"one partition": lambda df: df.coalesce(1),
               "five partitions": lambda df: df.repartition(5),
               "other paths": lambda df: df.withColumn(
                   "path", F.concat(F.lit("/elsewhere"), "path")).repartition(3)}
    runs = {}
    for name, layout in layouts.items():
        moved = FeatureSet(train=layout(fs.train), test=layout(fs.test),
                           classes=fs.classes, model_name="blobs")
        model = fit(moved, maxIter=40, regParam=0.001)
        lr = model.classifier_model
        runs[name] = (lr.coefficientMatrix.toArray(), lr.interceptVector.toArray(),
                      evaluate(model, top_errors=0).metrics)
    (coef, intercept, metrics), *_ = runs.values()
    for name, (coef2, intercept2, metrics2) in list(runs.items())[1:]:
        assert np.array_equal(coef, coef2) and np.array_equal(intercept, intercept2), name
        assert metrics == metrics2, name


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
