"""apply_keras_model: any Keras model over a column of arrays equals model.predict."""
from __future__ import annotations

import numpy as np
import pytest


def _model():
    import keras
    keras.utils.set_random_seed(5)
    inputs = keras.Input((4, 3, 2))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(5, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def test_keras_model_on_array_columns_equals_model_predict(spark, tmp_path):
    from pyspark.sql import functions as F
    from sparkdl_magics import apply_keras_model
    model = _model()
    path = tmp_path / "tiny.keras"
    model.save(str(path))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 4, 3, 2)).astype(np.float32)
    rows = [(i, x[i].reshape(-1).tolist(), x[i].tolist()) for i in range(7)] + [(7, None, None)]
    df = spark.createDataFrame(
        rows, "id int, flat array<float>, nested array<array<array<double>>>")
    want = model.predict(x, verbose=0)
    flat = apply_keras_model(df, str(path), "flat", "y", input_shape=[4, 3, 2], batch_size=3)
    got = {r["id"]: r["y"] for r in flat.collect()}
    assert got[7] is None
    np.testing.assert_allclose(np.array([got[i] for i in range(7)]), want, rtol=1e-5, atol=1e-6)
    # nested arrays, the model's own input shape, a keras.Model object
    nested = apply_keras_model(df, model, "nested", batch_size=2).orderBy("id")
    got2 = [r["prediction"] for r in nested.filter(F.col("nested").isNotNull()).collect()]
    np.testing.assert_allclose(np.array(got2), want, rtol=1e-5, atol=1e-6)


def test_tensor_option_errors_name_the_option(spark, tmp_path):
    from sparkdl_magics import apply_keras_model
    from sparkdl_magics.errors import DataError, OptionError
    df = spark.createDataFrame([(1, "a")], "id int, s string")
    with pytest.raises(DataError, match="option 'input_col'.*expected an array"):
        apply_keras_model(df, _model(), "s")
    with pytest.raises(DataError, match="no column 'x'"):
        apply_keras_model(df, _model(), "x")
    with pytest.raises(OptionError, match="option 'model': no model file"):
        apply_keras_model(df.selectExpr("array(1.0) as a"), str(tmp_path / "no.keras"), "a")
