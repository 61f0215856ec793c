"""engine: OpenVINO on the workers gives the Keras engine's features, reports itself, and
says in one line when it cannot run.

The model is MobileNetV3Small with trained-like weights (:mod:`trained_like`: BatchNorm
statistics of real inputs, so the features are far from zero). The reference is
computed in the test process: the Keras float32 model the package builds, on the same
files decoded by the same decoder; Spark runs the OpenVINO engine in its workers (the
conversion there: SavedModel export, ``openvino.convert_model``, CPU compile).
"""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest

from helpers import SMALL, binary_images, cosines, features_by_path, image_set_of, local_path
from trained_like import trained_like_weights

pytest.importorskip("openvino", reason="the openvino extra (pip install "
                    "'sparkdl_magics[openvino]') is part of the test extra")

#: OpenVINO float32 vs Keras float32, per image. Measured on the 36 test images: min
#: cosine 1 - 2.3e-12, max |difference| 3.2e-5 with features up to 21.3, i.e. 1.5e-6 of
#: the largest feature (summation order only; 16 photo-like images: 7.6e-6 of 5.5, 1.4e-6).
#: The bound, relative to the largest feature, leaves about 13x room.
FLOAT32_COSINE, FLOAT32_RTOL = 0.99999, 2e-5
#: bfloat16 vs float32, per image: what tests/test_precision.py holds Keras' bfloat16 to
#: on this model (measured for OpenVINO bfloat16: min 0.9988 on the 36 test images).
BFLOAT16_COSINE = 0.99


@pytest.fixture(scope="module")
def weights(weights_dir):
    return trained_like_weights(SMALL, weights_dir)


@pytest.fixture(scope="module")
def reference(image_folder, weights):
    """{file path: Keras float32 features}, computed here without Spark."""
    from sparkdl_magics import imaging, inference
    from sparkdl_magics.weights import resolve_spec
    keras_model = inference.build(resolve_spec(SMALL, str(weights)).spec)
    paths = sorted(str(p) for p in image_folder.rglob("*") if p.is_file())
    images = np.stack([imaging.decode_array(open(p, "rb").read(), keras_model.input_size)
                       for p in paths])
    return dict(zip(paths, keras_model.predict(images)))


def _compare(fs, reference):
    """(per-image cosines, max |difference| / the largest |reference feature|) of a
    FeatureSet's train features against *reference*, matched by path; every reference
    image must be there."""
    got = {local_path(p): v for p, v in features_by_path(fs.train).items()}
    assert sorted(got) == sorted(reference)
    paths = sorted(reference)
    a = np.stack([got[p] for p in paths])
    b = np.stack([reference[p] for p in paths])
    return cosines(a, b), float(np.abs(a - b).max() / np.abs(b).max())


def test_openvino_float32_features_through_spark_equal_the_keras_engines(
        spark, ip, image_folder, weights, reference):
    """The magic's ``engine: openvino`` runs OpenVINO in the workers (the tasks say so)
    and each image's features equal Keras float32's to float rounding."""
    ip.user_ns["flowers"] = image_set_of(binary_images(spark, image_folder))
    ip.run_cell(f"%%featurize flowers -> flowers_ov\nmodel: {SMALL}\nweights: {weights}\n"
                "engine: openvino\nbatch_size: 8")
    fs = ip.user_ns["flowers_ov"]
    assert fs.stats["engine"] == "openvino"
    assert fs.stats["precision"] == "float32"
    assert fs.stats["images"] == len(reference)
    assert "featurize_engine" not in fs.train.columns
    cos, diff = _compare(fs, reference)
    assert min(np.abs(v).max() for v in reference.values()) > 0.1  # features, not zeros
    assert cos.min() >= FLOAT32_COSINE, cos.min()
    assert diff <= FLOAT32_RTOL, diff
    fs.train.unpersist()


def test_openvino_bfloat16_runs_in_bfloat16_where_the_cpu_has_it(spark, image_folder,
                                                                 weights, reference):
    """At bfloat16 OpenVINO runs what the CPU has (read back from the compiled model):
    bfloat16 on CPUs with AVX512-BF16/AMX (then its features differ from float32's by
    bfloat16's rounding, within the cosine Keras' bfloat16 is held to), else float32."""
    from sparkdl_magics.featurizer import featurize
    from sparkdl_magics.precision import HardwareFacts, choose, cpu_flags
    expected = choose(HardwareFacts(cpu_flags()))  # bfloat16 exactly where the CPU has it
    fs = featurize(image_set_of(binary_images(spark, image_folder)), model=SMALL,
                   weights=str(weights), precision="bfloat16", engine="openvino",
                   batch_size=8)
    assert fs.stats["engine"] == "openvino"
    assert fs.stats["precision"] == expected
    cos, diff = _compare(fs, reference)
    assert cos.min() > BFLOAT16_COSINE, cos.min()
    if expected == "bfloat16":
        assert diff > 1e-3, "bfloat16 asked, but the features are float32's"  # 0.024
    fs.train.unpersist()


def test_auto_converts_registry_models_and_falls_back_to_keras(tmp_path, weights,
                                                                monkeypatch):
    """``auto`` on the worker: a registry model runs in OpenVINO where the package
    imports; with the package missing, or for a user model file, it runs Keras. The
    runner's frames say which engine ran; the engines' models are cached apart."""
    import pandas as pd

    from helpers import small_cnn_file
    from imagegen import encode, synthetic_image
    from sparkdl_magics import inference
    from sparkdl_magics.featurizer import _features_frame
    from sparkdl_magics.inference import BatchRunner, ModelSpec, ShippedFile
    from sparkdl_magics.weights import resolve_spec
    batch = pd.Series([encode(synthetic_image(i, i, (60, 40)), "PNG") for i in range(3)])
    spec = dataclasses.replace(resolve_spec(SMALL, str(weights)).spec, engine="auto")
    user = ModelSpec(model_file=ShippedFile("cnn.keras", str(small_cnn_file(tmp_path / "cnn.keras"))),
                     input_size=(32, 32), preprocess="unit", engine="auto")

    def engines_run(spec):
        frame, = BatchRunner(spec, 2, _features_frame, report_engine=True)(iter([batch]))
        assert frame["features"].notna().all()
        return frame["engine"].tolist()

    inference.clear_cache()
    before = inference.build_count
    assert engines_run(spec) == ["openvino"] * 3
    converted = inference.get_model(spec)
    kept = inference.get_model(dataclasses.replace(spec, engine="keras"))
    assert (converted.engine, kept.engine) == ("openvino", "keras")
    assert inference.get_model(spec) is converted and inference.build_count == before + 2
    assert engines_run(user) == ["keras"] * 3
    inference.clear_cache()
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    assert engines_run(spec) == ["keras"] * 3
    inference.clear_cache()


def test_featurize_says_when_auto_ran_keras(spark, tmp_path, image_folder):
    """A user model file under ``auto`` keeps running in Keras, and the result says so."""
    from helpers import small_cnn_file
    from sparkdl_magics.featurizer import featurize
    path = small_cnn_file(tmp_path / "cnn.keras")
    fs = featurize(binary_images(spark, image_folder / "daisy"), model=str(path),
                   preprocess="unit", engine="auto", cache="none")
    assert fs.stats["engine"] == "auto -> keras"
    assert fs.stats["images"] == 12


def test_openvino_says_in_one_line_when_a_model_cannot_be_converted(tmp_path):
    """``engine: openvino`` on a model it cannot convert (a SavedModel folder: no Keras
    model to export) is one line naming the option and the way out."""
    import keras

    from helpers import shapes_cnn
    from sparkdl_magics import inference
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.inference import ModelSpec, ShippedFile
    folder = tmp_path / "saved"
    shapes_cnn(seed=1, size=32).export(str(folder), verbose=False)
    keras.backend.clear_session()
    spec = ModelSpec(model_file=ShippedFile("saved", str(folder)), input_size=(32, 32),
                     preprocess="unit", engine="openvino")
    with pytest.raises(OptionError) as info:
        inference.build(spec)
    message = str(info.value)
    assert message.startswith("option 'engine': saved cannot run in openvino (")
    assert message.endswith("); use engine: keras") and "\n" not in message
    assert inference.build(dataclasses.replace(spec, engine="auto")).engine == "keras"


def test_predict_magic_runs_in_openvino_with_keras_top_k(spark, ip, image_folder,
                                                         top_weights):
    """``%%predict`` with ``engine: openvino``: the tasks run OpenVINO (``stats['engine']``
    read from the rows' tasks) and the top-K classes and probabilities equal plain Keras'."""
    from helpers import assert_top_k_equal, keras_scores
    ip.user_ns["roses"] = binary_images(spark, image_folder / "roses").orderBy("path").limit(4)
    ip.run_cell(f"%%predict roses -> ranked\nmodel: {SMALL}\nweights: {top_weights}\n"
                "top_k: 3\nengine: openvino\nshow: 4\n")
    result = ip.user_ns["ranked"]
    assert result.stats["engine"] == "openvino"
    assert "predict_engine" not in result.df.columns
    rows = result.preview().set_index("path")
    assert len(rows) == 4
    paths = sorted(rows.index)
    assert_top_k_equal([rows.loc[p, "predictions"] for p in paths],
                       keras_scores(top_weights, paths), 3)


def test_predict_engine_choices_are_checked_before_spark_runs(spark, image_folder):
    from sparkdl_magics import predict
    from sparkdl_magics.errors import OptionError
    df = binary_images(spark, image_folder / "roses")
    with pytest.raises(OptionError, match=re.escape(
            "unknown engine 'onnx' (valid: keras, openvino, auto)")):
        predict(df, model=SMALL, weights="none", engine="onnx")
    keras_run = predict(df, model=SMALL, weights="none")
    assert keras_run.stats["engine"] == "keras"


def test_featurize_stream_takes_the_engine(spark, image_folder, weights, reference):
    """``featurize_stream(engine=...)`` (a static frame here: the same transform) runs the
    OpenVINO model: Keras float32's features; a bad engine is one line."""
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.streaming import featurize_stream
    df = binary_images(spark, image_folder)
    with pytest.raises(OptionError, match=re.escape("unknown engine 'onnx'")):
        featurize_stream(df, model=SMALL, weights=str(weights), engine="onnx")
    out = featurize_stream(df, model=SMALL, weights=str(weights), engine="openvino",
                           batch_size=8)
    got = {local_path(p): v for p, v in features_by_path(out).items()}
    assert sorted(got) == sorted(reference)
    cos = cosines(np.stack([got[p] for p in sorted(got)]),
                  np.stack([reference[p] for p in sorted(got)]))
    assert cos.min() >= FLOAT32_COSINE, cos.min()


def test_a_sql_function_runs_in_the_engine_asked_for(spark, image_folder, top_weights):
    """``register_sql_function(engine="openvino")``: the function says so and classifies as
    the Keras one does."""
    from sparkdl_magics import register_sql_function
    df = binary_images(spark, image_folder / "daisy").orderBy("path").limit(4)
    df.createOrReplaceTempView("engine_images")
    labels = {}
    for name, engine in (("classify_keras", None), ("classify_ov", "openvino")):
        fn = register_sql_function(name, model=SMALL, weights=str(top_weights), engine=engine,
                                   spark=spark)
        assert fn.engine == (engine or "keras")
        labels[name] = {r["path"]: r["label"] for r in spark.sql(
            f"SELECT path, {name}(content) AS label FROM engine_images").collect()}
    assert len(labels["classify_ov"]) == 4
    assert labels["classify_ov"] == labels["classify_keras"]


MISSING_SCRIPT = """
import sys
sys.modules["openvino"] = None  # as if the package were not installed
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "sparkdl_magics")
shell.user_ns["flowers"] = object()
shell.run_cell("%%featurize flowers\\nengine: openvino\\n")
from sparkdl_magics.errors import OptionError
from sparkdl_magics.featurizer import featurize
try:
    featurize(None, engine="openvino")
except OptionError as exc:
    print("API:", exc)
print("spark imported:", "pyspark.sql.session" in sys.modules
      and __import__("pyspark").sql.SparkSession.getActiveSession() is not None)
"""


def test_openvino_missing_is_one_line_before_any_spark_work():
    """Where ``import openvino`` fails, ``engine: openvino`` is refused in one line, by
    the magic when the cell is parsed and by ``featurize`` before it touches the
    images or Spark (a fresh process: no session starts)."""
    from sparkdl_magics.engines import NOT_INSTALLED
    assert NOT_INSTALLED == ("option 'engine': openvino is not installed "
                             "(pip install 'sparkdl_magics[openvino]')")
    run = subprocess.run([sys.executable, "-c", MISSING_SCRIPT], capture_output=True,
                         text=True, timeout=300)
    out = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)
    lines = [line for line in out.splitlines() if "openvino" in line]
    assert run.returncode == 0, out
    assert "Traceback" not in out
    assert lines == [f"MagicError: %%featurize: {NOT_INSTALLED}", f"API: {NOT_INSTALLED}"], out
    assert "spark imported: False" in out


def test_bad_engine_values_name_the_valid_choices(ip):
    from IPython.core.error import UsageError

    from sparkdl_magics.engines import check
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.featurizer import DeepImageFeaturizer, featurize
    ip.user_ns["flowers"] = object()
    with pytest.raises(UsageError, match=re.escape(
            "option 'engine': got 'foo' (valid: keras, openvino, auto)")):
        ip.run_cell("%%featurize flowers\nengine: foo")
    for call in (lambda: featurize(None, engine="tensorrt"),
                 lambda: DeepImageFeaturizer(engine="tensorrt")):
        with pytest.raises(OptionError, match=re.escape(
                "unknown engine 'tensorrt' (valid: keras, openvino, auto)")):
            call()
    assert check(" OpenVINO ") == "openvino"
    with pytest.raises(OptionError, match="openvino runs float32 or bfloat16 only"):
        featurize(None, engine="openvino", precision="float16")


def test_a_saved_featurizer_keeps_its_engine(spark, tmp_path):
    """The engine is a Param of the stage: a saved pipeline loads with the same engine;
    a stage that never set one (or saved before there was one) runs Keras."""
    from sparkdl_magics.featurizer import DeepImageFeaturizer
    DeepImageFeaturizer(modelName=SMALL, engine="auto").save(str(tmp_path / "stage"))
    assert DeepImageFeaturizer.load(str(tmp_path / "stage")).getEngine() == "auto"
    assert DeepImageFeaturizer(modelName=SMALL).getEngine() == "keras"
