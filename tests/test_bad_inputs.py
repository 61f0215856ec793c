"""Bad input, one table: every case is generated here, and each one gives either a clear
one-line message or a counted, listed skip — never a crash, a silent drop, or a JVM
stack trace as the message.

``FILE_CASES`` are files placed together in one labelled folder, loaded with
``load_images`` and featurized with a tiny seeded model; each ends up *featurized* or
*invalid* (at load, or at featurize) with the reason shown. ``CASES`` are everything
else (folders, label CSVs, model files, options of every magic), each with the message
the user sees. The ``sees`` column of both tables is what the issue note lists.

Decisions documented here:
- a 10,000 x 10,000 JPEG is a valid image: draft mode decodes it at 1/8 scale (bounded
  memory, checked in a subprocess);
- a 10,000 x 10,000 PNG (100 MP, within ``imaging.MAX_PIXELS``) is decoded too (PNG has
  no reduced-scale decoding: one full image at a time per worker, ~300 MB transient);
  larger declared sizes are refused as "image too large" without allocating anything.
"""
from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest
from PIL import Image

from imagegen import encode, synthetic_image, write_labelled_folder

SMALL = "MobileNetV3Small"
HTML_CLASS = "<img src=x onerror=alert(1)>"
UNICODE_CLASS = "clâsse é ü 猫"


# --------------------------------------------------------------------------- generators

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 69-byte PNG declaring 10 gigapixels (nothing that size is ever allocated)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def png_bad_crc() -> bytes:
    data = bytearray(encode(synthetic_image(0, 3, (40, 30)), "PNG"))
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


def png_corrupt_data() -> bytes:
    """Header and end marker fine (passes the load check); the pixel stream is broken."""
    data = bytearray(encode(synthetic_image(0, 4, (40, 30)), "PNG"))
    start = data.index(b"IDAT") + 4
    for k in range(start + 10, start + 40):
        data[k] ^= 0x5A
    return bytes(data)


def cmyk_jpeg() -> bytes:
    return encode(synthetic_image(1, 5, (50, 40)).convert("CMYK"), "JPEG")


def png_16bit() -> bytes:
    image = Image.fromarray((np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50))
    assert image.mode == "I;16"
    return _save(image, "PNG")


def palette_png_transparency() -> bytes:
    image = synthetic_image(2, 6, (40, 30)).convert("P", palette=Image.Palette.ADAPTIVE,
                                                   colors=16)
    return _save(image, "PNG", transparency=0)


def animated_gif() -> bytes:
    frames = [synthetic_image(i, 7 + i, (40, 30)).convert("P") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def huge(fmt: str, side: int = 10_000) -> bytes:
    image = Image.new("RGB", (side, side), (200, 30, 30))
    image.paste((30, 30, 200), (side // 4, side // 4, side // 2, side // 2))
    return _save(image, fmt, **({"quality": 50} if fmt == "JPEG" else {"compress_level": 1}))


def small_jpeg(seed: int = 9) -> bytes:
    return encode(synthetic_image(0, seed, (48, 40)), "JPEG")


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


@dataclass(frozen=True)
class FileCase:
    id: str
    folder: str
    name: str
    make: Callable[[], bytes]
    outcome: str  # featurized | invalid at load | invalid at featurize
    sees: str     # what the user sees (a substring of the reason, for invalid files)


FILE_CASES: List[FileCase] = [
    FileCase("zero-byte file", "cats", "empty.jpg", lambda: b"", "invalid at load",
             "empty file (0 bytes)"),
    FileCase("text file named .jpg", "cats", "notes.jpg",
             lambda: b"this is not an image\n" * 20, "invalid at load",
             "not an image (cannot identify image file)"),
    FileCase("truncated JPEG", "cats", "truncated.jpg",
             lambda: small_jpeg()[: len(small_jpeg()) // 2], "invalid at load",
             "truncated JPEG (no end-of-image marker"),
    FileCase("PNG with bad header CRC", "cats", "bad_crc.png", png_bad_crc, "invalid at load",
             "corrupt PNG header (broken PNG file (bad header checksum in b'IHDR'))"),
    FileCase("PNG with corrupt pixel data", "cats", "corrupt_data.png", png_corrupt_data,
             "invalid at featurize", "cannot decode (broken data stream"),
    FileCase("CMYK JPEG", "cats", "cmyk.jpg", cmyk_jpeg, "featurized", ""),
    FileCase("16-bit grayscale PNG", "cats", "gray16.png", png_16bit, "featurized", ""),
    FileCase("palette PNG with transparency", "dogs", "palette_trns.png",
             palette_png_transparency, "featurized", ""),
    FileCase("animated GIF (first frame used)", "dogs", "animated.gif", animated_gif,
             "featurized", ""),
    FileCase("decompression bomb (PNG declaring 100,000 x 100,000)", "dogs", "bomb.png",
             bomb_png, "invalid at load", "image too large (decompression bomb protection)"),
    FileCase("10,000 x 10,000 JPEG", "dogs", "huge.jpg", lambda: huge("JPEG"), "featurized", ""),
    FileCase("unicode and spaces in folder and file names", UNICODE_CLASS, "naïve phöto 1.jpg",
             lambda: small_jpeg(11), "featurized", ""),
    FileCase("HTML/JS in the class (folder) name", HTML_CLASS, "plain.jpg",
             lambda: small_jpeg(12), "featurized", ""),
    FileCase("HTML/JS in the file name", "dogs", "<script>alert('x')<\\script>.jpg",
             lambda: small_jpeg(13), "featurized", ""),
    FileCase("class folder with a single image", "single", "only.jpg", lambda: small_jpeg(14),
             "featurized", ""),
]


def write_bad_folder(root: Path) -> Dict[str, Path]:
    """Good images (2 classes x 4) plus one file per FILE_CASES row; name -> path."""
    write_labelled_folder(root, ("cats", "dogs"), per_class=4, seed=5)
    written = {}
    for case in FILE_CASES:
        folder = root / case.folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / case.name).write_bytes(case.make())
        written[case.name] = folder / case.name
    (root / UNICODE_CLASS / "zweites Bild.png").write_bytes(
        encode(synthetic_image(3, 15, (40, 40)), "PNG"))
    (root / HTML_CLASS / "second.png").write_bytes(encode(synthetic_image(4, 16, (40, 40)), "PNG"))
    return written


def _name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- one run

@pytest.fixture(scope="module")
def bad_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad inputs ü")  # a space and unicode in the root too
    write_bad_folder(root)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from helpers import write_weights
    return write_weights(SMALL, tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def outcome(session_pool, bad_root, weights):
    """Load + featurize the bad folder once; plain Python results only (no DataFrames)."""
    from sparkdl_magics import featurize, load_images
    spark = session_pool.get("local")
    images = load_images(str(bad_root), split=0.5, seed=3, spark=spark)
    feats = featurize(images, model=SMALL, weights=str(weights), batch_size=4)
    rows = {}
    for split in ("train", "test"):
        for r in getattr(feats, split).select("path", "label_name", "features").collect():
            rows.setdefault(_name(r["path"]), []).append((split, r["label_name"], len(r["features"])))
    inv = feats.invalid
    result = {
        "featurized": rows,
        "invalid_load": dict(zip(images.invalid["path"].map(_name), images.invalid["reason"])),
        "invalid_featurize": {_name(p): r for p, r, s in zip(inv["path"], inv["reason"], inv["split"])
                              if s != "load"},
        "invalid_listed": [_name(p) for p in inv["path"]],
        "classes": list(images.classes),
        "counts": images.counts.copy(),
        "summary": images.summary(),
        "html": images._repr_html_(),
        "feature_html": feats._repr_html_(),
        "stats": dict(feats.stats),
        "num_images": images.num_images,
    }
    feats.unpersist()
    return result


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.id for c in FILE_CASES])
def test_bad_file_table(outcome, case):
    name = case.name
    featurized = outcome["featurized"].get(name)
    if case.outcome == "featurized":
        assert featurized and len(featurized) == 1, f"{name} should be featurized once"
        split, label, dim = featurized[0]
        assert label == case.folder and dim == 576
        assert name not in outcome["invalid_listed"]
    else:
        assert featurized is None, f"{name} must not be featurized"
        where = "invalid_load" if case.outcome == "invalid at load" else "invalid_featurize"
        assert case.sees in outcome[where].get(name, ""), outcome[where]
        assert outcome["invalid_listed"].count(name) == 1  # listed once, with its reason


def test_every_file_is_featurized_or_listed_invalid(outcome, bad_root):
    """Accounting: files on disk == featurized rows + invalid rows (load and featurize)."""
    on_disk = sorted(p.name for p in bad_root.rglob("*") if p.is_file())
    featurized = [n for n, rows in outcome["featurized"].items() for _ in rows]
    listed = outcome["invalid_listed"]
    assert sorted(featurized + listed) == on_disk
    assert len(on_disk) == len(featurized) + len(listed)
    assert outcome["stats"]["images"] == len(featurized) == outcome["num_images"] - len(
        outcome["invalid_featurize"])
    assert outcome["stats"]["invalid"] == len(listed)


def test_names_with_html_are_escaped_and_classes_kept(outcome):
    assert set(outcome["classes"]) == {"cats", "dogs", "single", UNICODE_CLASS, HTML_CLASS}
    for html in (outcome["html"], outcome["feature_html"]):
        assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in outcome["html"]
    assert UNICODE_CLASS in outcome["html"]


def test_single_image_class_is_counted_in_train_only(outcome):
    counts = outcome["counts"]
    assert counts.loc["single", "train"] == 1 and counts.loc["single", "test"] == 0
    assert counts.loc["single", "total"] == 1


def test_huge_jpeg_decodes_in_draft_mode_with_bounded_memory(tmp_path):
    """A 10,000 x 10,000 JPEG (300 MB as RGB) decodes to 224 x 224 in a fresh process
    whose peak RSS stays far below one full-size RGB image."""
    path = tmp_path / "huge.jpg"
    path.write_bytes(huge("JPEG"))
    code = (
        "import resource, sys\n"
        "from sparkdl_magics import imaging\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "a = imaging.decode_array(open(sys.argv[1], 'rb').read(), (224, 224))\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(a.shape, (peak - base) // 1024)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert out[:3] == ["(224,", "224,", "3)"]
    assert int(out[3]) < 100, f"decoding grew RSS by {out[3]} MB (full decode: ~300 MB)"


def test_huge_png_is_decoded_not_refused():
    """Decision: a 10,000 x 10,000 PNG (100 MP = imaging.MAX_PIXELS) is a valid image and is
    decoded in full (PNG has no reduced-scale decoding; one image at a time per worker);
    anything declaring more is refused as too large (see the bomb case)."""
    from sparkdl_magics import imaging
    array = imaging.decode_array(huge("PNG"), (224, 224))
    assert array.shape == (224, 224, 3) and array[0, 0].tolist() == [200, 30, 30]
    with pytest.raises(imaging.InvalidImage, match="image too large"):
        imaging.probe(bomb_png(10_001, 10_000))


# --------------------------------------------------------------------------- other cases

@dataclass(frozen=True)
class Case:
    id: str
    sees: str  # the one line the user sees (a substring of it)
    run: Callable  # run(env) -> raises/returns; checked in test_case_table


class Env:
    """What the cases need, created on demand."""

    def __init__(self, request, tmp_path):
        self.request = request
        self.tmp = tmp_path

    @property
    def ip(self):
        return self.request.getfixturevalue("ip")

    @property
    def spark(self):
        return self.request.getfixturevalue("session_pool").get("local")

    def cell(self, text: str) -> str:
        """Run a cell; return the one-line UsageError message it raises."""
        from IPython.core.error import UsageError
        with pytest.raises(UsageError) as info:
            self.ip.run_cell(text)
        message = str(info.value)
        assert "\n" not in message.strip(), message
        assert "Traceback" not in message and "at org.apache" not in message
        assert "py4j" not in message.lower() and "java.lang" not in message
        return message


def _empty_folder(env):
    (env.tmp / "empty").mkdir()
    return env.cell(f"%%dlload imgs\npath: {env.tmp / 'empty'}")


def _no_images(env):
    folder = env.tmp / "docs" / "a"
    folder.mkdir(parents=True)
    (folder / "readme.txt").write_text("hello")
    (folder / "table.csv").write_text("a,b\n1,2\n")
    return env.cell(f"%%dlload imgs\npath: {env.tmp / 'docs'}")


def _only_bad_files(env):
    folder = env.tmp / "bad" / "a"
    folder.mkdir(parents=True)
    (folder / "x.jpg").write_bytes(b"not a jpeg")
    (folder / "y.png").write_bytes(b"")
    return env.cell(f"%%dlload imgs\npath: {env.tmp / 'bad'}")


def _missing_path(env):
    return env.cell(f"%%dlload imgs\npath: {env.tmp / 'nowhere'}")


def _csv_folder(env) -> Path:
    folder = env.tmp / "oi"
    folder.mkdir()
    for name, seed in (("a1", 1), ("a2", 2), ("a3", 3), ("b1", 4), ("b2", 5), ("b3", 6),
                       ("nolabel", 7), ("multi", 8), ("badconf", 9)):
        (folder / f"{name}.jpg").write_bytes(small_jpeg(seed))
    return folder


def _csv_problems(env):
    folder = _csv_folder(env)
    csv = env.tmp / "labels.csv"
    csv.write_text("ImageID,LabelName,Confidence\n"
                   "a1,Cat,1\na2,Cat,1\na3,Cat,1\nb1,Dog,1\nb2,Dog,1\nb3,Dog,1\n"
                   "a1,Cat,1\n"                    # duplicate row: counted once
                   "multi,Cat,1\nmulti,Dog,1\n"    # duplicate id, two labels
                   "badconf,Dog,high\n"            # confidence not a number
                   ",Cat,1\n,Dog,1\n")             # rows without an id
    from sparkdl_magics import load_images
    images = load_images(str(folder), labels=str(csv), split=1, spark=env.spark)
    assert images.classes == ["Cat", "Dog"] and images.num_images == 6
    s = images.stats
    assert (s["unlabelled"], s["multi_label"], s["no_id"], s["bad_confidence"]) == (2, 1, 2, 1)
    return images.summary()


def _csv_missing_column(env):
    _csv_folder(env)
    csv = env.tmp / "labels.csv"
    csv.write_text("Image,Label\na1,Cat\n")
    return env.cell(f"%%dlload imgs\npath: {env.tmp / 'oi'}\nlabels: {csv}")


def _csv_missing_file(env):
    _csv_folder(env)
    return env.cell(f"%%dlload imgs\npath: {env.tmp / 'oi'}\nlabels: {env.tmp / 'nope.csv'}")


def _model_missing(env):
    from sparkdl_magics.weights import resolve_spec
    from sparkdl_magics.errors import OptionError
    with pytest.raises(OptionError) as info:
        resolve_spec(str(env.tmp / "no_such_model.keras"))
    return str(info.value)


def _model_not_a_model(env):
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.weights import resolve_spec
    path = env.tmp / "model.keras"
    path.write_text("definitely not a zip")
    with pytest.raises(OptionError) as info:
        resolve_spec(str(path))
    return str(info.value)


def _model_h5_not_a_model(env):
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.weights import resolve_spec
    path = env.tmp / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(OptionError) as info:
        resolve_spec(str(path))
    return str(info.value)


def _model_folder_not_savedmodel(env):
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.weights import resolve_spec
    (env.tmp / "some_folder").mkdir()
    with pytest.raises(OptionError) as info:
        resolve_spec(str(env.tmp / "some_folder"))
    return str(info.value)


def _model_name_typo(env):
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.weights import resolve_spec
    with pytest.raises(OptionError) as info:
        resolve_spec("ResNet5O")
    return str(info.value)


OPTION_CASES = [
    # (magic, cell, expected substring)
    ("dlspark unknown flag", "%dlspark --mastr local[2]", "unknown option 'mastr' — did you mean 'master'?"),
    ("dlspark bad conf", "%dlspark --master local[1] --conf nonsense", "option 'conf': expected key=value"),
    ("dlload unknown key", "%%dlload x\npath: /tmp\nsplt: 0.8", "unknown option 'splt' — did you mean 'split'?"),
    ("dlload bad type", "%%dlload x\npath: /tmp\nsplit: lots", "option 'split': expected a number"),
    ("dlload bad choice", "%%dlload x\npath: /tmp\ncheck: full", "option 'check'"),
    ("featurize unknown key", "%%featurize x\nbatchsize: 8", "unknown option 'batchsize' — did you mean 'batch_size'?"),
    ("featurize bad type", "%%featurize x\nbatch_size: many", "option 'batch_size': expected a whole number"),
    ("featurize bad value", "%%featurize x\nbatch_size: 0", "option 'batch_size': must be at least 1"),
    ("fit bad type", "%%fit x\nfolds: two", "option 'folds': expected a whole number"),
    ("fit bad choice", "%%fit x\nclassifier: svm_rbf", "option 'classifier'"),
    ("evaluate unknown key", "%%evaluate clf\ntop_error: 3", "unknown option 'top_error' — did you mean 'top_errors'?"),
    ("evaluate bad type", "%%evaluate clf\ntop_errors: -1", "option 'top_errors': must be at least 0"),
    ("predict unknown key", "%%predict x\ntopk: 3", "unknown option 'topk' — did you mean 'top_k'?"),
    ("predict bad type", "%%predict x\ntop_k: [1, 2]", "option 'top_k'"),
    ("dlmodels unknown flag", "%dlmodels --famly mobile", "unknown option 'famly' — did you mean 'family'?"),
    ("dlapp unknown flag", "%dlapp --modl ResNet50", "unknown option 'modl' — did you mean 'model'?"),
    ("body not key: value", "%%dlload x\njust some words", "the cell body must be 'key: value' lines"),
    ("unclosed list", "%%dlload x\nclasses: [a, b", "cannot read the cell body at line 1"),
]


def _option_case(cell: str):
    def run(env):
        return env.cell(cell)
    return run


CASES: List[Case] = [
    Case("empty folder", "no files there (empty folder?)", _empty_folder),
    Case("folder with no images", "no image files (extensions: ", _no_images),
    Case("folder with only invalid files", "no valid images in ", _only_bad_files),
    Case("path that does not exist", "does not exist", _missing_path),
    Case("CSV: missing ids, duplicate ids, bad confidence values",
         "1 with several labels (drop); 2 without a label in the table; 2 label rows without "
         "an image id (ignored); 1 label rows whose confidence is not a number (ignored)",
         _csv_problems),
    Case("CSV without the id column", "option 'id_column': the label table has no column "
         "'ImageID'", _csv_missing_column),
    Case("CSV that does not exist", "option 'labels': ", _csv_missing_file),
    Case("model path that does not exist", "option 'model': no model file at ", _model_missing),
    Case("model file that is not a model (.keras)", "option 'model': cannot load ",
         _model_not_a_model),
    Case("model file that is not a model (.h5)", "option 'model': cannot load ",
         _model_h5_not_a_model),
    Case("model folder that is not a SavedModel", "is a folder but not a SavedModel",
         _model_folder_not_savedmodel),
    Case("model name typo", "unknown model 'ResNet5O' — did you mean 'ResNet50'?",
         _model_name_typo),
] + [Case(f"option: {cid}", sees, _option_case(cell)) for cid, cell, sees in OPTION_CASES]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_table(case, request, tmp_path):
    message = case.run(Env(request, tmp_path))
    assert case.sees in message, message
    assert "\n" not in message.strip()


# --------------------------------------------------------------------------- Lambda layers

def _lambda_model(path: Path, marker: Path) -> None:
    """A model whose Lambda layer writes *marker* whenever its code runs."""
    import keras
    inputs = keras.Input((32, 32, 3))
    # the marker path is a constant in the function's code (what Keras serializes)
    evil = eval(f"lambda t: (open({str(marker)!r}, 'w').write('ran'), t * 2.0)[1]")
    x = keras.layers.Lambda(evil, name="evil")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2)(x)
    keras.Model(inputs, out).save(str(path))
    keras.backend.clear_session()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layer_never_runs_unless_unsafe(tmp_path, suffix, ip, spark):
    from IPython.core.error import UsageError

    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.weights import resolve_spec
    marker = tmp_path / "lambda_ran.txt"
    path = tmp_path / f"evil{suffix}"
    _lambda_model(path, marker)
    if marker.exists():
        marker.unlink()  # building the model ran it once; loading must not
    with pytest.raises(OptionError, match="unsafe: true"):
        resolve_spec(str(path))
    assert not marker.exists(), "safe mode executed the Lambda layer's code"
    ip.user_ns["imgs"] = spark.createDataFrame([("a.jpg", small_jpeg())],
                                               "path string, content binary")
    with pytest.raises(UsageError, match="contains Python code .* unsafe: true"):
        ip.run_cell(f"%%featurize imgs\nmodel: {path}\npreprocess: unit")
    assert not marker.exists(), "the magic executed the Lambda layer's code"
    resolve_spec(str(path), unsafe=True)  # explicitly trusted: the code may run
    assert marker.exists()
