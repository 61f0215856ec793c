"""Occlusion heatmaps (explain / %%explain with ``method: occlusion``, and ``auto`` for
classifiers without class weights): hide a patch, see the class's probability drop.

Same images and backbone as the CAM tests: a small CNN trained here on shapes pasted at
random places on noise (no ImageNet weights can be downloaded, and an untrained
backbone does not localise), given to featurize as a user model file; the classifiers
are real MLlib models fit on its frozen features in a real Spark session.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from helpers import BOX_MARGIN, box_fraction, local_path, pointing, train_shapes_backbone
from imagegen import write_shape_folder

pytest.importorskip("keras")

SIZE = 64
#: Fitted models shared by this module's tests (one local session throughout).
_models: dict = {}


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    import keras
    path = train_shapes_backbone(tmp_path_factory.mktemp("backbone"))
    keras.backend.clear_session()
    return path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Images for Spark (other seeds than the backbone's), and each object's box."""
    root = tmp_path_factory.mktemp("shapes")
    return root, write_shape_folder(root, per_class=24, seed=1)


def _model(spark, backbone, shapes, classifier, **params):
    """*classifier* fit on the backbone's features of the shapes (once per module)."""
    from sparkdl_magics import featurize, fit, load_images
    if "features" not in _models:
        images = load_images(str(shapes[0]), split=0.5, seed=3, spark=spark)
        _models["features"] = featurize(images, model=str(backbone), preprocess="tf",
                                        batch_size=16)
    if classifier not in _models:
        _models[classifier] = fit(_models["features"], classifier, **params)
    return _models[classifier]


# --------------------------------------------------------------------------- localisation

@pytest.mark.slow
def test_occlusion_peak_falls_on_the_object_for_a_random_forest(spark, backbone, shapes, ip):
    from sparkdl_magics import explain
    root, boxes = shapes
    forest = _model(spark, backbone, shapes, "random_forest", numTrees=20, maxDepth=5)
    n_test = forest.features.test.count()
    start = time.time()
    result = explain(forest, n=n_test)  # auto: a forest has no class weights
    took = time.time() - start
    assert result.method == "occlusion" and len(result) == n_test
    rows = result.rows
    assert rows["error"].isna().all()
    hit, hits, accuracy = pointing(result, boxes)
    chance = box_fraction(boxes, SIZE)
    print(f"\nocclusion (random forest, 7 x 7 patches) peak inside the object's box "
          f"(+{BOX_MARGIN} px): {hit:.0%} of {hits} correct answers (accuracy "
          f"{accuracy:.0%}); random point {chance:.0%}; explain of {n_test} images "
          f"took {took:.1f} s")
    assert hits >= n_test // 2
    assert hit >= 0.75
    assert hit > chance + 0.3
    # an MLP too: another classifier without class weights over the features
    mlp = _model(spark, backbone, shapes, "mlp", maxIter=200, seed=5)
    mlp_hit, mlp_hits, mlp_accuracy = pointing(explain(mlp, n=n_test), boxes)
    print(f"occlusion (MLP): {mlp_hit:.0%} of {mlp_hits} correct answers (accuracy "
          f"{mlp_accuracy:.0%})")
    assert mlp_hits >= n_test // 2 and mlp_hit >= 0.75
    for i in range(len(result)):
        assert result.maps[i].shape == (7, 7)
        heat = result.heatmap(i)
        assert heat.shape == (SIZE, SIZE) and 0.0 <= heat.min() and heat.max() <= 1.0
    assert all(png.startswith(b"\x89PNG") for png in rows["overlay"])

    # the magic: auto and occlusion by name, a coarser grid; the grid renders
    ip.user_ns.update(clf=forest, shapes=forest.features.images)
    ip.run_cell("%%explain clf -> heat\nimages: shapes.test\nn: 3")
    heat = ip.user_ns["heat"]
    assert heat.method == "occlusion" and list(heat.rows["path"]) == list(rows["path"][:3])
    for i in range(3):
        np.testing.assert_allclose(heat.maps[i], result.maps[i], atol=1e-6)
    ip.run_cell("%%explain clf -> coarse\nmethod: occlusion\ngrid: 4\nn: 2\nclass: true")
    coarse = ip.user_ns["coarse"]
    assert [m.shape for m in coarse.maps] == [(4, 4), (4, 4)]
    assert list(coarse.rows["explained"]) == list(coarse.rows["true"])
    assert coarse._repr_html_().count("<img") == 4

    # a grid out of range, or given to a method without one: one line, no Spark job
    from IPython.core.error import UsageError
    for body, words in (("grid: 40", "2 to 16"), ("grid: 1", "2 to 16"),
                        ("grid: seven", "whole number")):
        with pytest.raises(UsageError, match=words) as info:
            ip.run_cell(f"%%explain clf\nmethod: occlusion\n{body}")
        assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- correctness

def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def test_occlusion_map_equals_a_direct_computation(spark, backbone, shapes):
    """Plain Keras on hand-occluded images + the logistic regression's own formula
    give the same map as the Spark path (batching, variant order, assembly)."""
    import keras

    from sparkdl_magics import explain
    root, boxes = shapes
    lr = _model(spark, backbone, shapes, "logistic_regression", maxIter=50, regParam=0.01,
                standardization=False)
    grid = 3
    paths = [sorted(boxes)[0], sorted(boxes)[-1]]
    result = explain(lr, paths, n=2, method="occlusion", grid=grid, batch_size=4)
    assert result.method == "occlusion" and len(result) == 2

    net = keras.saving.load_model(str(backbone), compile=False)
    features = keras.Model(net.inputs, net.get_layer("pool").output)
    w = lr.classifier_model.coefficientMatrix.toArray()
    b = lr.classifier_model.interceptVector.toArray()
    cell = SIZE / grid
    for i, path in enumerate(result.rows["path"]):
        image = np.asarray(keras.utils.load_img(local_path(path)), dtype=np.uint8)
        variants = [image]
        for row in range(grid):
            for col in range(grid):
                hidden = image.copy()
                top, left = int(round(row * cell - cell / 2)), int(round(col * cell - cell / 2))
                bottom = int(round(row * cell + 1.5 * cell))
                right = int(round(col * cell + 1.5 * cell))
                hidden[max(top, 0):bottom, max(left, 0):right] = \
                    np.round(image.reshape(-1, 3).mean(axis=0))
                variants.append(hidden)
        x = np.stack(variants).astype("float32") / 127.5 - 1.0
        f = features.predict(x, verbose=0).astype(np.float64)
        k = lr.classes.index(result.rows["explained"].iloc[i])
        p = np.array([_softmax(w @ v + b)[k] for v in f])
        drop = np.maximum(p[0] - p[1:], 0.0).reshape(grid, grid)
        assert drop.max() > 0
        np.testing.assert_allclose(result.maps[i], drop / drop.max(), atol=1e-4)
        assert np.unravel_index(np.argmax(result.maps[i]), (grid, grid)) == \
            np.unravel_index(np.argmax(drop), (grid, grid))
        assert result.rows["probability"].iloc[i] == pytest.approx(p[0], abs=1e-5)
    keras.backend.clear_session()


# --------------------------------------------------------------------------- choosing

def test_auto_picks_occlusion_for_classifiers_without_class_weights():
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.explanation import choose_method

    def no_load():
        raise AssertionError("occlusion needs no look at the backbone's layers")
    for classifier in ("random_forest", "gbt", "mlp", "naive_bayes", "fm"):
        assert choose_method(classifier, "auto", no_load) == "occlusion"
        assert choose_method(classifier, "occlusion", no_load) == "occlusion"
    assert choose_method("logistic_regression", "occlusion", no_load) == "occlusion"
    assert choose_method("logistic_regression", "auto", lambda: True) == "cam"
    with pytest.raises(OptionError, match="use method occlusion") as info:
        choose_method("random_forest", "gradcam", no_load)
    assert "\n" not in str(info.value)


def test_grids_are_checked_in_one_line():
    from sparkdl_magics import defaults
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.occlusion import check_grid, patch_boxes
    assert check_grid(None, "occlusion") == defaults.OCCLUSION_GRID
    assert check_grid(None, "cam") == defaults.OCCLUSION_GRID
    assert check_grid("5", "occlusion") == 5
    for grid, method, words in ((1, "occlusion", "2 to 16"), (17, "occlusion", "2 to 16"),
                                (2.5, "occlusion", "whole number"),
                                (True, "occlusion", "whole number"),
                                (4, "cam", "only method occlusion")):
        with pytest.raises(OptionError, match=words) as info:
            check_grid(grid, method)
        assert "\n" not in str(info.value) and "'grid'" in str(info.value)
    # every pixel is hidden by some patch; each patch is about two cells wide
    boxes = patch_boxes(7, SIZE, SIZE)
    covered = np.zeros((SIZE, SIZE), bool)
    for x0, y0, x1, y1 in boxes:
        covered[y0:y1, x0:x1] = True
    assert len(boxes) == 49 and covered.all()
    assert boxes[24] == (23, 23, 41, 41)  # the centre cell's patch


# --------------------------------------------------------------------------- Spark Connect

@pytest.mark.slow
def test_occlusion_runs_over_spark_connect(spark_connect, backbone, shapes):
    """No SparkContext on the path: the classifier stage and the runner work over
    Connect, and the maps equal a second run's."""
    from sparkdl_magics import explain, featurize, fit, load_images
    root, boxes = shapes
    images = load_images(str(root), split=0.5, seed=3, spark=spark_connect)
    features = featurize(images, model=str(backbone), preprocess="tf", batch_size=16)
    # enough trees that hiding the object moves some vote (5 shallow ones sometimes did not)
    forest = fit(features, "random_forest", numTrees=20, maxDepth=5, seed=5)
    paths = [sorted(boxes)[0], sorted(boxes)[-1]]
    first = explain(forest, paths, n=2, grid=3)
    again = explain(forest, paths, n=2, method="occlusion", grid=3)
    assert first.method == "occlusion" and first.rows["error"].isna().all()
    assert all(m.max() == 1.0 for m in first.maps)  # some patch hid the evidence
    for a, b in zip(first.maps, again.maps):
        assert a.shape == (3, 3)
        np.testing.assert_array_equal(a, b)
