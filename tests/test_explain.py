"""explain / %%explain: class heatmaps of a fitted model's predictions.

The backbone is a small CNN this module trains (seconds, plain Keras) on shapes pasted
at random places on noise, saved as a user model file and given to featurize: an
untrained backbone does not localise, and no ImageNet weights can be downloaded here.
The Spark tests then featurize *other* images of the same kind with it, fit a logistic
regression on the frozen features, and check where the heatmaps point; and fine-tune
its untrained twin on Spark from scratch (every layer and a new head) and check where
Grad-CAM through the fine-tuned network points.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import (BOX_MARGIN, box_fraction, pointing, resolved_path, shapes_cnn,
                     train_shapes_backbone)
from imagegen import write_shape_folder

pytest.importorskip("keras")

SIZE = 64
#: Shown to every session test: heatmaps of the same two images, by mode.
_seen: dict = {}


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A 4-conv CNN trained on its own set of shape images, saved as a .keras file,
    plus its untrained twin (same architecture, random weights) for reference."""
    import keras
    folder = tmp_path_factory.mktemp("backbone")
    trained = train_shapes_backbone(folder)
    untrained = folder / "shapes_cnn_untrained.keras"
    shapes_cnn(seed=1).save(str(untrained))
    keras.backend.clear_session()
    return {"trained": trained, "untrained": untrained}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Images for Spark (other seeds than the backbone's), and each object's box."""
    root = tmp_path_factory.mktemp("shapes")
    return root, write_shape_folder(root, per_class=24, seed=1)


def _fit(spark, root, model_file, images=None):
    from sparkdl_magics import featurize, fit, load_images
    images = images or load_images(str(root), split=0.5, seed=3, spark=spark)
    features = featurize(images, model=str(model_file), preprocess="tf", batch_size=16)
    # standardization off: with it, near-constant (background) channels get large weights
    return fit(features, maxIter=50, regParam=0.01, standardization=False)


# --------------------------------------------------------------------------- localisation

@pytest.mark.slow
def test_cam_peak_falls_on_the_object_with_a_trained_backbone(spark, backbone, shapes, tmp_path,
                                                             ip):
    from sparkdl_magics import explain
    root, boxes = shapes
    model = _fit(spark, root, backbone["trained"])
    n_test = model.features.test.count()
    start = time.time()
    result = explain(model, n=n_test)
    took = time.time() - start
    assert result.method == "cam" and len(result) == n_test
    # mistakes first, then the rest
    correct = list(result.rows["correct"])
    assert correct == sorted(correct)
    hit, counted, accuracy = pointing(result, boxes)
    chance = box_fraction(boxes, SIZE)

    weak = _fit(spark, root, backbone["untrained"], model.features.images)
    untrained = explain(weak, n=n_test)
    base_hit, base_counted, base_accuracy = pointing(untrained, boxes)
    print(f"\nCAM peak inside the object's box (+{BOX_MARGIN} px): trained backbone "
          f"{hit:.0%} of {counted} correct answers (accuracy {accuracy:.0%}); "
          f"random point {chance:.0%}; untrained backbone {base_hit:.0%} of "
          f"{base_counted} (accuracy {base_accuracy:.0%}); explain took {took:.1f} s")
    assert counted >= n_test // 2
    assert hit >= 0.8
    assert hit > chance + 0.3
    # the untrained backbone makes mistakes: they come first, most confident first
    wrong = untrained.rows[untrained.rows["correct"] == False]  # noqa: E712
    assert len(wrong) and list(wrong.index) == list(range(len(wrong)))
    assert list(wrong["probability"]) == sorted(wrong["probability"], reverse=True)

    # %%evaluate's mistakes gallery gets the same overlays behind an "explain" toggle
    ip.user_ns["weak"] = weak
    ip.run_cell("%%evaluate weak -> ev\ntop_errors: 3\nexplain: true")
    errors = ip.user_ns["ev"].errors
    by_path = dict(zip(untrained.rows["path"], untrained.rows["overlay"]))
    assert len(errors) == 3 and list(errors["overlay"]) == [by_path[p] for p in errors["path"]]
    assert "<details><summary>explain" in ip.user_ns["ev"]._repr_html_()

    # every map is in [0, 1], at the image's size on request, with an overlay to show
    for i in range(len(result)):
        heat = result.heatmap(i)
        assert heat.shape == (SIZE, SIZE) and 0.0 <= heat.min() and heat.max() <= 1.0
        assert result.maps[i].shape == (16, 16)
    assert all(png.startswith(b"\x89PNG") for png in result.rows["overlay"])

    # the magic: same call, the true class's map, a split by name; the grid renders
    ip.user_ns.update(clf=model, shapes=model.features.images)
    ip.run_cell("%%explain clf -> heat\nimages: shapes.test\nn: 4\nclass: true\nalpha: 0.3")
    heat = ip.user_ns["heat"]
    assert list(heat.rows["path"]) == list(result.rows["path"][:4])
    assert list(heat.rows["explained"]) == list(heat.rows["true"]) and heat.alpha == 0.3
    page = heat._repr_html_()
    assert page.count("<img") == 8 and "class shown: true" in page
    many = result._repr_html_()
    assert many.count("<img") == 2 * n_test
    assert many.count("solid #c00") == int((~result.rows["correct"].astype(bool)).sum())
    _seen["model"] = str(tmp_path / "fitted")
    model.save(_seen["model"])

    # CAM for a classifier without class weights is refused in one line, before any job
    from sparkdl_magics import fit
    from sparkdl_magics.errors import OptionError
    forest = fit(model.features, "random_forest", numTrees=3)
    with pytest.raises(OptionError, match="needs a linear classifier") as info:
        explain(forest, method="cam")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- fine-tuned

def _shapes_with_mistakes(folder: Path, per_class: int):
    """A shapes folder of its own plus a few images filed under another shape (sure
    mistakes, for the mistakes-first order and %%evaluate's explain toggle); each file's
    box."""
    boxes = write_shape_folder(folder, per_class=per_class, seed=11)
    for i, (shape, into) in enumerate((("disc", "square"), ("square", "cross")) * 3):
        source = sorted((folder / shape).glob("*.png"))[i]
        target = folder / into / f"filed_wrong_{i}.png"
        shutil.copy(source, target)
        boxes[str(target.resolve())] = boxes[str(source.resolve())]
    return boxes


def _keras_gradcam(model_file: str, image: np.ndarray, k: int) -> np.ndarray:
    """Grad-CAM of class *k* written out by hand on the fine-tuned file: the nested
    backbone's last conv maps, the logit as the head computes it, plain TensorFlow."""
    import keras
    import tensorflow as tf
    net = keras.saving.load_model(model_file, compile=False)
    backbone = next(lay for lay in net.layers if isinstance(lay, keras.Model))
    probe = keras.Model(backbone.inputs, [backbone.get_layer("last_conv").output,
                                          backbone.output])
    head = net.layers[net.layers.index(backbone) + 1:]
    with tf.GradientTape() as tape:
        maps, h = probe([image[None]])
        for layer in head[:-1]:
            h = layer(h, training=False)
        logit = (tf.matmul(h, head[-1].kernel) + head[-1].bias)[0, k]
    grads = tape.gradient(logit, maps)[0].numpy()
    heat = np.maximum(np.einsum("hwc,c->hw", maps[0].numpy(), grads.mean(axis=(0, 1))), 0)
    return heat / heat.max()


@pytest.mark.slow
def test_gradcam_of_a_fine_tuned_model_points_at_the_object(spark, backbone, tmp_path, ip):
    """The untrained twin of the backbone file fine-tuned on Spark from scratch (every
    layer, a new head, no warm-up) on shape images, then explained by Grad-CAM through
    the whole network on the executors: where it points was learnt by the fine-tuning
    alone. Fine-tuning repeats with the same seed (same weights, same mistakes), so
    the seed below gives the same network every run on a machine; other seeds may
    learn one shape as "neither of the others", whose map is flat."""
    import keras

    from sparkdl_magics import explain, finetune, load_images
    from sparkdl_magics.errors import OptionError
    boxes = _shapes_with_mistakes(tmp_path / "shapes", per_class=240)
    images = load_images(str(tmp_path / "shapes"), split=0.5, seed=3, spark=spark)
    start = time.time()
    model = finetune(images, model=str(backbone["untrained"]), preprocess="tf",
                     unfreeze="all", epochs=10, batch_size=16, learning_rate=[0.003, 0.003],
                     head_epochs=0, workers=1, seed=7)
    trained = time.time() - start
    n = 40
    start = time.time()
    result = explain(model, n=n)
    took = time.time() - start
    assert result.method == "gradcam" and len(result) == n
    correct = list(result.rows["correct"])
    assert correct == sorted(correct) and not correct[0]  # the mistakes first
    hit, counted, _ = pointing(result, boxes)
    print(f"\nfine-tuned localisation: {hit:.2f} of {counted} correct (random point "
          f"{box_fraction(boxes, SIZE):.2f}); fine-tuned from scratch in {trained:.0f} s "
          f"(final training accuracy {model.history['accuracy'].iloc[-1]:.2f}), {n} "
          f"explained in {took:.1f} s")
    assert counted >= n // 2
    assert hit >= 0.8 and hit > box_fraction(boxes, SIZE) + 0.3

    # the maps are Grad-CAM through the fine-tuned file, computed independently
    for i in range(3):
        path = resolved_path(result.rows["path"].iloc[i])
        x = np.asarray(keras.utils.load_img(path), "float32") / 127.5 - 1.0
        k = model.classes.index(result.rows["explained"].iloc[i])
        np.testing.assert_allclose(result.maps[i], _keras_gradcam(model.model_file, x, k),
                                   atol=1e-4)
    keras.backend.clear_session()

    # the magic, the mistakes gallery's toggle, and cam refused in one line
    ip.user_ns["ft"] = model
    ip.run_cell("%%explain ft -> heat\nn: 3")
    heat = ip.user_ns["heat"]
    assert heat.method == "gradcam" and list(heat.rows["path"]) == list(result.rows["path"][:3])
    ip.run_cell("%%evaluate ft -> ev\ntop_errors: 2\nexplain: true")
    errors = ip.user_ns["ev"].errors
    by_path = dict(zip(result.rows["path"], result.rows["overlay"]))
    assert len(errors) == 2 and list(errors["overlay"]) == [by_path[p] for p in errors["path"]]
    with pytest.raises(OptionError, match="cam needs a linear classifier") as info:
        explain(model, n=1, method="cam")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- the maps layer

def test_cam_finds_the_last_4d_layer_before_the_pooling(backbone, tmp_path):
    import keras

    from sparkdl_magics.cam import find_maps_layer
    from sparkdl_magics.inference import load_user_model
    from sparkdl_magics.weights import inspect_user_model
    path = str(backbone["trained"])
    _, _, cut = inspect_user_model(path, None, True)
    assert cut == "pool"
    assert find_maps_layer(load_user_model(path, cut)) == ("last_conv", True)
    # cut at an earlier conv layer: that layer is the maps (the featurizer averages it)
    assert find_maps_layer(load_user_model(path, "conv3")) == (None, True)
    # features after a Dense layer are not an average of the maps: CAM is not exact
    net = keras.saving.load_model(path, compile=False)
    embed = keras.layers.Dense(8, name="embed")(net.get_layer("pool").output)
    other = tmp_path / "embed.keras"
    keras.Model(net.inputs, keras.layers.Dense(3)(embed)).save(str(other))
    assert find_maps_layer(load_user_model(str(other), "embed")) == ("last_conv", False)

    # a backbone nested as one layer (as fine-tuning builds its network): its maps by path
    from sparkdl_magics.cam import maps_model
    from sparkdl_magics.finetuning.network import NetworkSpec, build
    tuned = build(NetworkSpec(num_classes=3, input_size=(SIZE, SIZE), model_path=path,
                              layer=cut, hidden=(8,))).model
    inner = tuned.layers[1].name
    assert find_maps_layer(tuned) == (f"{inner}/last_conv", False)
    image = keras.Input((SIZE, SIZE, 3))
    at_backbone = keras.Model(image, tuned.get_layer(inner)(image))
    assert find_maps_layer(at_backbone) == (f"{inner}/last_conv", True)
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    maps, out = maps_model(tuned, f"{inner}/last_conv")(x)
    np.testing.assert_allclose(maps, load_user_model(path, "last_conv")(x), atol=1e-5)
    np.testing.assert_allclose(out, tuned(x), atol=1e-6)
    keras.backend.clear_session()


# --------------------------------------------------------------------------- CAM = gradients

def test_cam_equals_the_gradient_heatmap_up_to_scale(spark, backbone, shapes):
    import keras
    import tensorflow as tf

    from sparkdl_magics import FittedModel, explain
    root, boxes = shapes
    model = FittedModel.load(_seen["model"], spark) if "model" in _seen else \
        _fit(spark, root, backbone["trained"])
    paths = sorted(boxes)[:3] + sorted(boxes)[-3:]
    cam = explain(model, paths, n=6, method="cam")
    grad = explain(model, paths, n=6, method="gradcam")
    assert (cam.method, grad.method) == ("cam", "gradcam")
    # an independent gradient computation: plain Keras + the fitted coefficients
    net = keras.saving.load_model(str(backbone["trained"]), compile=False)
    probe = keras.Model(net.inputs, [net.get_layer("last_conv").output,
                                     net.get_layer("pool").output])
    w = tf.constant(model.classifier_model.coefficientMatrix.toArray(), tf.float32)
    for i, path in enumerate(cam.rows["path"]):
        x = np.asarray(keras.utils.load_img(resolved_path(path)), "float32")[None] / 127.5 - 1.0
        k = model.classes.index(cam.rows["explained"].iloc[i])
        with tf.GradientTape() as tape:
            maps, features = probe(x)
            score = tf.linalg.matvec(w, features[0])[k]
        grads = tape.gradient(score, maps)[0].numpy()
        want = np.maximum(np.einsum("hwc,c->hw", maps[0].numpy(), grads.mean(axis=(0, 1))), 0)
        want = want / want.max()
        np.testing.assert_allclose(cam.maps[i], want, atol=1e-4)
        np.testing.assert_allclose(grad.maps[i], want, atol=1e-4)
    keras.backend.clear_session()


# --------------------------------------------------------------------------- determinism

def _two_maps(spark, backbone, shapes):
    from sparkdl_magics import FittedModel, explain
    root, boxes = shapes
    if "model" not in _seen:  # run alone: fit once here, every session loads it
        _seen["model"] = str(Path(root).parent / f"fitted-{id(spark)}")
        _fit(spark, root, backbone["trained"]).save(_seen["model"])
    model = FittedModel.load(_seen["model"], spark)
    paths = [sorted(boxes)[0], sorted(boxes)[-1]]
    first = explain(model, paths, n=2)
    _seen["explained"] = first
    again = explain(model, paths, n=2)
    for a, b in zip(first.maps, again.maps):
        np.testing.assert_array_equal(a, b)
    # a path Spark's file sources would hide (leading '_') is explained all the same
    hidden = Path(root).parent / "_hidden_copy.jpg"
    shutil.copyfile(paths[0], hidden)
    copy = explain(model, [str(hidden)], n=1)
    assert copy.rows["error"].isna().all() and len(copy) == 1
    by_name = {Path(p).name: m for p, m in zip(first.rows["path"], first.maps)}
    np.testing.assert_array_equal(copy.maps[0], by_name[Path(paths[0]).name])
    # by name: the module's image folder is made again when its tests of another mode run
    return {"/".join(Path(p).parts[-2:]): m for p, m in zip(first.rows["path"], first.maps)}


#: The executors' heatmap code (the runner of ``explain``) in a fresh Python process: no
#: Spark, TensorFlow started with one thread as in a task of every session here.
_WORKER_ALONE = """
import pickle, sys
import numpy as np
import pandas as pd
from sparkdl_magics.cam import heatmap_batch, heatmap_frame, normalise
from sparkdl_magics.inference import BatchRunner
spec, head, images, targets = pickle.load(open(sys.argv[1], "rb"))
runner = BatchRunner(spec, 16, heatmap_frame, adapter=heatmap_batch, threads=1, raw=True,
                     derive=head)
out = next(iter(runner([pd.DataFrame({"image": images, "target": targets})])))
pickle.dump([normalise(np.asarray(h, np.float32).reshape(mh, mw))
             for h, mh, mw in zip(out["heat"], out["map_h"], out["map_w"])],
            open(sys.argv[2], "wb"))
"""


def _worker_alone_maps(spark, model, explained, method, tmp_path):
    """The *method* maps of *explained* (path -> class explained) from
    :data:`_WORKER_ALONE`."""
    import pickle
    import subprocess
    import sys

    from sparkdl_magics.explanation import _head
    spec = model.pipeline_model.stages[0].resolve(spark).spec
    paths = sorted(explained)
    images = [Path(resolved_path(p)).read_bytes() for p in paths]
    targets = [model.classes.index(explained[p]) for p in paths]
    job, out = tmp_path / "job.pkl", tmp_path / "maps.pkl"
    job.write_bytes(pickle.dumps((spec, _head(model, method), images, targets)))
    subprocess.run([sys.executable, "-c", _WORKER_ALONE, str(job), str(out)], check=True,
                   timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return dict(zip(paths, pickle.loads(out.read_bytes())))


def test_heatmaps_are_identical_across_runs_and_sessions(spark_any, request, backbone, shapes,
                                                        tmp_path):
    """The same bits, not just close: every session here gives a task one core (the
    same TensorFlow thread count), and each image goes through the network alone,
    whatever the partitioning (see test_an_images_heatmap_does_not_depend_on_its_batch).
    Each session's maps are compared with the executors' code run alone in a fresh
    process (so a mode run on its own compares something), and with every session
    that ran before it in this test run."""
    from sparkdl_magics import FittedModel
    mode = request.node.callspec.params["spark_any"]
    maps = _two_maps(spark_any, backbone, shapes)
    model = FittedModel.load(_seen["model"], spark_any)
    first = _seen["explained"]
    alone = _worker_alone_maps(spark_any, model, dict(zip(first.rows["path"],
                                                          first.rows["explained"])),
                               first.method, tmp_path)
    assert len(alone) == len(maps) == 2
    by_name = {"/".join(Path(p).parts[-2:]): m for p, m in alone.items()}
    for path, heat in maps.items():
        np.testing.assert_array_equal(heat, by_name[path], err_msg=f"{mode} vs alone")
    for other, seen in _seen.items():
        if other.startswith("maps-"):
            for path, heat in maps.items():
                np.testing.assert_array_equal(heat, seen[path], err_msg=other)
    _seen[f"maps-{mode}"] = maps


def test_an_images_heatmap_does_not_depend_on_its_batch():
    """Partitions (and so batches) differ between local, local-cluster and Connect: an
    image's map must be the same bits alone and beside other images. ResNet50's
    convolutions round differently for a batch of one than for several."""
    import keras

    from sparkdl_magics.cam import linear_head
    from sparkdl_magics.inference import LoadedModel, ModelSpec
    keras.utils.set_random_seed(3)
    net = keras.applications.ResNet50(include_top=False, weights=None,
                                      input_shape=(SIZE, SIZE, 3), pooling="avg")
    base = LoadedModel(ModelSpec(input_size=(SIZE, SIZE)), net, lambda x: x)
    weights = np.random.default_rng(0).normal(size=(2, 2048))
    rows = np.concatenate([np.random.default_rng(1).uniform(-1, 1, (4, SIZE * SIZE * 3)),
                           np.eye(2)[[0, 1, 0, 1]]], axis=1).astype("float32")
    for method in ("cam", "gradcam"):
        heat = linear_head(method, weights)(base)
        together = heat.run(rows)
        for i in range(len(rows)):
            np.testing.assert_array_equal(heat.run(rows[i:i + 1])[0], together[i])
    keras.backend.clear_session()


# --------------------------------------------------------------------------- bad inputs

def test_unsupported_classifiers_and_methods_are_one_line_errors():
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.explanation import NETWORK, choose_method
    assert choose_method("logistic_regression", "auto", lambda: True) == "cam"
    assert choose_method("logistic_regression", "auto", lambda: False) == "gradcam"
    assert choose_method("linear_svc", "gradcam", lambda: True) == "gradcam"
    cases = [("random_forest", "cam", "needs a linear classifier (logistic_regression, "
              "linear_svc)"),
             ("mlp", "cam", "a mlp model has no class weights"),
             ("logistic_regression", "lime", "method"),
             ]
    for classifier, method, words in cases:
        with pytest.raises(OptionError, match=words.replace("(", r"\(").replace(")", r"\)")) \
                as info:
            choose_method(classifier, method, lambda: True)
        assert "\n" not in str(info.value)
    with pytest.raises(OptionError, match="cam is exact only") as info:
        choose_method("logistic_regression", "cam", lambda: False)
    # a fine-tuned network: Grad-CAM through it, CAM refused in one line
    assert choose_method(NETWORK, "auto", None) == choose_method(NETWORK, "gradcam", None) \
        == "gradcam"
    with pytest.raises(OptionError, match="cam needs a linear classifier") as info:
        choose_method(NETWORK, "cam", None)
    assert "\n" not in str(info.value)
    with pytest.raises(OptionError, match="fine-tuned network is explained with method: "
                       "gradcam") as info:
        choose_method(NETWORK, "occlusion", None)
    assert "\n" not in str(info.value)


def test_bad_explain_cells_are_one_line_errors(ip):
    from IPython.core.error import UsageError
    ip.user_ns["not_a_model"] = 3
    for body, words in (("method: lime", "method"), ("n: 0", "'n'"),
                        ("alpha: 2", "alpha"), ("", "expected a fitted model")):
        with pytest.raises(UsageError, match=words) as info:
            ip.run_cell(f"%%explain not_a_model\n{body}" if body else "%explain not_a_model")
        assert "\n" not in str(info.value)
