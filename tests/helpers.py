"""Helpers shared by the test modules: image frames, seeded weights files, Keras
references computed independently of the package, and hand-built results.

Fixtures live in conftest.py; image files are made by imagegen.py.
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from imagegen import SHAPES, shape_on_noise
from sklearn import metrics as skm

from sparkdl_magics.results import FeatureSet, ImageSet

SMALL = "MobileNetV3Small"  # the cheap model for mode tests
#: What must never reach a cell's output: tracebacks, the JVM's WARN lines and start-up
#: notes, netlib's dlopen complaint, Keras' download note.
NOISE = ("Traceback", "WARN", "jdk.incubator", "netlib", "Downloading data")
INDEX = Path(__file__).parent.parent / "sparkdl_magics" / "data" / "imagenet_class_index.json"


def cosines(a, b):
    """Per-row cosine between two arrays of feature rows, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def binary_images(spark, folder, glob="*"):
    """Labelled images as the loader gives them: path, content, label, label_name."""
    from pyspark.sql import functions as F
    df = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
          .option("pathGlobFilter", glob).load(str(folder)))
    name = F.element_at(F.split("path", "/"), -2)
    return (df.withColumn("label_name", name)
            .withColumn("label", F.when(name == "daisy", 0.0).when(name == "roses", 1.0)
                        .otherwise(2.0))
            .select("path", "content", "label", "label_name"))


def local_path(uri: str) -> str:
    return uri[len("file:"):] if uri.startswith("file:") else uri


def write_weights(name: str, folder: Path) -> Path:
    """Seeded weights for a registry model, saved as a Keras weights file."""
    import keras
    from sparkdl_magics.models import get_model_info
    info = get_model_info(name)
    path = folder / f"{name}.weights.h5"
    if not path.exists():
        keras.utils.set_random_seed(7)
        model = info.constructor()(include_top=False, weights=None, pooling="avg",
                                   input_shape=(info.size, info.size, 3))
        model.save_weights(str(path))
        del model
        keras.backend.clear_session()
    return path


def keras_reference(name: str, weights: Path, paths) -> np.ndarray:
    """model.predict(preprocess_input(resized RGB image)), with plain Keras."""
    import keras
    from sparkdl_magics.models import get_model_info
    info = get_model_info(name)
    model = info.constructor()(include_top=False, weights=None, pooling="avg",
                               input_shape=(info.size, info.size, 3))
    model.load_weights(str(weights))
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(
        local_path(p), target_size=(info.size, info.size), interpolation="bilinear"))
        for p in paths])
    preprocess = getattr(keras.applications, info.module).preprocess_input
    out = model.predict(preprocess(x), verbose=0)
    del model
    keras.backend.clear_session()
    return out


def features_by_path(df, col="features"):
    return {r["path"]: np.asarray(r[col].toArray()) for r in df.select("path", col).collect()}


def full_model():
    from sparkdl_magics.models import get_model_info
    info = get_model_info(SMALL)
    return info, info.constructor()(include_top=True, weights=None,
                                    input_shape=(info.size, info.size, 3))


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


def _png(color) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (12, 8), tuple(int(c) for c in color)).save(buf, format="PNG")
    return buf.getvalue()


def _rows(classes, n, dim, rng, split, spread, offset=0.0):
    rows = []
    for label, name in enumerate(classes):
        center = np.zeros(dim)
        center[label % dim] = 2.0
        for i in range(n):
            x = center + rng.normal(0.0, spread, dim) + offset
            rows.append((f"/data/{name}/{split}_{i}.png", float(label), name, x.tolist()))
    return rows


def blobs(spark, classes=("daisy", "roses", "tulips"), n_train=20, n_test=10, dim=4,
          seed=0, spread=1.2, offset=0.0, test_classes=None, with_images=True):
    """A FeatureSet of Gaussian blobs (overlapping, so there are mistakes)."""
    from pyspark.ml.linalg import Vectors
    rng = np.random.default_rng(seed)
    train = _rows(classes, n_train, dim, rng, "train", spread, offset)
    test = _rows(classes, n_test, dim, rng, "test", spread, offset)
    if test_classes is not None:
        test = [r for r in test if r[2] in test_classes]

    def frame(rows):
        return _frame(spark, [(p, y, name, Vectors.dense(x)) for p, y, name, x in rows])

    images = None
    if with_images:
        colors = {name: (60 * i + 40, 200 - 50 * i, 90) for i, name in enumerate(classes)}
        content = [(p, bytearray(_png(colors[name]))) for p, _, name, _ in train + test]
        images = image_set_of(spark.createDataFrame(content, "path string, content binary"))
    return FeatureSet(train=frame(train), test=frame(test), classes=list(classes),
                      images=images, model_name="blobs")


def collect_predictions(ev):
    rows = ev.predictions.select("label", "prediction", "probability").collect()
    y = np.array([r["label"] for r in rows], dtype=int)
    p = np.array([r["prediction"] for r in rows], dtype=int)
    prob = np.array([r["probability"].toArray() for r in rows])
    return y, p, prob


def check_against_sklearn(ev, k):
    y, p, prob = collect_predictions(ev)
    labels = list(range(k))
    assert ev.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    for ours, average in (("f1", skm.f1_score), ("precision", skm.precision_score),
                          ("recall", skm.recall_score)):
        expected = average(y, p, labels=labels, average="weighted", zero_division=0)
        assert ev.metrics[ours] == pytest.approx(expected), ours
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, p, labels=labels, zero_division=0)
    np.testing.assert_allclose(ev.per_class["precision"], precision)
    np.testing.assert_allclose(ev.per_class["recall"], recall)
    np.testing.assert_allclose(ev.per_class["f1"], f1)
    np.testing.assert_array_equal(ev.per_class["support"], support)
    np.testing.assert_array_equal(ev.confusion.to_numpy(),
                                  skm.confusion_matrix(y, p, labels=labels))
    assert ev.metrics["log_loss"] == pytest.approx(skm.log_loss(y, prob, labels=labels),
                                                   rel=1e-9)
    assert int(ev.confusion.to_numpy().sum()) == len(y) == ev.metrics["count"]
    return y, p, prob


def _frame(spark, rows):
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType
    schema = StructType([StructField("path", StringType()), StructField("label", DoubleType()),
                         StructField("label_name", StringType()),
                         StructField("features", VectorUDT())])
    return spark.createDataFrame(rows, schema)


def image_set_of(train, test=None, classes=(), validation=None):
    """A real ImageSet built by hand from split DataFrames (no counts: featurize counts)."""
    df = train if test is None else train.unionByName(test)
    return ImageSet(df=df, train=train, test=test, validation=validation,
                    classes=list(classes), invalid=None, counts=None)


def small_cnn_file(path: Path, size: int = 32) -> Path:
    """A small seeded CNN saved as a Keras file, whose pooled output is the feature
    vector (8 values): a backbone the export and tracking tests build in a second."""
    import keras
    keras.utils.set_random_seed(3)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="tanh")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    keras.Model(inputs, outputs).save(path)
    return path


def shapes_cnn(seed: int, size: int = 64):
    """A 4-conv CNN for the shape images, global average pooling, one sigmoid a shape."""
    import keras
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="down1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="down2")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(len(SHAPES), activation="sigmoid", name="head")(x)
    return keras.Model(inputs, outputs)


def train_shapes_backbone(folder: Path) -> Path:
    """A heatmap backbone: :func:`shapes_cnn` trained on its own shape images (no
    ImageNet weights here, and an untrained backbone does not localise), saved as
    ``shapes_cnn.keras`` in *folder*.

    Train until the CNN tells its own training images apart (a seed whose start
    leaves a class dead is replaced by the next one).

    One sigmoid per shape, and a quarter of the images are noise alone (every target
    0): each shape then needs evidence of its own on the object. With softmax over
    the shapes alone a CNN may learn one of them as "neither of the others", whose
    evidence is everywhere (a flat map)."""
    import keras
    x, y = [], []
    for i in range(600):
        shape = SHAPES[i % 4] if i % 4 < len(SHAPES) else None
        pixels, _ = shape_on_noise(shape, seed=900_000 + i)
        x.append(pixels)
        y.append([float(shape == s) for s in SHAPES])
    x = np.stack(x).astype("float32") / 127.5 - 1.0  # as preprocess: tf
    y = np.array(y, dtype="float32")
    for seed in (6, 7, 8, 9):
        model = shapes_cnn(seed)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
        start = time.time()
        model.fit(x, y, epochs=16, batch_size=32, verbose=0)
        accuracy = float(((model.predict(x, verbose=0) > 0.5) == (y > 0.5)).all(axis=1).mean())
        print(f"\nbackbone (seed {seed}): trained in {time.time() - start:.1f} s, "
              f"training images right: {accuracy:.0%}")
        if accuracy >= 0.98:
            break
    path = folder / "shapes_cnn.keras"
    model.save(str(path))
    return path


# --------------------------------------------------------------------------- heatmap checks

#: The peak may fall this many pixels outside the object's box (a map cell is 4-9 px).
BOX_MARGIN = 4


def resolved_path(uri: str) -> str:
    """A ``file:`` URI or path as an absolute local path (the shape boxes' keys)."""
    return str(Path(local_path(uri)).resolve())


def peak_in_box(heat: np.ndarray, box, margin: int = BOX_MARGIN) -> bool:
    """Whether the heatmap's peak falls in the box (x0, y0, x1, y1), give or take *margin*."""
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    x0, y0, x1, y1 = box
    return x0 - margin <= x < x1 + margin and y0 - margin <= y < y1 + margin


def box_fraction(boxes, size: int, margin: int = BOX_MARGIN) -> float:
    """Where a random point would land in the box (+ margin): the chance baseline."""
    return float(np.mean([(b[2] - b[0] + 2 * margin) * (b[3] - b[1] + 2 * margin)
                          for b in boxes.values()]) / size ** 2)


def pointing(explanation, boxes):
    """(share of correct answers whose heatmap peak is in the box, their count, accuracy)."""
    rows = explanation.rows
    hits = [peak_in_box(explanation.heatmap(i), boxes[resolved_path(p)])
            for i, p in enumerate(rows["path"]) if rows["correct"].iloc[i]]
    accuracy = float(rows["correct"].astype(bool).mean())
    return (float(np.mean(hits)) if hits else 0.0), len(hits), accuracy
