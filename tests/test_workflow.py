"""End to end with the real featurizer: load images → featurize (small Keras model,
seeded weights, no internet) → fit → evaluate → predict raw images → save → load with
plain PySpark. The fitted pipeline starts from raw image bytes."""
from __future__ import annotations

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
