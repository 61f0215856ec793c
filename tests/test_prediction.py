"""predict / %%predict: top-K equals Keras' own, in every Spark mode.

No ImageNet download: a full MobileNetV3Small (1000-class head, ``weights=None``,
seeded, head sharpened so the ranking is clear) is saved to a weights file and passed
as ``weights``; the reference is computed here with Keras directly and the names come
from the package's class index.
"""
from __future__ import annotations

import numpy as np
import pytest

from helpers import SMALL, assert_top_k_equal, binary_images, keras_scores


# --------------------------------------------------------------------------- no Spark

def test_class_index_ships_in_the_package_and_decodes_scores():
    from sparkdl_magics.prediction import decode_scores, imagenet_classes
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes[0] == ("n01440764", "tench")
    scores = np.zeros((2, 1000), dtype=np.float32)
    scores[0, [5, 7, 9]] = [0.2, 0.5, 0.3]
    scores[1, 999] = 1.0
    top = decode_scores(scores, 2)
    assert [c["class_id"] for c in top[0]] == [7, 9] and top[1][0]["label"] == classes[999][1]
    named = decode_scores(np.array([[0.1, 0.9]]), 5, labels=["cat", "dog"])
    assert [c["label"] for c in named[0]] == ["dog", "cat"]


def test_bad_options_are_one_line_errors(spark, image_folder):
    from sparkdl_magics import predict
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.sql import register_sql_function
    df = binary_images(spark, image_folder / "daisy")
    with pytest.raises(OptionError, match="option 'top_k'"):
        predict(df, model=SMALL, weights="none", top_k=0)
    with pytest.raises(OptionError, match="did you mean 'ResNet50'"):
        predict(df, model="ResNet5")
    with pytest.raises(OptionError, match=r"unknown output 'lable'.*valid: label, labels"):
        register_sql_function("f", model=SMALL, weights="none", output="lable", spark=spark)


# --------------------------------------------------------------------------- predict()

def test_predict_top_k_equals_keras_with_names_from_the_package(spark, image_folder,
                                                                 image_folder_with_corrupt,
                                                                 top_weights):
    from sparkdl_magics import predict
    from sparkdl_magics.results import Predictions
    df = binary_images(spark, image_folder / "daisy").orderBy("path").limit(5).unionByName(
        binary_images(spark, image_folder_with_corrupt, "notes.jpg")).coalesce(1)
    result = predict(df, model=SMALL, weights=str(top_weights), top_k=3, batch_size=2)
    assert isinstance(result, Predictions) and result.top_k == 3
    assert "content" not in result.df.columns
    rows = {r["path"]: r for r in result.df.collect()}
    bad = [p for p in rows if p.endswith("notes.jpg")]
    assert len(bad) == 1 and rows[bad[0]]["predictions"] is None
    assert rows[bad[0]]["predict_error"].startswith("not an image")
    paths = sorted(p for p in rows if p not in bad)
    want = keras_scores(top_weights, paths)
    assert_top_k_equal([rows[p]["predictions"] for p in paths], want, 3)
    for p, scores in zip(paths, want):
        assert rows[p]["prediction"] == rows[p]["predictions"][0]["label"]
        assert rows[p]["probability"] == pytest.approx(scores.max(), rel=1e-3)
        assert rows[p]["label_name"] == "daisy"
    assert "lazy: nothing computed yet" in result._repr_html_()  # showing runs no Spark job
    result.preview()  # what %%predict runs inside its progress scope
    assert "daisy" in result._repr_html_() and "not an image" in result._repr_html_()


def test_predict_and_sql_function_over_spark_connect(spark_connect, image_folder, top_weights):
    from sparkdl_magics import predict, register_sql_function
    df = binary_images(spark_connect, image_folder / "roses").orderBy("path").limit(4)
    rows = {r["path"]: r for r in predict(df, model=SMALL, weights=str(top_weights),
                                          top_k=2).df.collect()}
    want = keras_scores(top_weights, sorted(rows))
    assert_top_k_equal([rows[p]["predictions"] for p in sorted(rows)], want, 2)
    register_sql_function("classify", model=SMALL, weights=str(top_weights),
                          spark=spark_connect)
    df.createOrReplaceTempView("images")
    got = {r["path"]: r["label"] for r in spark_connect.sql(
        "SELECT path, classify(content) AS label FROM images").collect()}
    assert got == {p: r["prediction"] for p, r in rows.items()}


# --------------------------------------------------------------------------- streams


# --------------------------------------------------------------------------- the magic

def test_predict_magic_stores_predictions(ip, spark, image_folder, top_weights):
    from IPython.core.error import UsageError
    ip.user_ns["photos"] = binary_images(spark, image_folder / "daisy").limit(3)
    ip.run_cell(f"%%predict photos\nmodel: {SMALL}\nweights: {top_weights}\ntop_k: 2\n"
                "show: 3\n")
    result = ip.user_ns["photos_predictions"]
    assert len(result.preview()) == 3 and result.top_k == 2
    assert all(len(t) == 2 for t in result.preview()["predictions"])
    with pytest.raises(UsageError, match="top_k"):
        ip.run_cell("%%predict photos -> p\ntop_k: 0\n")
    ip.run_cell("%%predict?")


def test_predict_at_bfloat16_ranks_like_float32_and_says_so(spark, image_folder, top_weights):
    from sparkdl_magics import predict
    df = binary_images(spark, image_folder / "roses").orderBy("path").limit(4)
    fp32 = {r["path"]: r for r in predict(df, model=SMALL, weights=str(top_weights),
                                          top_k=3).df.collect()}
    result = predict(df, model=SMALL, weights=str(top_weights), top_k=3, precision="bfloat16")
    assert result.stats["precision"] == "bfloat16"
    bf16 = {r["path"]: r for r in result.df.collect()}
    assert set(bf16) == set(fp32) and len(bf16) == 4
    for path, row in bf16.items():
        assert row["prediction"] == fp32[path]["prediction"]
        assert abs(row["probability"] - fp32[path]["probability"]) < 0.05
