"""Exporting a fitted model as one Keras network (sparkdl_magics.export).

Models are fit on real features of the synthetic flower images (a small CNN file as the
backbone, Caffe preprocessing, so the preprocessing layer is exercised too) and
exported; a fresh Python process with plain Keras — no Spark imported — loads each file
(safe mode: no Python code in it), decodes the test images and predicts. Its
probabilities (a linear SVC's scores) must equal the Spark pipeline's on the test split
within 1e-5; the largest difference per classifier is printed (``-s`` shows it).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sparkdl_magics import featurize, fit, load_images
from sparkdl_magics.errors import DataError, OptionError
from helpers import local_path, small_cnn_file

SIZE = 32
TOLERANCE = 1e-5

#: case -> (classes kept, classifier, params, Spark's output column)
CASES = {
    "lr_multinomial_standardized": (None, "logistic_regression",
                                    dict(maxIter=30, regParam=0.01), "probability"),
    "lr_multinomial_unstandardized": (None, "logistic_regression",
                                      dict(maxIter=30, regParam=0.01, standardization=False),
                                      "probability"),
    "lr_binomial": (2, "logistic_regression", dict(maxIter=30, regParam=0.01), "probability"),
    "linear_svc_binary": (2, "linear_svc", dict(maxIter=20), "rawPrediction"),
    "linear_svc_one_vs_rest": (None, "linear_svc", dict(maxIter=20), "rawPrediction"),
    "mlp": (None, "mlp", dict(hidden=[[6, 5]], maxIter=40), "probability"),
    "finetuned": (None, "finetune", {}, "probability"),
}


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    """A small CNN file whose pooled output is the feature vector (8 values)."""
    return small_cnn_file(tmp_path_factory.mktemp("backbone") / "backbone.keras", SIZE)


@pytest.fixture(scope="module")
def flowers(session_pool, image_folder, backbone):
    """The flower images and their features (3 classes), computed once."""
    spark = session_pool.get("local")
    images = load_images(str(image_folder), split=0.75, seed=1, spark=spark)
    return images, featurize(images, model=str(backbone), preprocess="caffe")


def _two_classes(features):
    """The same features, daisy and roses only (a binary problem, no new Spark work)."""
    from dataclasses import replace
    from pyspark.sql import functions as F
    keep = F.col("label") < 2
    return replace(features, train=features.train.filter(keep),
                   test=features.test.filter(keep), classes=features.classes[:2])


@pytest.fixture(scope="module")
def exported(session_pool, flowers, backbone, tmp_path_factory):
    """Every case fit, exported, and its Spark outputs on the test split by path;
    then one fresh process predicts with each exported file."""
    from sparkdl_magics.finetuning import finetune
    spark = session_pool.get("local")
    images, features = flowers
    folder = tmp_path_factory.mktemp("exported")
    cases = {}
    for case, (keep, classifier, params, column) in CASES.items():
        if classifier == "finetune":
            model = finetune(images, model=str(backbone), epochs=1, workers=1,
                             preprocess="unit", unfreeze="all", batch_size=8, seed=7,
                             spark=spark)
            frame = model.transform(images.test)
        else:
            model = fit(features if keep is None else _two_classes(features), classifier,
                        seed=5, **params)
            frame = model.transform(features.test if keep is None
                                    else _two_classes(features).test)
        path = model.export(str(folder / f"{case}.keras"))
        spark_out = {r["path"]: r[column].toArray().tolist()
                     for r in frame.select("path", column).collect()}
        cases[case] = dict(path=path, spark=spark_out, classes=list(model.classes),
                           size=SIZE)
    return cases, _fresh_process_outputs(cases, folder)


def _fresh_process_outputs(cases, folder):
    """Plain Keras in a new process: load each file, decode the images, predict."""
    request = {case: dict(model=c["path"], size=c["size"],
                          images=[local_path(p) for p in c["spark"]])
               for case, c in cases.items()}
    (folder / "request.json").write_text(json.dumps(request))
    script = textwrap.dedent("""
        import json, sys
        from pathlib import Path
        import numpy as np
        import keras
        from sparkdl_magics.imaging import decode_array  # Pillow only: the decode rules
        request = json.loads(Path(sys.argv[1]).read_text())
        out = {}
        for case, job in request.items():
            net = keras.saving.load_model(job["model"])  # safe mode: layers only
            batch = np.stack([decode_array(Path(p).read_bytes(), (job["size"], job["size"]))
                              for p in job["images"]]).astype("float32")
            out[case] = np.asarray(net.predict(batch, verbose=0), dtype="float64").tolist()
        assert not [m for m in sys.modules if m.startswith("pyspark")], "Spark imported"
        Path(sys.argv[2]).write_text(json.dumps(out))
    """)
    result = folder / "result.json"
    done = subprocess.run([sys.executable, "-c", script, str(folder / "request.json"),
                           str(result)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(result.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_exported_network_equals_the_spark_pipeline_without_spark(spark, exported, case):
    cases, keras_out = exported
    spark_out = np.array(list(cases[case]["spark"].values()))
    ours = np.array(keras_out[case])
    assert ours.shape == spark_out.shape and len(ours) > 0
    assert ours.shape[1] == len(cases[case]["classes"])
    diff = float(np.abs(ours - spark_out).max())
    print(f"export {case}: max abs difference {diff:.3g} over {ours.size} values")
    assert diff <= TOLERANCE
    np.testing.assert_array_equal(ours.argmax(axis=1), spark_out.argmax(axis=1))
    info = json.loads(Path(cases[case]["path"][:-len(".keras")] + ".json").read_text())
    assert info["classes"] == cases[case]["classes"]
    assert info["output"] == ("scores" if CASES[case][3] == "rawPrediction" else "probabilities")


def test_trees_are_refused_in_one_line_naming_the_exportable(spark, flowers, tmp_path):
    model = fit(flowers[1], "random_forest", numTrees=3, maxDepth=2, seed=5)
    with pytest.raises(DataError) as err:
        model.export(str(tmp_path / "forest.keras"))
    message = str(err.value)
    assert "\n" not in message and "random_forest" in message
    assert "logistic_regression, linear_svc, mlp" in message
    assert not (tmp_path / "forest.keras").exists()
    with pytest.raises(OptionError, match="format"):
        model.export(str(tmp_path / "x.keras"), format="onnx")


@pytest.mark.slow
def test_saved_model_serves_images_and_encoded_bytes_without_keras_or_spark(spark, flowers,
                                                                            tmp_path):
    """format="saved_model": a fresh process with TensorFlow's loader (no Keras model
    code, no Spark) loads the folder; its ``serve`` signature on decoded images gives the Spark
    pipeline's probabilities, ``serve_bytes`` on PNG bytes of those same pixels (no
    resize) the same, and on the original files (decoded and resized by TensorFlow, not
    Pillow; grey, RGBA and odd sizes among them) probabilities within 0.05 (0.012 seen)."""
    images, features = flowers
    model = fit(features, "logistic_regression", maxIter=30, regParam=0.01, seed=5)
    path = model.export(str(tmp_path / "served"), format="saved_model")
    assert json.loads((tmp_path / "served.json").read_text())["output"] == "probabilities"
    expected = {r["path"]: r["probability"].toArray() for r in
                model.transform(features.test).select("path", "probability").collect()}
    request = dict(model=path, size=SIZE, images=[local_path(p) for p in expected])
    (tmp_path / "request.json").write_text(json.dumps(request))
    script = textwrap.dedent("""
        import io, json, sys
        from pathlib import Path
        import numpy as np
        import tensorflow as tf
        from PIL import Image
        from sparkdl_magics.imaging import decode_array
        job = json.loads(Path(sys.argv[1]).read_text())
        served = tf.saved_model.load(job["model"])
        arrays = [decode_array(Path(p).read_bytes(), (job["size"], job["size"]))
                  for p in job["images"]]
        def png(a):
            buf = io.BytesIO(); Image.fromarray(a).save(buf, format="PNG"); return buf.getvalue()
        out = {
            "images": served.serve(tf.constant(np.stack(arrays).astype("float32"))),
            "png": served.serve_bytes(tf.constant([png(a) for a in arrays])),
            "files": served.serve_bytes(tf.constant([Path(p).read_bytes()
                                                     for p in job["images"]])),
        }
        assert not [m for m in sys.modules if m.startswith("pyspark")], "Spark imported"
        Path(sys.argv[2]).write_text(json.dumps({k: np.asarray(v, "float64").tolist()
                                                 for k, v in out.items()}))
    """)
    result = tmp_path / "result.json"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "request.json"),
                           str(result)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = {k: np.array(v) for k, v in json.loads(result.read_text()).items()}
    want = np.array(list(expected.values()))
    assert want.shape == got["images"].shape and len(want) > 0
    assert float(np.abs(got["images"] - want).max()) <= TOLERANCE
    assert float(np.abs(got["png"] - want).max()) <= TOLERANCE
    files = float(np.abs(got["files"] - want).max())
    print(f"saved_model: serve_bytes on the original files: max abs difference {files:.3g}")
    assert files < 0.05
