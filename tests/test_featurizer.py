"""%%featurize core: Spark features equal Keras' own, in every Spark mode.

The reference side is computed independently in the test process with Keras itself:
``keras.utils.load_img`` (RGB, bilinear resize) -> the model's own
``keras.applications.<module>.preprocess_input`` -> ``model.predict``. Both sides load
the same weights file, written here from a seeded model (no ImageNet download).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from IPython.core.error import UsageError

from helpers import (SMALL, binary_images, cosines, features_by_path, image_set_of, keras_reference,
                     local_path, write_weights)

ATOL = 2e-4


# --------------------------------------------------------------------------- helpers


# --------------------------------------------------------------------------- exactness

@pytest.mark.parametrize("name", ["InceptionV3", "Xception", "ResNet50", "VGG16", "VGG19",
                                  "MobileNetV2"])
def test_spark_features_equal_keras_predict_on_preprocessed_rgb(spark, image_folder,
                                                                 weights_dir, name):
    from sparkdl_magics import inference
    from sparkdl_magics.featurizer import DeepImageFeaturizer
    from sparkdl_magics.models import get_model_info
    weights = write_weights(name, weights_dir)
    # one file of each kind: JPEG RGB, PNG RGB, JPEG grayscale, PNG RGBA
    df = binary_images(spark, image_folder / "daisy").orderBy("path").limit(4).coalesce(1)
    featurizer = DeepImageFeaturizer(inputCol="content", modelName=name,
                                     weights=str(weights), batchSize=3)
    got = features_by_path(featurizer.transform(df))
    paths = sorted(got)
    want = keras_reference(name, weights, paths)
    assert want.shape == (4, get_model_info(name).features)
    for i, p in enumerate(paths):
        np.testing.assert_allclose(got[p], want[i], rtol=1e-3, atol=ATOL * max(1, np.abs(want).max()))
    inference.clear_cache()


def test_bgr_image_source_structs_give_the_same_features_as_file_bytes(spark, image_folder,
                                                                       small_weights):
    from sparkdl_magics.featurizer import DeepImageFeaturizer
    folder = image_folder / "roses"
    as_bytes = binary_images(spark, folder, "*.png")
    as_structs = spark.read.format("image").load(str(folder / "*.png"))
    common = dict(modelName=SMALL, weights=str(small_weights), batchSize=4)
    from_bytes = features_by_path(DeepImageFeaturizer(inputCol="content", **common)
                                  .transform(as_bytes))
    from pyspark.sql import functions as F
    from_structs = features_by_path(DeepImageFeaturizer(inputCol="image", **common)
                                    .transform(as_structs)
                                    .select(F.col("image.origin").alias("path"), "features"))
    from_bytes = {os.path.basename(k): v for k, v in from_bytes.items()}
    from_structs = {os.path.basename(k): v for k, v in from_structs.items()}
    assert len(from_bytes) >= 4 and set(from_bytes) == set(from_structs)
    for path, vec in from_bytes.items():
        np.testing.assert_allclose(from_structs[path], vec, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- featurize()

def test_featurize_in_every_spark_mode_matches_keras(spark_any, image_folder, small_weights):
    from sparkdl_magics import featurize
    from sparkdl_magics.results import FeatureSet
    df = binary_images(spark_any, image_folder)
    train, test = df.filter("path not like '%0001%'"), df.filter("path like '%0001%'")

    images = image_set_of(train, test, ["daisy", "roses", "tulips"])
    fs = featurize(images, model=SMALL, weights=str(small_weights), batch_size=5)
    assert isinstance(fs, FeatureSet)
    assert fs.stats["per_split"] == {"train": 33, "test": 3} and fs.stats["invalid"] == 0
    assert fs.feature_dim == 576 and fs.classes == ["daisy", "roses", "tulips"]
    assert "content" not in fs.train.columns  # compressed bytes are not cached
    got = features_by_path(fs.test)
    paths = sorted(got)
    want = keras_reference(SMALL, small_weights, paths)
    for i, p in enumerate(paths):
        np.testing.assert_allclose(got[p], want[i], rtol=1e-3, atol=1e-4)
    train_rows = fs.train.select("label", "features").collect()
    assert {r["label"] for r in train_rows} == {0.0, 1.0, 2.0}
    assert all(len(r["features"]) == 576 for r in train_rows)
    fs.unpersist()


def test_weights_really_ship_to_separate_executor_processes(spark_cluster, image_folder,
                                                            weights_dir, small_weights):
    """local-cluster: executors read the weights from their own SparkFiles copy."""
    from pyspark.sql.functions import pandas_udf
    from sparkdl_magics.featurizer import DeepImageFeaturizer
    user_copy = weights_dir / "to_delete.weights.h5"
    user_copy.write_bytes(small_weights.read_bytes())
    featurizer = DeepImageFeaturizer(modelName=SMALL, weights=str(user_copy), batchSize=8)
    shipped = featurizer.resolve(spark_cluster).spec.weights_file
    os.remove(user_copy)  # the user's file is gone; only the shipped copy remains

    @pandas_udf("string")
    def where(ids: pd.Series) -> pd.Series:
        return ids.map(lambda _: f"{os.getpid()}|{shipped.local_path()}")

    seen = {r[0] for r in spark_cluster.range(8).repartition(4).select(where("id")).collect()}
    paths = {s.split("|")[1] for s in seen}
    assert shipped.driver_path not in paths and all(os.path.basename(p) == shipped.name
                                                      for p in paths)
    df = binary_images(spark_cluster, image_folder / "tulips").repartition(3)
    got = features_by_path(featurizer.transform(df))
    want = keras_reference(SMALL, small_weights, sorted(got))
    np.testing.assert_allclose(np.stack([got[p] for p in sorted(got)]), want,
                               rtol=1e-3, atol=1e-4)


def test_a_folder_python_reads_moves_paths_not_bytes_and_gives_the_same_features(
        spark, image_folder, small_weights):
    """A local folder is read by Python (loading.stored): featurize spreads the *paths*
    over the task slots and reads each file in the model's own task, so the only shuffle
    holds paths; the features equal those of the same files' binaryFile bytes."""
    from sparkdl_magics import featurize
    from sparkdl_magics.loading import load_images
    images = load_images(str(image_folder), split="1.0", spark=spark)
    assert images.content_of is not None  # a Python-read folder (not Spark's binaryFile)
    fs = featurize(images, model=SMALL, weights=str(small_weights), cache="none")
    plan = fs.train._jdf.queryExecution().executedPlan().toString().splitlines()
    exchange = next(i for i, line in enumerate(plan) if "Exchange" in line)
    reads = [i for i, line in enumerate(plan) if "content(path" in line]
    # the file reading runs above the first (the featurizer's) shuffle, in the model's
    # Python node, and the shuffle carries no content column
    assert reads and reads[0] < exchange, "\n".join(plan)
    assert "content" not in plan[exchange + 1]
    got = features_by_path(fs.train)
    want = features_by_path(featurize(binary_images(spark, image_folder), model=SMALL,
                                      weights=str(small_weights), cache="none").train)
    assert sorted(got) == sorted(want) and len(got) == 36
    np.testing.assert_array_equal(np.stack([got[p] for p in sorted(got)]),
                                  np.stack([want[p] for p in sorted(got)]))


def test_corrupt_files_are_counted_listed_and_left_out(spark, image_folder_with_corrupt,
                                                       small_weights):
    from sparkdl_magics import featurize
    df = binary_images(spark, image_folder_with_corrupt)
    fs = featurize(df, model=SMALL, weights=str(small_weights))
    reasons = dict(zip(fs.invalid["path"].map(os.path.basename), fs.invalid["reason"]))
    # binaryFile itself skips zero-byte files; the text and truncated ones reach decoding
    assert {"notes.jpg", "truncated.jpg"} <= set(reasons)
    assert reasons["notes.jpg"].startswith("not an image")
    assert fs.stats["images"] == 16 and fs.stats["invalid"] == len(reasons)
    assert fs.train.count() == 16 and fs.train.filter("features is null").count() == 0
    assert "could not be decoded" in fs._repr_html_()


def test_untrained_weights_are_flagged_loudly(spark, image_folder):
    from sparkdl_magics import featurize
    df = binary_images(spark, image_folder / "daisy").limit(3)
    fs = featurize(df, model=SMALL, weights="none", cache="none")
    assert fs.untrained and fs.weights == "none"
    assert "UNTRAINED" in fs._repr_html_()
    assert fs.train.count() == 3


def test_auto_weights_offline_fall_back_and_pin_the_featurizer(spark, image_folder, tmp_path,
                                                              monkeypatch):
    import keras
    from sparkdl_magics import featurize
    from sparkdl_magics.weights import UntrainedFallback
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    df = binary_images(spark, image_folder / "daisy").limit(3)
    with pytest.warns(UntrainedFallback):
        fs = featurize(df, model=SMALL, weights="auto", cache="none")
    assert fs.untrained and fs.weights == "none" and "UNTRAINED" in fs._repr_html_()
    # a saved pipeline must not re-decide: it records the weights actually used
    assert fs.featurizer.getWeights() == "none"


def test_parquet_cache_option_writes_and_reads_back(spark, image_folder, small_weights, tmp_path):
    from sparkdl_magics import featurize
    df = binary_images(spark, image_folder / "roses").limit(4)
    fs = featurize(df, model=SMALL, weights=str(small_weights), cache=str(tmp_path / "feats"))
    assert (tmp_path / "feats" / "train").is_dir()
    assert fs.train.count() == 4 and fs.stats["cache"].endswith("feats")


# --------------------------------------------------------------------------- user models

def _user_model(path: Path):
    import keras
    keras.utils.set_random_seed(3)
    inputs = keras.Input((40, 48, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(16, activation="relu", name="embed")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    model.save(str(path))
    return model


def test_user_keras_model_is_cut_at_the_penultimate_layer(spark_connect, image_folder, tmp_path):
    import keras
    from sparkdl_magics import featurize
    model_path = tmp_path / "mine.keras"
    model = _user_model(model_path)
    df = binary_images(spark_connect, image_folder / "tulips").limit(5)
    fs = featurize(df, model=str(model_path), preprocess="unit")
    assert fs.feature_dim == 16 and fs.model_name == "mine.keras"
    got = features_by_path(fs.train)
    paths = sorted(got)
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(
        local_path(p), target_size=(40, 48), interpolation="bilinear")) for p in paths]) / 255.0
    want = keras.Model(model.inputs, model.get_layer("embed").output).predict(x, verbose=0)
    np.testing.assert_allclose(np.stack([got[p] for p in paths]), want, rtol=1e-4, atol=1e-5)
    # an explicit unpooled layer is average-pooled to a vector
    fs2 = featurize(df, model=str(model_path), layer="conv", cache="none")
    assert fs2.feature_dim == 8 and len(fs2.train.first()["features"]) == 8


def test_user_model_errors_are_one_line_and_name_the_option(tmp_path):
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.weights import resolve_spec
    model_path = tmp_path / "mine.keras"
    _user_model(model_path)
    with pytest.raises(OptionError, match=r"option 'layer'.*'embd'.*did you mean 'embed'"):
        resolve_spec(str(model_path), layer="embd")
    with pytest.raises(OptionError, match="option 'model': no model file"):
        resolve_spec(str(tmp_path / "missing.keras"))
    (tmp_path / "notes.h5").write_text("not a model")
    with pytest.raises(OptionError, match="option 'model': cannot load"):
        resolve_spec(str(tmp_path / "notes.h5"))
    with pytest.raises(OptionError, match="did you mean 'ResNet50'"):
        resolve_spec("resnet5")
    with pytest.raises(OptionError, match="option 'weights': no weights file"):
        resolve_spec("ResNet50", weights=str(tmp_path / "nope.h5"))


def test_lambda_layers_need_explicit_unsafe(tmp_path):
    import keras
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.weights import resolve_spec
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path / "lam.keras"
    keras.Model(inputs, keras.layers.Dense(2)(x)).save(str(path))
    with pytest.raises(OptionError, match="unsafe: true"):
        resolve_spec(str(path))
    resolved = resolve_spec(str(path), unsafe=True)
    assert resolved.feature_dim == 3 and not resolved.spec.safe_mode


# --------------------------------------------------------------------------- persistence

def test_pipeline_with_featurizer_saves_and_reloads_in_a_fresh_session(
        spark, session_pool, image_folder, small_weights, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from sparkdl_magics import inference
    from sparkdl_magics.featurizer import DeepImageFeaturizer
    df = binary_images(spark, image_folder).filter("path rlike '_000[0-3]'")
    pipe = Pipeline(stages=[
        DeepImageFeaturizer(modelName=SMALL, weights=str(small_weights), batchSize=6),
        LogisticRegression(maxIter=5, regParam=0.1)])
    fitted = pipe.fit(df)
    before = {r["path"]: r["prediction"]
              for r in fitted.transform(df).select("path", "prediction").collect()}
    fitted.write().overwrite().save(str(tmp_path / "pipe"))

    fresh = session_pool.get("cluster")  # stops this session, starts another one
    assert fresh is not spark
    inference.clear_cache()
    reloaded = PipelineModel.load(str(tmp_path / "pipe"))
    stage = reloaded.stages[0]
    assert isinstance(stage, DeepImageFeaturizer) and stage.getModelName() == SMALL
    after = {r["path"]: r["prediction"] for r in reloaded.transform(
        binary_images(fresh, image_folder).filter("path rlike '_000[0-3]'"))
        .select("path", "prediction").collect()}
    assert after == before


# --------------------------------------------------------------------------- worker cache

def test_model_is_built_once_per_worker_and_reused_across_batches(small_weights, image_folder):
    """No Spark needed: the cache and batch function the extras reuse."""
    from sparkdl_magics import inference
    from sparkdl_magics.weights import resolve_spec
    spec = resolve_spec(SMALL, weights=str(small_weights)).spec
    inference.clear_cache()
    before = inference.build_count
    files = sorted((image_folder / "daisy").iterdir())[:5]
    items = [f.read_bytes() for f in files] + [b"junk"]
    model = inference.get_model(spec)
    feats, errors = inference.run_decoded(model, items, batch_size=2)
    feats2, _ = inference.run_decoded(inference.get_model(spec), items[:2], batch_size=1)
    assert inference.build_count == before + 1
    assert feats[-1] is None and errors[-1].startswith("not an image")
    assert all(f is not None and f.shape == (576,) for f in feats[:5])
    np.testing.assert_allclose(feats2[0], feats[0], rtol=1e-5, atol=1e-6)
    batch = np.stack([inference.decode_bytes(items[0], model.input_size)])
    np.testing.assert_allclose(inference.predict_images(spec, batch)[0], feats[0], atol=1e-6)
    inference.clear_cache()


def test_any_batch_size_runs_on_one_traced_graph():
    """Keras' predict_on_batch compiles (XLA) once per batch shape; ours traces once."""
    from sparkdl_magics.inference import ModelSpec, build
    from sparkdl_magics.models import get_model_info
    info = get_model_info(SMALL)
    loaded = build(ModelSpec(model=SMALL, input_size=(info.size, info.size)))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(7, info.size, info.size, 3), dtype=np.uint8)
    whole = loaded.predict(images)
    parts = np.concatenate([loaded.predict(images[:3]), loaded.predict(images[3:5]),
                            loaded.predict(images[5:])])
    np.testing.assert_allclose(parts, whole, atol=1e-5)
    (function,) = loaded._functions.values()
    assert function.experimental_get_tracing_count() == 1


def test_featurize_magic_stores_a_featureset_under_the_default_name(ip, spark, image_folder,
                                                                    tmp_path):
    from sparkdl_magics.results import FeatureSet
    weights = write_weights(SMALL, tmp_path)
    ip.user_ns["flowers"] = binary_images(spark, image_folder / "daisy").limit(4)
    ip.run_cell(f"%%featurize flowers\nmodel: {SMALL}\nweights: {weights}\nbatch_size: 2\n")
    fs = ip.user_ns["flowers_features"]
    assert isinstance(fs, FeatureSet) and fs.stats["images"] == 4
    assert fs.model_name == SMALL and fs.stats["batch_size"] == 2
    ip.run_cell(f"%featurize flowers -> feats --model {SMALL} --weights none --cache none")
    assert ip.user_ns["feats"].untrained


def test_featurize_magic_errors_are_one_line(ip, spark, image_folder):
    ip.user_ns.pop("flowers_features", None)
    ip.user_ns["flowers"] = binary_images(spark, image_folder)
    with pytest.raises(UsageError) as err:
        ip.run_cell("%%featurize flowers\nmodel: ResNet5O\n")
    assert "\n" not in str(err.value) and "did you mean 'ResNet50'" in str(err.value)
    with pytest.raises(UsageError, match="batch_size"):
        ip.run_cell("%%featurize flowers\nbatch_size: 0\n")
    with pytest.raises(UsageError, match="no variable named 'nothing'"):
        ip.run_cell("%featurize nothing")
    assert "flowers_features" not in ip.user_ns  # nothing stored when the cell fails


def test_featurize_magic_help_lists_every_option(ip, capsys):
    ip.run_cell("%%featurize?")
    out = capsys.readouterr().out
    for name in ("model", "weights", "layer", "batch_size", "cache", "unsafe", "InceptionV3"):
        assert name in out


def test_featurize_magic_checks_the_augment_option_when_parsing(ip):
    from IPython.core.error import UsageError
    ip.user_ns["some_images"] = object()
    with pytest.raises(UsageError, match=r"option 'augment': unknown operation 'flp'.*did you mean 'flip'"):
        ip.run_cell("%%featurize some_images\naugment: flp, copies=2")


# --------------------------------------------------------------------------- precision

def test_bfloat16_features_match_float32_and_the_precision_param_is_saved(
        spark, image_folder, small_weights, tmp_path):
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.featurizer import DeepImageFeaturizer
    df = binary_images(spark, image_folder / "tulips").limit(6)
    common = dict(modelName=SMALL, weights=str(small_weights), batchSize=4)
    fp32 = features_by_path(DeepImageFeaturizer(**common).transform(df))
    stage = DeepImageFeaturizer(precision="BF16", **common)
    assert stage.getPrecision() == "bfloat16"
    bf16 = features_by_path(stage.transform(df))
    assert set(bf16) == set(fp32) and len(bf16) == 6
    paths = sorted(fp32)
    got, want = np.stack([bf16[p] for p in paths]), np.stack([fp32[p] for p in paths])
    assert not np.array_equal(got, want)  # it really ran differently...
    assert cosines(got, want).min() > 0.99  # ...and agrees with float32
    stage.write().overwrite().save(str(tmp_path / "stage"))
    assert DeepImageFeaturizer.load(str(tmp_path / "stage")).getPrecision() == "bfloat16"
    with pytest.raises(OptionError, match=r"unknown precision 'int8' \(valid: float32, "
                       r"bfloat16, float16, auto\)"):
        DeepImageFeaturizer(precision="int8", **common)


def test_featurize_magic_precision_auto_says_what_ran_and_dlmodels_shows_it(
        ip, spark, image_folder, small_weights):
    from sparkdl_magics.precision import HardwareFacts, choose, cpu_flags
    here = choose(HardwareFacts(cpu_flags()))
    ip.user_ns["flowers"] = binary_images(spark, image_folder / "daisy").limit(4)
    ip.run_cell(f"%%featurize flowers -> auto_feats\nmodel: {SMALL}\nweights: {small_weights}\n"
                "precision: auto\n")
    fs = ip.user_ns["auto_feats"]
    assert fs.stats["precision"] == f"auto -> {here}" and fs.stats["images"] == 4
    table = ip.run_line_magic("dlmodels", SMALL)
    assert table.loc[0, "precision"] == f"auto -> {here}"
    with pytest.raises(UsageError, match=r"option 'precision': got 'bf61'.*valid: float32"):
        ip.run_cell("%%featurize flowers\nprecision: bf61\n")
