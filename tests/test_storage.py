"""Images where users keep them: a real S3 API server on 127.0.0.1 (moto's server mode),
read by Python on the executors (:mod:`sparkdl_magics.storage`, :mod:`..loading.stored`)
because the pip-installed Spark here has no S3 connector.

The same images in a folder and in a bucket load, split, featurize and score alike;
odd objects are loaded, invalid or skipped with a reason; a bucket's label table, model
file and weights file are read; errors are one line, fast.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from helpers import SMALL, features_by_path, write_weights
from s3_server import S3Server
from sparkdl_magics.storage import NO_CREDENTIALS

pytest.importorskip("moto")


@pytest.fixture(scope="module")
def flowers_bucket(s3, image_folder):
    """image_folder's files as s3://flowers/photos/<class>/<file>."""
    url = s3.bucket("flowers")
    s3.upload("flowers", image_folder, "photos")
    return f"{url}/photos"


def below(path: str) -> str:
    """class/file of a loaded path (s3://b/p/class/file or file:/.../class/file)."""
    return "/".join(path.rsplit("/", 2)[-2:])


# --------------------------------------------------------------------------- choosing

def test_store_for_reads_object_store_schemes_and_checks_storage_options():
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.storage import LOCAL, store_for
    assert store_for("/data/flowers") is LOCAL and store_for("file:/data") is LOCAL
    for url, kind in (("s3://b/p", "s3"), ("s3a://b/p", "s3"), ("gs://b/p", "gcs"),
                      ("abfss://c@acct.dfs.core.windows.net/p", "azure"), ("az://c/p", "azure")):
        assert store_for(url).kind == kind, url
    assert store_for("s3a://b/p/x.jpg").fs_path("s3a://b/p/x.jpg") == "b/p/x.jpg"
    store = store_for("s3://b", {"endpoint_url": "http://h:1", "anon": True})
    assert dict(store.options) == {"endpoint_override": "http://h:1", "anonymous": True}
    assert store_for("dbfs:/mnt/x") is None  # only Spark reads it
    with pytest.raises(OptionError, match=r"unknown key 'endpont'.*did you mean 'endpoint'"):
        store_for("s3://b", {"endpont": "http://h:1"})
    with pytest.raises(OptionError, match="local paths take no storage options"):
        store_for("/data", {"anonymous": True})


# --------------------------------------------------------------------------- the workflow

def test_bucket_and_folder_give_the_same_split_features_and_accuracy(spark_any, s3, image_folder,
                                                                       flowers_bucket, tmp_path):
    """Load → featurize (weights from a bucket) → fit → evaluate from the bucket (on a
    Connect server, its workers read it) equals the same from the folder on disk; the
    model saved to a bucket loads back where Spark's disk is the driver's, else one line."""
    from sparkdl_magics import evaluate, featurize, fit, load_images
    weights = write_weights(SMALL, tmp_path)
    s3.bucket("models")
    s3.put("models", f"w/{weights.name}", weights.read_bytes())
    results = {}
    for where, weights_file in ((str(image_folder), str(weights)),
                                (flowers_bucket, f"s3://models/w/{weights.name}")):
        images = load_images(where, split=0.75, seed=3, per_class=10)
        fs = featurize(images, model=SMALL, weights=weights_file, batch_size=8)
        clf = fit(fs, maxIter=15)
        feats = {**features_by_path(fs.train), **features_by_path(fs.test)}
        results[where] = (images, feats, evaluate(clf).metrics)
        assert images.stats["images"] == 30 and images.invalid.empty
    check_saved_to_a_bucket(spark_any, s3, clf, fs)
    (disk, disk_feats, disk_metrics), (bucket, bucket_feats, bucket_metrics) = results.values()
    assert bucket.classes == disk.classes and bucket.source == flowers_bucket
    assert bucket.counts.equals(disk.counts)
    for split in ("train", "test"):
        assert sorted(below(r[0]) for r in getattr(bucket, split).select("path").collect()) == \
            sorted(below(r[0]) for r in getattr(disk, split).select("path").collect())
    assert all(p.startswith(flowers_bucket + "/") for p in bucket_feats)
    by_name = {below(p): v for p, v in disk_feats.items()}
    assert len(bucket_feats) == len(by_name) == 30
    for path, vector in bucket_feats.items():
        want = by_name[below(path)]  # float32 rounding of other batch compositions
        np.testing.assert_allclose(vector, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # float32 rounding of other batch compositions may move one borderline test image
    assert abs(bucket_metrics["accuracy"] - disk_metrics["accuracy"]) <= 1 / bucket_metrics["count"]


def check_saved_to_a_bucket(spark, s3, clf, features):
    """save → load through a bucket this Spark has no file system for: staged on the
    driver's disk where the executors share it (local, local-cluster), else (Connect)
    refused in one line saying what to add."""
    from sparkdl_magics import load_model
    from sparkdl_magics.errors import DataError
    from sparkdl_magics.session import is_connect
    url = "s3://models/saved/flowers"
    if is_connect(spark):
        with pytest.raises(DataError, match=r"cannot save to s3://models/saved/flowers: this "
                                            r"Spark has no file system for s3://") as info:
            clf.save(url)
        assert "\n" not in str(info.value)
        return
    assert clf.save(url) == url
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="models", Prefix="saved/")
            .get("Contents", [])]
    assert "saved/flowers/metadata/_SUCCESS" in keys and any("/stages/" in k for k in keys), keys
    loaded = load_model(url)
    assert loaded.classes == clf.classes
    want = {r["path"]: r["prediction_name"] for r in clf.predict(features.test).collect()}
    got = {r["path"]: r["prediction_name"] for r in loaded.predict(features.test).collect()}
    assert got == want and len(got) > 0


def test_a_user_model_file_in_a_bucket_featurizes_like_the_local_file(spark, s3, image_folder,
                                                                       tmp_path):
    import keras

    from sparkdl_magics import featurize, load_images
    keras.utils.set_random_seed(5)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "tiny.keras"
    model.save(path)
    s3.bucket("usermodels")
    s3.put("usermodels", "m/tiny.keras", path.read_bytes())
    images = load_images(str(image_folder), per_class=3, split=1.0)
    local = features_by_path(featurize(images, model=str(path)).train)
    remote = features_by_path(featurize(images, model="s3://usermodels/m/tiny.keras").train)
    assert sorted(remote) == sorted(local) and len(local) == 9
    for key, vector in local.items():
        np.testing.assert_allclose(remote[key], vector, rtol=1e-6)


def test_a_stream_from_a_bucket_this_spark_cannot_read_is_one_line(spark, flowers_bucket):
    from sparkdl_magics import read_image_stream
    from sparkdl_magics.errors import DataError
    with pytest.raises(DataError, match=r"cannot stream from s3://flowers/photos: Spark's file "
                                        r"stream needs a Hadoop file system") as info:
        read_image_stream(flowers_bucket)
    assert "\n" not in str(info.value)


def test_dlload_cell_reads_a_bucket_prefix(spark, ip, flowers_bucket):
    ip.run_cell(f"%%dlload flowers\npath: {flowers_bucket}\nper_class: 4\nsplit: 0.5\n")
    images = ip.user_ns["flowers"]
    assert images.classes == ["daisy", "roses", "tulips"] and images.stats["images"] == 12
    assert sum(len(v) for v in images.previews.values()) == 12  # thumbnails from the bucket


# --------------------------------------------------------------------------- accounting

def test_odd_objects_are_loaded_invalid_or_skipped_with_a_reason(spark, s3, image_folder):
    from sparkdl_magics import load_images
    s3.bucket("odd")
    good = sorted((image_folder / "daisy").glob("*.jpg"))[0].read_bytes()
    objects = {"set/cats/a photo.jpg": good, "set/cats/été ünïcode.jpg": good,
               "set/cats/_underscore.jpg": good, "set/dogs/1.jpg": good,
               "set/dogs/2.JPG": good, "set/dogs/empty.jpg": b"",
               "set/dogs/notes.txt": b"hello", "set/dogs/.DS_Store": b"x",
               "set/dogs/._1.jpg": b"x", "set/cats/": b"", "set/.hidden/3.jpg": good,
               "set/empty-class/": b"", "set/dogs/nothing/": b"", "set-other/cats/4.jpg": good}
    for key, body in objects.items():
        s3.put("odd", key, body)
    images = load_images("s3://odd/set", split=1.0)
    loaded = sorted(r[0] for r in images.df.select("path").collect())
    assert loaded == ["s3://odd/set/cats/_underscore.jpg", "s3://odd/set/cats/a photo.jpg",
                      "s3://odd/set/cats/été ünïcode.jpg", "s3://odd/set/dogs/1.jpg",
                      "s3://odd/set/dogs/2.JPG"]
    assert images.invalid.to_dict("records") == [
        {"path": "s3://odd/set/dogs/empty.jpg", "reason": "empty file (0 bytes)"}]
    skipped = dict(zip(images.skipped["path"], images.skipped["reason"]))
    assert skipped["s3://odd/set/dogs/notes.txt"].startswith("not an image file")
    assert "DS_Store" in skipped["s3://odd/set/dogs/.DS_Store"]
    assert "AppleDouble" in skipped["s3://odd/set/dogs/._1.jpg"]
    assert "hidden folder .hidden" in skipped["s3://odd/set/.hidden/3.jpg"]
    # folder markers with nothing below them are skipped; 'set/cats/' is the folder of
    # its files (pyarrow lists every 'x/' object as a folder), not a file of its own
    for marker in ("s3://odd/set/empty-class/", "s3://odd/set/dogs/nothing/"):
        assert skipped[marker].startswith("system file (folder marker"), marker
    assert len(skipped) == 6  # 'set-other/' is not under the prefix 'set'
    assert images.stats["skipped_system"] == 5 and images.stats["skipped_other"] == 1
    assert not any(p.endswith("/") for p in loaded)
    assert images.counts.loc["cats", "total"] == 3 and images.counts.loc["dogs", "total"] == 2


def test_sampling_classes_and_splits_behave_as_for_a_folder(spark, image_folder, flowers_bucket):
    from sparkdl_magics import load_images
    for options in ({"classes": ["tulips", "daisy"], "per_class": 5, "split": [0.6, 0.2, 0.2]},
                    {"sample": 0.5, "split": 0.5}):
        disk = load_images(str(image_folder), seed=9, **options)
        bucket = load_images(flowers_bucket, seed=9, **options)
        assert bucket.classes == disk.classes and bucket.counts.equals(disk.counts)
        for split in ("train", "validation", "test"):
            got, want = getattr(bucket, split), getattr(disk, split)
            if want is None:
                assert got is None
                continue
            assert sorted(below(r[0]) for r in got.select("path").collect()) == \
                sorted(below(r[0]) for r in want.select("path").collect())


def test_open_images_style_flat_prefix_with_a_label_csv_in_the_bucket(spark, s3, image_folder):
    from sparkdl_magics import load_images
    s3.bucket("openimages")
    rows, files = ["ImageID,Source,LabelName,Confidence"], sorted(image_folder.rglob("*.jpg"))
    for i, path in enumerate(files):
        image_id = f"{i:016x}"
        s3.put("openimages", f"train/{image_id}.jpg", path.read_bytes())
        rows.append(f"{image_id},verification,/m/{path.parent.name},1")
        rows.append(f"{image_id},verification,/m/other,0")  # a negative label: ignored
    s3.put("openimages", "labels/train-labels.csv", "\n".join(rows).encode())
    images = load_images("s3://openimages/train", labels="s3://openimages/labels/train-labels.csv",
                         split=1.0)
    assert images.classes == sorted({f"/m/{p.parent.name}" for p in files})
    assert images.stats["images"] == len(files)
    assert images.stats["id_match"] == {"stem": len(files)}


# --------------------------------------------------------------------------- errors

class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def no_credentials_message(endpoint, home):
    """What an executor's listing says where its environment holds no S3 credentials
    (the executors' own function, in a process with such an environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true",
               AWS_SHARED_CREDENTIALS_FILE=str(home / "none"), AWS_CONFIG_FILE=str(home / "none"))
    code = ("import sys; from sparkdl_magics.storage import store_for; "
            "from sparkdl_magics.loading.stored import units_of; "
            "url = 's3://flowers/photos'; "
            "print(units_of(store_for(url, {'endpoint': sys.argv[1]}), url)[0][2])")
    done = subprocess.run([sys.executable, "-c", code, endpoint], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_store_errors_are_one_line_and_fast(spark, s3, flowers_bucket, tmp_path):
    from sparkdl_magics import load_images
    from sparkdl_magics.errors import DataError
    s3.bucket("emptyish")
    s3.put("emptyish", "docs/readme.txt", b"not an image")
    cases = [("s3://no-such-bucket-here/x", {}, r"s3://no-such-bucket-here/x: no such bucket 'no-such-bucket-here'"),
             ("s3://flowers/nothing-here", {}, r"option 'path': s3://flowers/nothing-here does "
                                                r"not exist"),
             ("s3://emptyish/docs", {}, r"no image files .*found other files such as "
                                        r"readme\.txt")]
    for url, options, message in cases:
        with pytest.raises(DataError, match=message) as info:
            load_images(url, storage_options=options or None)
        assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    guarded = S3Server().start(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})  # checks keys
    try:
        with pytest.raises(DataError, match=r"^s3://flowers/photos: access denied \(check the "
                                            r"credentials the executors use\)$"):
            load_images(flowers_bucket, storage_options={"endpoint": guarded.endpoint,
                                                         "key": "wrong", "secret": "wrong"})
        assert no_credentials_message(guarded.endpoint, tmp_path) == \
            "s3://flowers/photos: " + NO_CREDENTIALS
    finally:
        guarded.stop()
    silent = SilentServer()
    try:
        for endpoint in (f"http://127.0.0.1:{silent.port}", "http://127.0.0.1:9"):
            started = time.monotonic()
            with pytest.raises(DataError, match=r"the storage endpoint .*does not answer"):
                load_images(flowers_bucket, storage_options={"endpoint": endpoint})
            assert time.monotonic() - started < 15, endpoint
    finally:
        silent.close()


# --------------------------------------------------------------------------- scale

def test_the_listing_holds_no_per_file_state_on_the_driver(spark, tmp_path):
    """The loaded frame's plan reads no Spark file index (which keeps every file on the
    driver): its only driver-side data are the listing units, one per class folder."""
    import contextlib
    import io

    from imagegen import write_labelled_folder

    from sparkdl_magics import load_images
    write_labelled_folder(tmp_path, ("a", "b"), per_class=30, seed=4)
    images = load_images(str(tmp_path), split=0.5)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        images.df.explain(True)
    plan = out.getvalue()
    assert "FileScan" not in plan and "InMemoryFileIndex" not in plan, plan
    assert images.stats["images"] == 60
