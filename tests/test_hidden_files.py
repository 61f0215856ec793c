"""Nothing lost: every file under a loaded folder is loaded, listed invalid, or listed as
skipped with a reason — also names Spark's file sources hide (``_x.jpg``, ``._x.jpg``,
``.DS_Store``, hidden folders) — with folder labels (local, local-cluster, Connect), a
label table, and for a stream. Expected values come from the tree the test writes and
from ``os.walk``, never from the loader."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import local_path
from imagegen import encode, synthetic_image, write_labelled_folder
from sparkdl_magics.errors import DataError
from sparkdl_magics.loading import inventory, load_images

#: The files of the tree that are system files, and what their reason must name.
SYSTEM = {"dog/._plain1.jpg": "AppleDouble", "dog/.DS_Store": ".DS_Store",
          "Thumbs.db": "Thumbs.db", "desktop.ini": "desktop.ini",
          ".ipynb_checkpoints/x.jpg": ".ipynb_checkpoints", "dog/.hidden/y.jpg": ".hidden"}
CORRUPT = "dog/corrupt.jpg"


def _jpeg(seed: int) -> bytes:
    return encode(synthetic_image(seed % 2, seed, (48, 40)), "JPEG")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """cat/ and dog/ with 4 images each, plus ``cat/_underscore_first.jpg``,
    ``cat/ok.jpg``, the system files of :data:`SYSTEM` and one corrupt image."""
    root = tmp_path_factory.mktemp("hidden_names")
    write_labelled_folder(root, ["cat", "dog"], per_class=4, seed=5)
    (root / "cat" / "_underscore_first.jpg").write_bytes(_jpeg(1))
    (root / "cat" / "ok.jpg").write_bytes(_jpeg(2))
    (root / "dog" / "._plain1.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00" + b"\0" * 80)
    (root / "dog" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + b"\0" * 40)
    (root / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 40)
    (root / "desktop.ini").write_text("[.ShellClassInfo]\nIconResource=x.ico\n")
    for hidden in (".ipynb_checkpoints", "dog/.hidden"):
        (root / hidden).mkdir(parents=True)
    (root / ".ipynb_checkpoints" / "x.jpg").write_bytes(_jpeg(3))
    (root / "dog" / ".hidden" / "y.jpg").write_bytes(_jpeg(4))
    (root / CORRUPT).write_bytes(_jpeg(5)[:120])
    return root


def on_disk(root: Path) -> set:
    """Every file under root, relative (os.walk: hidden names included)."""
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root)
            for f in files}


def relative(root: Path, uris) -> list:
    return sorted(os.path.relpath(local_path(u), root) for u in uris)


def reasons_of(root: Path, table) -> dict:
    return {os.path.relpath(local_path(p), root): r for p, r in zip(table["path"], table["reason"])}


def test_every_file_is_loaded_invalid_or_skipped_with_a_reason(spark_any, tree):
    files = on_disk(tree)
    images = load_images(str(tree), split=1, spark=spark_any)
    loaded = dict(images.df.select("path", "label_name").collect())
    invalid = relative(tree, images.invalid["path"])
    skipped = reasons_of(tree, images.skipped)
    # nothing lost, nothing counted twice
    assert images.num_images + images.num_invalid + images.num_skipped == len(files)
    assert set(relative(tree, loaded)) | set(invalid) | set(skipped) == files
    # the underscore image is the user's image, with its folder's label
    by_name = {os.path.relpath(local_path(p), tree): c for p, c in loaded.items()}
    assert by_name["cat/_underscore_first.jpg"] == "cat" and by_name["cat/ok.jpg"] == "cat"
    assert invalid == [CORRUPT]
    assert set(skipped) == set(SYSTEM)
    for path, what in SYSTEM.items():
        assert skipped[path].startswith("system file") and what in skipped[path], path
    assert images.stats["skipped_system"] == len(SYSTEM)
    assert f"{len(SYSTEM)} system files skipped" in images.summary()
    page = images._repr_html_()
    assert f"{len(SYSTEM)} file(s) skipped" in page and "AppleDouble" in page
    assert f"{len(SYSTEM)} system files skipped" in page
    # the bytes of a file Spark does not list are the file's bytes
    content = images.df.filter(images.df.path.endswith("/_underscore_first.jpg")).first()
    assert bytes(content["content"]) == (tree / "cat" / "_underscore_first.jpg").read_bytes()


#: Names on the edge of Spark's rule (all valid images): hidden or not, each loads once.
EDGE_NAMES = ("c/_a=1.jpg", "c/_metadata.jpg", "c/_x.jpg", "c/x.Jpg", "c/.x.jpg",
              "c/_d/z.jpg", "c/_k=1/v.jpg", "c/_metadata_d/w.jpg", "c/ok.jpg", "c/sp ace.jpg",
              "c/per%25.jpg", "c/x.jpg._COPYING_")


def test_the_hidden_name_rule_is_sparks_and_each_image_loads_once(spark, tmp_path):
    for i, rel in enumerate(EDGE_NAMES):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(_jpeg(10 + i))
    scanned = relative(tmp_path, [r[0] for r in spark.read.format("binaryFile")
                                  .option("recursiveFileLookup", "true")
                                  .load(str(tmp_path)).select("path").collect()])
    for rel in EDGE_NAMES:
        assert inventory.spark_hides(rel.split("/")) == (rel not in scanned), rel
    images = load_images(str(tmp_path), split=1, spark=spark)
    got = relative(tmp_path, [r[0] for r in images.df.select("path").collect()])
    system = {"c/.x.jpg"}
    not_image = {"c/x.jpg._COPYING_"}
    assert got == sorted(set(EDGE_NAMES) - system - not_image)  # each exactly once
    assert images.num_invalid == 0
    assert relative(tmp_path, images.skipped["path"]) == sorted(system | not_image)
    assert "1 other file skipped (not images)" in images.summary()


def test_label_table_mode_accounts_for_every_file(spark_any, tree, tmp_path):
    files = on_disk(tree)
    images_on_disk = sorted(f for f in files if f not in SYSTEM)
    named = [f for f in images_on_disk if f != "dog/dog_0003.png"]  # one left unlabelled
    rows = [f"{Path(f).stem},{f.split('/')[0]}" for f in named] + ["gone_404,cat"]
    (tmp_path / "labels.csv").write_text("ImageID,LabelName\n" + "\n".join(rows) + "\n")
    images = load_images(str(tree), labels=str(tmp_path / "labels.csv"), split=1,
                         spark=spark_any)
    s = images.stats
    assert images.num_images + images.num_invalid + s["unlabelled"] + images.num_skipped \
        == len(files)
    loaded = dict(images.df.select("path", "label_name").collect())
    assert {os.path.relpath(local_path(p), tree): c for p, c in loaded.items()}[
        "cat/_underscore_first.jpg"] == "cat"
    assert relative(tree, images.invalid["path"]) == [CORRUPT]
    assert set(relative(tree, images.skipped["path"])) == set(SYSTEM)
    # a labelled file that does not exist is listed
    assert s["missing_images"] == 1 and s["missing_examples"] == ["gone_404"]
    assert "gone_404" in images.summary()


def test_a_streamed_folder_lists_every_file_it_leaves_out(spark, tree):
    check_stream_accounting(spark, tree, "hidden_stream_local")


def test_a_streamed_folder_lists_every_file_it_leaves_out_over_connect(spark_connect, tree):
    check_stream_accounting(spark_connect, tree, "hidden_stream_connect")


def check_stream_accounting(spark, tree: Path, table: str) -> None:
    from sparkdl_magics.streaming import read_image_stream, run_available_now, unstreamed_files
    files = on_disk(tree)
    run_available_now(read_image_stream(str(tree), spark=spark), sink="memory",
                      query_name=table)
    streamed = relative(tree, [r[0] for r in spark.sql(f"SELECT path FROM {table}").collect()])
    left_out = unstreamed_files(str(tree), spark=spark)
    reasons = reasons_of(tree, left_out)
    assert len(streamed) + len(reasons) == len(files)
    assert set(streamed) | set(reasons) == files
    assert set(SYSTEM) <= set(reasons) and "Thumbs.db" not in streamed
    assert reasons["cat/_underscore_first.jpg"] == inventory.STREAM_HIDDEN
    # a glob: what it does not match is listed too
    pngs = unstreamed_files(str(tree), glob="*.png", spark=spark)
    assert any("does not match the glob *.png" in r for r in pngs["reason"])


def test_a_folder_of_system_files_only_says_so_in_one_line(spark, tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "._a.jpg").write_bytes(b"\x00\x05\x16\x07")
    with pytest.raises(DataError) as err:
        load_images(str(tmp_path), spark=spark)
    message = str(err.value)
    assert "\n" not in message and "2 skipped file(s)" in message and "system file" in message


@pytest.mark.parametrize("parts,expected", [
    (["a", "._b.jpg"], "AppleDouble"), (["DESKTOP.INI"], "desktop.ini"),
    (["a", "thumbs.db"], "Thumbs.db"), ([".git", "x", "y.jpg"], ".git"),
    (["__MACOSX", "a", "b.jpg"], "__MACOSX"), ([".secret.jpg"], "starts with '.'"),
    (["_a", "b.jpg"], None), (["a", "_b.jpg"], None), (["a.jpg"], None)])
def test_system_files_are_named_by_what_they_are(parts, expected):
    reason = inventory.system_reason(parts)
    assert (reason is None) if expected is None else (expected in reason)


def test_hadoop_globs_are_matched_like_spark():
    assert inventory.expand_braces("*.{jpg,JPG}") == ["*.jpg", "*.JPG"]
    assert inventory.glob_matches("a.JPG", "*.{jpg,JPG}")
    assert not inventory.glob_matches("a.Jpg", "*.{jpg,JPG}")
    assert inventory.glob_matches("a1.png", "a[^b]*.png") and inventory.glob_matches("x", None)


def test_storage_the_workers_cannot_walk_is_said_not_guessed():
    assert inventory.local_path("file:///data/x") == "/data/x"
    assert inventory.local_path("file:/data/x") == "/data/x"
    assert inventory.local_path("rel/x") == "rel/x"
    assert inventory.local_path("s3a://bucket/x") is None
    # no Spark job is started for them: nothing to walk, and the result says so
    assert not inventory.Unlisted.find(None, ["s3a://bucket/images"], "*.jpg").walked
    assert not inventory.Unlisted.find(None, ["/data"], "*.jpg",
                                       index=["hdfs://nn/data/a.jpg"]).walked


def test_the_summary_counts_skipped_files_and_says_when_names_were_not_listed():
    import pandas as pd
    from sparkdl_magics.results import ImageSet
    counts = pd.DataFrame({"images": [3], "total": [3], "invalid": [0]}, index=["a"])
    images = ImageSet(df=None, train=None, test=None, classes=["a"], counts=counts,
                      invalid=pd.DataFrame([], columns=["path", "reason"]),
                      stats={"images": 3, "skipped_system": 1, "skipped_other": 2,
                             "hidden_unchecked": True})
    text = images.summary()
    assert "1 system file skipped" in text and "2 other files skipped (not images)" in text
    assert "names starting with '_' or '.' not listed" in text
    assert images.num_skipped == 0 and "skipped, not images" not in images._repr_html_()
