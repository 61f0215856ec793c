"""evaluate / Evaluation and %%evaluate: metrics, per-class tables, confusion matrices and
curves equal scikit-learn's on the same predictions; mistakes come with thumbnails;
several models compare side by side. Inputs are FeatureSets of seeded Gaussian blobs
(see helpers.blobs) fitted for real with MLlib.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from helpers import blobs, check_against_sklearn


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


def test_class_missing_from_test_split_still_evaluates_with_a_note(spark):
    from sparkdl_magics import evaluate, fit
    fs = blobs(spark, n_train=15, n_test=8, test_classes=("daisy", "tulips"))
    ev = evaluate(fit(fs, maxIter=20))
    assert any("roses" in n and "no images" in n for n in ev.notes)
    assert ev.per_class.set_index("class").loc["roses", "support"] == 0
    check_against_sklearn(ev, 3)


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
