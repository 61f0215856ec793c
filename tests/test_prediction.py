"""%%predict, the SQL function and streams: top-K equals Keras' own, in every path.

No ImageNet download: a full MobileNetV3Small (1000-class head, ``weights=None``,
seeded, head sharpened so the ranking is clear) is saved to a weights file and passed
as ``weights``; the reference is computed here with Keras directly and the names come
from the package's class index.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_featurize import binary_images, local_path

SMALL = "MobileNetV3Small"
INDEX = Path(__file__).parent.parent / "sparkdl_magics" / "data" / "imagenet_class_index.json"


def full_model():
    from sparkdl_magics.models import get_model_info
    info = get_model_info(SMALL)
    return info, info.constructor()(include_top=True, weights=None,
                                    input_shape=(info.size, info.size, 3))


@pytest.fixture(scope="module")
def top_weights(tmp_path_factory) -> Path:
    import keras
    path = tmp_path_factory.mktemp("top") / f"{SMALL}-top.weights.h5"
    keras.utils.set_random_seed(11)
    _, model = full_model()
    last = [lay for lay in model.layers if lay.get_weights()][-1]
    last.set_weights([w * 40.0 for w in last.get_weights()])  # spread the logits
    model.save_weights(str(path))
    del model
    keras.backend.clear_session()
    return path


def keras_scores(weights: Path, paths) -> np.ndarray:
    import keras
    info, model = full_model()
    model.load_weights(str(weights))
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(
        local_path(p), target_size=(info.size, info.size), interpolation="bilinear"))
        for p in paths])
    out = model.predict(info.preprocess()(x), verbose=0)
    del model
    keras.backend.clear_session()
    return out


def assert_top_k_equal(rows, want_scores, k):
    names = json.loads(INDEX.read_text())
    for top, scores in zip(rows, want_scores):
        want = np.argsort(-scores, kind="stable")[:k]
        assert [c["class_id"] for c in top] == list(want)
        assert [c["label"] for c in top] == [names[str(i)][1] for i in want]
        assert [c["wnid"] for c in top] == [names[str(i)][0] for i in want]
        np.testing.assert_allclose([c["probability"] for c in top], scores[want],
                                   rtol=1e-3, atol=1e-5)


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


# --------------------------------------------------------------------------- streams

def test_a_file_stream_is_predicted_and_featurized_with_available_now(spark, image_folder,
                                                                      top_weights, tmp_path):
    from sparkdl_magics import predict
    from sparkdl_magics.streaming import featurize_stream, read_image_stream, run_available_now
    folder = image_folder / "daisy"
    n_files = len(list(folder.iterdir()))
    stream = read_image_stream(str(folder), labels_from_folders=True, spark=spark)
    assert stream.isStreaming
    preds = predict(stream, model=SMALL, weights=str(top_weights), top_k=2)
    assert preds.is_streaming and "streaming" in preds._repr_html_()
    run_available_now(preds.df.select("path", "prediction", "predictions"), sink="parquet",
                      path=str(tmp_path / "preds"))
    written = spark.read.parquet(str(tmp_path / "preds"))
    assert written.count() == n_files
    assert written.filter("prediction is null").count() == 0
    run_available_now(featurize_stream(read_image_stream(str(folder), spark=spark),
                                       model=SMALL, weights="none", batch_size=4),
                      sink="memory", query_name="daisy_features")
    feats = spark.sql("SELECT features FROM daisy_features").collect()
    assert len(feats) == n_files and all(len(r["features"]) == 576 for r in feats)


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
