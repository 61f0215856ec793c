"""A fitted model from %%fit as a Spark SQL function: same answers as the pipeline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import SMALL, assert_top_k_equal, cosines, binary_images, keras_scores, local_path

pytest.importorskip("keras")


@pytest.fixture
def small_fitted(tmp_path, image_folder):
    """Load → featurize (small seeded model) → fit, for whichever session is active."""
    from helpers import SMALL, write_weights

    from sparkdl_magics import featurize, fit, load_images

    def make(classes=None):
        images = load_images(str(image_folder), split=0.7, seed=5, classes=classes)
        fs = featurize(images, model=SMALL, weights=str(write_weights(SMALL, tmp_path)),
                       batch_size=8)
        return images, fit(fs, maxIter=15)
    return make


def test_sql_function_of_a_fitted_model_matches_its_predictions(spark, small_fitted):
    check_sql_matches_pipeline(spark, small_fitted)


def test_sql_function_of_a_fitted_model_over_connect(spark_connect, small_fitted):
    check_sql_matches_pipeline(spark_connect, small_fitted)


def check_sql_matches_pipeline(spark, small_fitted):
    images, model = small_fitted()
    images.test.createOrReplaceTempView("test_images")
    model.register_sql_function("flower", spark=spark)
    model.register_sql_function("flower_probs", output="probabilities", spark=spark)
    via_sql = {r.path: (r.name, r.probs) for r in spark.sql(
        "SELECT path, flower(content) AS name, flower_probs(content) AS probs "
        "FROM test_images").collect()}
    via_pipeline = {r.path: (r.prediction_name, r.probability.toArray()) for r in
                    model.predict(images.test).select("path", "prediction_name",
                                                      "probability").collect()}
    assert set(via_sql) == set(via_pipeline) and len(via_sql) == images.test.count()
    for path, (name, probs) in via_sql.items():
        expected_name, expected_probs = via_pipeline[path]
        assert name == expected_name
        np.testing.assert_allclose(probs, expected_probs, atol=1e-4)


def test_binary_fitted_model_sql_probabilities_sum_to_one(spark, small_fitted):
    images, model = small_fitted(classes=["daisy", "roses"])
    images.test.createOrReplaceTempView("two_class_images")
    model.register_sql_function("two", output="probabilities", spark=spark)
    probs = np.array([r[0] for r in spark.sql(
        "SELECT two(content) FROM two_class_images").collect()])
    expected = np.stack([r.probability.toArray() for r in
                         model.predict(images.test).orderBy("path").collect()])
    ordered = np.array([r[0] for r in spark.sql(
        "SELECT two(content) FROM two_class_images ORDER BY path").collect()])
    assert probs.shape[1] == 2 and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(ordered, expected, atol=1e-4)


def test_non_linear_fitted_model_says_what_to_do_instead(spark, small_fitted, tmp_path):
    from sparkdl_magics import fit
    from sparkdl_magics.errors import OptionError
    _, lr = small_fitted()
    forest = fit(lr.features, "random_forest", numTrees=3)
    with pytest.raises(OptionError, match="needs a logistic_regression model.*random_forest"):
        forest.register_sql_function("nope", spark=spark)


def test_sql_function_in_classic_mode_gives_labels_top_k_and_features(spark, image_folder,
                                                                       top_weights):
    from sparkdl_magics import register_sql_function
    from sparkdl_magics.models import get_model_info
    folder = image_folder / "tulips"
    binary_images(spark, folder).orderBy("path").limit(3).coalesce(1) \
        .createOrReplaceTempView("images")
    spark.read.format("image").load(str(folder / "*.png")).createOrReplaceTempView("structs")
    fn = register_sql_function("classify", model=SMALL, weights=str(top_weights), spark=spark)
    assert fn.return_type == "string"
    register_sql_function("top3", model=SMALL, weights=str(top_weights), output="labels",
                          top_k=3, spark=spark)
    register_sql_function("embed", model=SMALL, weights="none", output="features", spark=spark)
    rows = spark.sql("SELECT path, classify(content) AS label, top3(content) AS top, "
                     "embed(content) AS f FROM images ORDER BY path").collect()
    want = keras_scores(top_weights, [r["path"] for r in rows])
    assert_top_k_equal([r["top"] for r in rows], want, 3)
    assert [r["label"] for r in rows] == [r["top"][0]["label"] for r in rows]
    assert all(len(r["f"]) == get_model_info(SMALL).features for r in rows)
    # an image-source struct column (BGR) works with the same function
    structs = spark.sql("SELECT image.origin AS path, classify(image) AS label FROM structs"
                        ).collect()
    png = {Path(local_path(r["path"])).name: r["label"] for r in structs}
    assert len(png) >= 1 and all(isinstance(v, str) for v in png.values())


def test_sql_function_runs_at_the_precision_asked(spark, image_folder, tmp_path):
    from helpers import write_weights

    from sparkdl_magics import register_sql_function
    weights = str(write_weights(SMALL, tmp_path))
    df = binary_images(spark, image_folder / "daisy").limit(5)
    df.createOrReplaceTempView("precision_images")
    fp32 = register_sql_function("feats32", model=SMALL, weights=weights, output="features",
                                 spark=spark)
    bf16 = register_sql_function("feats16", model=SMALL, weights=weights, output="features",
                                 precision="bfloat16", spark=spark)
    assert (fp32.precision, bf16.precision) == ("float32", "bfloat16")
    rows = spark.sql("SELECT feats32(content) AS a, feats16(content) AS b "
                     "FROM precision_images").collect()
    a = np.array([r["a"] for r in rows], dtype=np.float64)
    b = np.array([r["b"] for r in rows], dtype=np.float64)
    assert len(rows) == 5 and not np.array_equal(a, b)
    assert cosines(a, b).min() > 0.99
