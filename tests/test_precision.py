"""precision: what ``auto`` picks for given hardware, and that a reduced precision really
runs the convolutions in that type (the traced graph's ops), with float32 features out.

Real Keras models throughout: a small functional CNN with BatchNorm built here, a saved
``.keras`` file, a subclassed model, and MobileNetV3Small and ResNet50 from
``keras.applications``. The registry models get trained-like weights
(:mod:`trained_like`: BatchNorm statistics from real inputs, so folding them into the
convolutions is exercised); bounds on features, accuracy and heatmaps are checked there.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from helpers import SMALL, cosines
from trained_like import make_trained_like, photo_like_images, trained_like_weights

CONV_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2")


def _cnn(keras, seed=3):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="folded_conv")(inputs)
    x = keras.layers.BatchNormalization(name="folded_bn")(x)  # folded into the conv
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.BatchNormalization(name="kept_bn")(x)  # after an activation: kept
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    for name in ("folded_bn", "kept_bn"):  # statistics that change the features
        norm = model.get_layer(name)
        norm.set_weights([rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else
                          rng.normal(0, 0.2, w.shape) for i, w in enumerate(norm.get_weights())])
    return model


def _compute_types(loaded, example):
    """{op type: {dtype}} of the matmul/conv ops in the graph the runner traces."""
    import tensorflow as tf

    from sparkdl_magics.inference import batch_function
    function = batch_function(loaded.model, example)
    graph = function.get_concrete_function().graph
    types = {}
    for op in graph.get_operations():
        if op.type in CONV_OPS:
            types.setdefault(op.type, set()).add(tf.as_dtype(op.get_attr("T")).name)
    return types


def _subclassed_net(keras):
    @keras.saving.register_keras_serializable(package="sparkdl_test")
    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(4, 3)
            self.pool = keras.layers.GlobalAveragePooling2D()

        def call(self, x):
            return self.pool(self.conv(x))

    net = Net()
    net(np.zeros((1, 32, 32, 3), np.float32))
    return net


# --------------------------------------------------------------------------- auto, pure

@pytest.mark.parametrize("cpu, gpus, want", [
    ({"avx2", "avx512f", "avx512_bf16"}, (), "bfloat16"),   # Zen 4 / Cooper Lake
    ({"avx2", "amx_bf16", "amx_tile"}, (), "bfloat16"),     # Sapphire Rapids (AMX)
    ({"avx2", "avx512f"}, (), "float32"),                   # no native bf16: emulated is slower
    (set(), (), "float32"),                                 # unknown CPU (no /proc/cpuinfo)
    ({"avx2"}, ((8, 0),), "bfloat16"),                      # A100
    ({"avx2"}, ((9, 0), (8, 6)), "bfloat16"),               # H100 + A10
    ({"avx512_bf16"}, ((7, 5),), "float16"),                # T4: the GPU decides, not the CPU
    ({"avx2"}, ((8, 0), (7, 0)), "float16"),                # mixed: what every GPU runs
])
def test_auto_picks_the_fastest_native_type_for_the_hardware(cpu, gpus, want):
    from sparkdl_magics.precision import HardwareFacts, choose, resolve
    facts = HardwareFacts(frozenset(cpu), gpus)
    assert choose(facts) == want
    assert resolve("auto", facts) == want
    assert resolve("float16", facts) == "float16"  # an explicit choice is kept


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    from sparkdl_magics.precision import cpu_flags
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                       "flags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "sse", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_precision_names_are_checked_in_one_line():
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.precision import check
    assert check("BF16") == "bfloat16" and check(" float16 ") == "float16"
    assert check("Auto") == "auto" and check("fp32") == "float32"
    with pytest.raises(OptionError, match=r"did you mean 'bfloat16'.*valid: float32, "
                       r"bfloat16, float16, auto") as err:
        check("bfloat61")
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- applying it

@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_reduced_precision_runs_convolutions_in_that_type_with_float32_out(precision):
    import keras

    from sparkdl_magics.inference import LoadedModel
    from sparkdl_magics.precision import apply
    model = _cnn(keras)
    x = np.random.default_rng(0).uniform(0, 1, (6, 32, 32, 3)).astype(np.float32)
    reduced, ran = apply(model, precision)
    assert ran == precision and reduced is not model
    policy = {layer.name: layer.dtype_policy.name for layer in reduced.layers}
    kinds = {layer.name: type(layer).__name__ for layer in reduced.layers}
    assert policy["folded_conv"] == precision and kinds["folded_bn"] == "Identity"
    assert kinds["kept_bn"] == "BatchNormalization" and policy["kept_bn"] == "float32"
    assert policy[reduced.layers[-1].name] == "float32"  # the output layer (probabilities)
    assert _compute_types(LoadedModel(None, reduced, lambda v: v), x) == \
        {"Conv2D": {precision}, "MatMul": {"float32"}}
    assert _compute_types(LoadedModel(None, model, lambda v: v), x) == \
        {"Conv2D": {"float32"}, "MatMul": {"float32"}}
    want = model.predict(x, verbose=0)
    got = LoadedModel(None, reduced, lambda v: v).run(x)
    assert got.dtype == np.float32
    assert cosines(got, want).min() > 0.999
    assert apply(model, "float32") == (model, "float32")


def test_a_registry_model_runs_at_the_spec_precision_and_is_cached_per_precision(weights_dir):
    from sparkdl_magics import inference
    from sparkdl_magics.models import get_model_info
    from sparkdl_magics.weights import resolve_spec
    inference.clear_cache()
    spec = resolve_spec(SMALL, str(trained_like_weights(SMALL, weights_dir))).spec
    bf16 = dataclasses.replace(spec, precision="bfloat16")
    assert spec.precision == "float32" and bf16 != spec and hash(bf16) != hash(spec)
    size = get_model_info(SMALL).size
    images = np.random.default_rng(1).integers(0, 255, (4, size, size, 3), dtype=np.uint8)
    before = inference.build_count
    fp32_model = inference.get_model(spec)
    bf16_model = inference.get_model(bf16)
    assert inference.get_model(spec) is fp32_model and inference.get_model(bf16) is bf16_model
    assert inference.build_count == before + 2
    assert (fp32_model.precision, bf16_model.precision) == ("float32", "bfloat16")
    types = _compute_types(bf16_model, bf16_model.preprocess(images.astype(np.float32)))
    assert types["Conv2D"] == {"bfloat16"} and types["DepthwiseConv2dNative"] == {"bfloat16"}
    want, got = fp32_model.predict(images), bf16_model.predict(images)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert cosines(got, want).min() > 0.99
    inference.clear_cache()


def test_auto_on_this_machine_is_what_its_cpu_flags_say(weights_dir):
    from sparkdl_magics import inference
    from sparkdl_magics.precision import HardwareFacts, choose, cpu_flags
    from sparkdl_magics.weights import resolve_spec
    from helpers import write_weights
    spec = dataclasses.replace(resolve_spec(SMALL, str(write_weights(SMALL, weights_dir))).spec,
                               precision="auto")
    loaded = inference.build(spec)
    assert loaded.precision == choose(HardwareFacts(cpu_flags()))


def test_user_model_files_run_at_reduced_precision_and_subclassed_ones_say_they_cannot(tmp_path):
    import keras

    from sparkdl_magics import inference
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.inference import ModelSpec, ShippedFile
    path = tmp_path / "cnn.keras"
    _cnn(keras, seed=5).save(str(path))
    spec = ModelSpec(model_file=ShippedFile("cnn.keras", str(path)), input_size=(32, 32),
                     preprocess="unit")
    images = np.random.default_rng(2).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    fp32 = inference.build(spec)
    bf16 = inference.build(dataclasses.replace(spec, precision="bfloat16"))
    assert bf16.precision == "bfloat16"
    assert _compute_types(bf16, images.astype(np.float32))["Conv2D"] == {"bfloat16"}
    assert cosines(bf16.predict(images), fp32.predict(images)).min() > 0.999

    sub = tmp_path / "sub.keras"
    _subclassed_net(keras).save(str(sub))
    sub_spec = ModelSpec(model_file=ShippedFile("sub.keras", str(sub)), input_size=(32, 32),
                         preprocess="unit", precision="bfloat16")
    with pytest.raises(OptionError, match=r"option 'precision': sub.keras cannot run at "
                       "bfloat16") as err:
        inference.build(sub_spec)
    assert "\n" not in str(err.value)
    # auto takes what the model can do: float32 here, said so
    assert inference.build(dataclasses.replace(sub_spec, precision="auto")).precision == "float32"


def test_a_savedmodel_folder_at_reduced_precision_is_refused_on_the_driver():
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.inference import ModelSpec, ShippedFile
    from sparkdl_magics.precision import with_precision
    from sparkdl_magics.weights import Resolved
    resolved = Resolved(ModelSpec(model_file=ShippedFile("saved.zip", "/nowhere/saved.zip",
                                                         archive=True)), "saved", "none", 8)
    assert with_precision(resolved, "auto").spec.precision == "auto"
    assert resolved.spec.precision == "float32"  # a copy: the resolved choice is shared
    with pytest.raises(OptionError, match=r"SavedModel folder runs at float32 only \(got "
                       r"bfloat16; valid here: float32, auto\)"):
        with_precision(resolved, "bf16")


# --------------------------------------------------------------------------- trained-like weights

def _norm_inputs(model, x):
    """{norm name: its input at inference} for every BatchNormalization of *model*."""
    import keras
    norms = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    outs = keras.Model(model.inputs, [n.input for n in norms]).predict(x, verbose=0)
    return {n.name: np.asarray(o, np.float64) for n, o in zip(norms, outs)}


def test_trained_like_statistics_are_each_norms_real_inputs_and_seeded():
    """Every BatchNorm's moving mean/variance are its own input's statistics on the
    calibration images, with the earlier norms already set (checked here at inference,
    an independent pass); gamma/beta are not the identity; a seed repeats them."""
    import keras
    images = photo_like_images(4, 32, seed=1)
    model = make_trained_like(_cnn(keras), lambda v: v / 255.0, seed=4, images=images)
    for name, value in _norm_inputs(model, images / 255.0).items():
        mean, variance, gamma, beta = (
            np.asarray(model.get_layer(name).moving_mean),
            np.asarray(model.get_layer(name).moving_variance),
            np.asarray(model.get_layer(name).gamma), np.asarray(model.get_layer(name).beta))
        np.testing.assert_allclose(mean, value.mean(axis=(0, 1, 2)), rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(variance, value.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-4)
        assert np.abs(gamma - 1).max() > 0.1 and np.abs(beta).max() > 0.1
    again = make_trained_like(_cnn(keras), lambda v: v / 255.0, seed=4, images=images)
    other = make_trained_like(_cnn(keras), lambda v: v / 255.0, seed=5, images=images)
    for a, b, c in zip(model.get_weights(), again.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(model.get_weights(), other.get_weights()))


def _pair(name, weights_dir):
    """(float32, bfloat16) LoadedModels of registry *name* with trained-like weights."""
    from sparkdl_magics import inference
    from sparkdl_magics.weights import resolve_spec
    spec = resolve_spec(name, str(trained_like_weights(name, weights_dir))).spec
    return (inference.build(spec),
            inference.build(dataclasses.replace(spec, precision="bfloat16")))


def test_resnet50_with_trained_like_statistics_folds_them_and_keeps_its_features(weights_dir):
    """ResNet50's 53 conv -> BatchNorm pairs are folded at bfloat16, with statistics far
    from the identity; each image's features stay within cosine 0.995 of float32's
    (measured: min 0.9972, median 0.998 on 16 images; identity statistics: 0.999995)."""
    import keras
    fp32, bf16 = _pair("ResNet50", weights_dir)
    norms = [layer for layer in fp32.model.layers
             if type(layer).__name__ == "BatchNormalization"]
    folded = [layer for layer in bf16.model.layers if type(layer).__name__ == "Identity"]
    assert len(folded) == len(norms) == 53
    variances = np.concatenate([np.asarray(n.moving_variance) for n in norms])
    assert np.percentile(np.abs(np.log(variances + 1e-3)), 75) > 1.0  # not 1: real statistics
    assert max(float(np.asarray(n.moving_variance).max()) for n in norms) > 100  # conv1
    images = photo_like_images(8, 224, seed=99)  # not the calibration images
    cos = cosines(bf16.predict(images), fp32.predict(images))
    assert cos.min() > 0.995, cos
    keras.backend.clear_session()


def test_digits_accuracy_holds_at_bfloat16_on_trained_like_features(tmp_path, weights_dir):
    """A logistic regression on the digits' MobileNetV3Small features: bfloat16 features
    classify about as well as float32's (same split; within 10 points) and mostly the
    same way (4 answers in 5 or more)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sparkdl_magics import imaging
    from sparkdl_magics.datasets import write_digits
    write_digits(tmp_path, per_class=30, size=64, seed=0)
    paths = sorted(tmp_path.rglob("*.png"))
    labels = np.array([p.parent.name for p in paths])
    fp32, bf16 = _pair(SMALL, weights_dir)
    images = np.stack([imaging.decode_array(p.read_bytes(), fp32.input_size) for p in paths])
    train, test = train_test_split(np.arange(len(paths)), test_size=0.3, stratify=labels,
                                   random_state=0)
    predicted, accuracy = {}, {}
    for name, loaded in (("float32", fp32), ("bfloat16", bf16)):
        x = loaded.predict(images)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        clf.fit(x[train], labels[train])
        predicted[name] = clf.predict(x[test])
        accuracy[name] = float(np.mean(predicted[name] == labels[test]))
    agree = float(np.mean(predicted["bfloat16"] == predicted["float32"]))
    assert accuracy["float32"] > 0.5, accuracy  # features that classify: a real comparison
    # 90 test images: one image is 1.1 points; a broken bfloat16 (BatchNorm run in it:
    # cosine 0.38) loses far more
    assert accuracy["bfloat16"] >= accuracy["float32"] - 0.1, (accuracy, agree)
    assert agree >= 0.8, (accuracy, agree)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_heatmaps_at_bfloat16_match_float32_on_trained_like_weights(method, weights_dir):
    """The heatmap model the workers derive from the cached feature model (as %%explain
    runs it): at bfloat16 each image's class map stays within cosine 0.98 of float32's
    and peaks in the same cell for three images in four or more (measured: cosine min
    0.988 over 12 images, cam and gradcam)."""
    from sparkdl_magics.cam import linear_head
    fp32, bf16 = _pair(SMALL, weights_dir)
    dim = fp32.predict(photo_like_images(1, 224, seed=3)).shape[1]
    weights = np.random.default_rng(0).normal(size=(3, dim))
    images = photo_like_images(12, 224, seed=7).astype(np.float32)
    rows = np.concatenate([fp32.preprocess(images).reshape(len(images), -1),
                           np.eye(3)[np.arange(len(images)) % 3]], axis=1).astype(np.float32)
    maps = {name: linear_head(method, weights)(base).run(rows)
            for name, base in (("float32", fp32), ("bfloat16", bf16))}
    a, b = (maps[n].reshape(len(images), -1) for n in ("float32", "bfloat16"))
    assert a.shape == b.shape and a.shape[1] > 1
    assert np.abs(a).max() > 0  # maps with something in them
    cos = cosines(a, b)
    assert cos.min() > 0.98, cos
    assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.75


# --------------------------------------------------------------------------- what is reported

def test_each_batch_says_the_precision_its_model_really_ran_in(tmp_path):
    """The runner's frames carry what the task's model runs in: ``auto`` on a subclassed
    model (it cannot be cloned at a reduced type) says float32, on a functional one what
    this CPU decides."""
    import keras
    import pandas as pd

    from imagegen import encode, synthetic_image
    from sparkdl_magics import inference
    from sparkdl_magics.featurizer import _features_frame
    from sparkdl_magics.inference import BatchRunner, ModelSpec, ShippedFile
    from sparkdl_magics.precision import HardwareFacts, choose, cpu_flags
    sub, cnn = tmp_path / "sub.keras", tmp_path / "cnn.keras"
    _subclassed_net(keras).save(str(sub))
    _cnn(keras).save(str(cnn))
    batch = pd.Series([encode(synthetic_image(i, i, (40, 30)), "PNG") for i in range(3)])
    inference.clear_cache()
    for path, want in ((sub, "float32"), (cnn, choose(HardwareFacts(cpu_flags())))):
        spec = ModelSpec(model_file=ShippedFile(path.name, str(path)), input_size=(32, 32),
                         preprocess="unit", precision="auto")
        frame, = BatchRunner(spec, 2, _features_frame, report_precision=True)(iter([batch]))
        assert frame["precision"].tolist() == [want] * 3, path.name
        assert frame["features"].notna().all()
        frame, = BatchRunner(spec, 2, _features_frame)(iter([batch]))
        assert "precision" not in frame.columns
    inference.clear_cache()


def test_featurize_reports_the_precision_its_tasks_ran_in(spark, tmp_path, small_weights):
    _check_reported_precision(spark, tmp_path, small_weights)


def test_featurize_reports_the_precision_its_tasks_ran_in_over_connect(spark_connect, tmp_path,
                                                                       small_weights):
    _check_reported_precision(spark_connect, tmp_path, small_weights)


def _check_reported_precision(spark, tmp_path, small_weights):
    """``stats['precision']`` comes from the job that made the features: a model that
    cannot run at a reduced type (a SavedModel folder; ``auto``) says float32 even where
    the workers' hardware would pick bfloat16; a named model at bfloat16 says bfloat16.
    The side column it travels in is gone from the features. (Through the session
    fixtures, so the run's one pooled session switches mode in its planned order.)"""
    import keras

    from helpers import binary_images
    from imagegen import write_labelled_folder
    from sparkdl_magics.featurizer import featurize
    write_labelled_folder(tmp_path / "images", ["daisy", "roses"], 3)
    images = binary_images(spark, tmp_path / "images")
    saved = tmp_path / "saved"
    _cnn(keras, seed=8).export(str(saved), verbose=False)
    fs = featurize(images, model=str(saved), preprocess="unit", precision="auto",
                   cache="none")
    assert fs.stats["precision"] == "auto -> float32"
    assert fs.stats["images"] == 6
    fs = featurize(images, model=SMALL, weights=str(small_weights), precision="bf16")
    assert fs.stats["precision"] == "bfloat16"
    assert "featurize_precision" not in fs.train.columns
    assert fs.train.count() == 6
    fs.train.unpersist()


def test_predict_reports_the_precision_its_tasks_ran_in(spark, tmp_path):
    _check_predicted_precision(spark, tmp_path)


def test_predict_reports_the_precision_its_tasks_ran_in_over_connect(spark_connect, tmp_path):
    _check_predicted_precision(spark_connect, tmp_path)


def _check_predicted_precision(spark, tmp_path):
    """``predict``'s ``stats['precision']`` comes from the tasks that computed its rows
    (``preview`` and ``to_pandas`` read it), not from a job of its own: a subclassed
    Keras model (exported as a SavedModel folder, the form in which one reaches the
    workers) cannot be cloned at a reduced type, so ``auto`` runs it in float32 inside
    the tasks and says float32 where this CPU would pick bfloat16; a functional model
    says what the CPU picks. Before any row is computed the request is all it says.
    ``%dlmodels`` (``last_run``) says the same; the side column is not in the result."""
    import keras

    from helpers import binary_images
    from imagegen import write_labelled_folder
    from sparkdl_magics.precision import HardwareFacts, choose, cpu_flags, last_run
    from sparkdl_magics.prediction import predict
    write_labelled_folder(tmp_path / "images", ["daisy"], 3)
    images = binary_images(spark, tmp_path / "images")
    saved, cnn = tmp_path / "saved", tmp_path / "cnn.keras"
    _subclassed_net(keras).export(str(saved), verbose=False)
    _cnn(keras, seed=6).save(str(cnn))

    result = predict(images, model=str(saved), preprocess="unit", precision="auto", top_k=2)
    assert result.stats["precision"] == "auto"  # nothing has run yet
    rows = result.preview(3)
    assert len(rows) == 3 and rows["predict_error"].isna().all()
    assert result.stats["precision"] == "auto -> float32"
    assert last_run[result.model_name] == "auto -> float32"
    assert "predict_precision" not in set(result.df.columns) | set(rows.columns)

    here = choose(HardwareFacts(cpu_flags()))
    result = predict(images, model=str(cnn), preprocess="unit", precision="auto", top_k=2)
    frame = result.to_pandas()
    assert len(frame) == 3 and "predict_precision" not in frame.columns
    assert result.stats["precision"] == f"auto -> {here}"
    assert last_run[result.model_name] == f"auto -> {here}"
