"""End to end with the real featurizer: load images → featurize (small Keras model,
seeded weights, no internet) → fit → evaluate → predict raw images → save → load with
plain PySpark. The fitted pipeline starts from raw image bytes."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")


def test_load_featurize_fit_evaluate_predict_and_reload(spark, image_folder, tmp_path):
    from pyspark.ml import PipelineModel
    from helpers import SMALL, write_weights

    from sparkdl_magics import FittedModel, evaluate, featurize, fit, load_images
    images = load_images(str(image_folder), split=0.75, seed=3)
    weights = write_weights(SMALL, tmp_path)
    fs = featurize(images, model=SMALL, weights=str(weights), batch_size=8)
    model = fit(fs, maxIter=10)
    assert model.has_featurizer and model.classes == list(images.classes)

    ev = evaluate(model)
    n_test = fs.test.count()
    assert int(ev.confusion.to_numpy().sum()) == n_test == ev.metrics["count"]

    # raw images through the featurizer stage give the same predictions as the features
    raw = model.predict(images.test).select("path", "prediction_name").orderBy("path").collect()
    via_features = ev.predictions.select("path", "prediction_name").orderBy("path").collect()
    assert [tuple(r) for r in raw] == [tuple(r) for r in via_features]
    assert len(raw) == n_test

    path = str(tmp_path / "pipeline")
    model.save(path)
    plain = PipelineModel.load(path)  # plain PySpark; the featurizer stage loads too
    again = plain.transform(images.test).select("path", "prediction_name") \
        .orderBy("path").collect()
    assert [tuple(r) for r in again] == [tuple(r) for r in raw]
    assert FittedModel.load(path).classes == model.classes
    with pytest.raises(Exception, match="run %%featurize first"):
        fit(images)
    fs.unpersist()


def test_the_same_images_in_another_folder_give_the_same_model_and_metrics(spark,
                                                                            image_folder,
                                                                            tmp_path):
    """A seeded run repeats its numbers wherever the images are: the quickstart headless
    (``notebooks/data``) and in JupyterLab (a temporary folder) once gave 0.8917 and
    0.8833 accuracy, because Spark's round-robin shuffles order rows by a hash of the
    whole row, absolute path included, and MLlib's sums follow the partitions."""
    import shutil

    from helpers import SMALL, write_weights

    from sparkdl_magics import evaluate, featurize, fit, load_images
    weights = str(write_weights(SMALL, tmp_path))
    runs = []
    for where in (tmp_path / "a", tmp_path / "somewhere" / "much" / "deeper" / "b"):
        for name in ("daisy", "roses"):
            shutil.copytree(image_folder / name, where / name)
        images = load_images(str(where), split=0.7, seed=11)
        fs = featurize(images, model=SMALL, weights=weights, batch_size=8)
        model = fit(fs, maxIter=30, regParam=0.001)
        lr = model.classifier_model
        runs.append((sorted((r["path"].rsplit("/", 2)[-2:], r["split"]) for r in
                            images.df.select("path", "split").collect()),
                     lr.coefficients.toArray(), lr.intercept,
                     evaluate(model, top_errors=0).metrics))
        fs.unpersist()
    (split_a, coef_a, b_a, metrics_a), (split_b, coef_b, b_b, metrics_b) = runs
    assert split_a == split_b  # the split never depended on the folder
    assert np.array_equal(coef_a, coef_b) and b_a == b_b
    assert metrics_a == metrics_b
