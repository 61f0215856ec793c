"""load_images / ImageSet and %%dlload: folder and CSV labels, sampling, stratified seeded splits,
invalid files, DataFrame sources, errors and escaped display — in local, local-cluster
and Connect modes. Expected values are computed independently from the files on disk."""
from __future__ import annotations

import html
import inspect
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.error import UsageError

from imagegen import encode, synthetic_image, write_corrupt_files, write_labelled_folder
from sparkdl_magics.errors import DataError, OptionError
from sparkdl_magics.imaging import IMAGE_EXTENSIONS
from sparkdl_magics.loading import load_images, sample_size, split_sizes
from sparkdl_magics.magics import dlload
from sparkdl_magics.results import ImageSet


def files_on_disk(root: Path) -> dict:
    """{file name: class} for image files under root/<class>/ (independent of Spark)."""
    return {p.name: p.parent.name for p in Path(root).rglob("*")
            if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS}


def rows(df, *cols):
    return [tuple(r) for r in df.select(*cols).collect()]


def name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- folders

def test_folder_layout_gives_labels_and_a_stratified_seeded_split(spark_any, image_folder):
    images = load_images(str(image_folder), split=0.75, seed=7, spark=spark_any)
    expected = files_on_disk(image_folder)
    per_class = Counter(expected.values())  # 12 each
    assert images.classes == sorted(per_class)
    got = rows(images.df, "path", "label", "label_name", "split")
    assert {name(p): c for p, _, c, _ in got} == expected
    assert all(images.classes[int(label)] == c for _, label, c, _ in got)
    assert images.df.columns[:4] == ["path", "content", "label", "label_name"]
    assert dict(images.df.dtypes)["content"] == "binary"
    # stratified: every class 3/4 train, 1/4 test; train and test are disjoint
    assert Counter((c, s) for _, _, c, s in got) == {
        **{(c, "train"): n * 3 // 4 for c, n in per_class.items()},
        **{(c, "test"): n // 4 for c, n in per_class.items()}}
    train, test = rows(images.train, "path"), rows(images.test, "path")
    assert sorted(train + test) == sorted((p,) for p, *_ in got) and not set(train) & set(test)
    assert images.counts.to_dict("index") == {
        c: {"train": 9, "test": 3, "total": 12, "invalid": 0} for c in per_class}
    assert images.summary().startswith("36 images in 3 classes; train 27 / test 9; 0 invalid")
    # the bytes stay compressed: exactly the file's bytes
    path, content = images.df.select("path", "content").first()
    assert bytes(content) == (image_folder / expected[name(path)] / name(path)).read_bytes()
    # same seed, same split
    again = load_images(str(image_folder), split=0.75, seed=7, spark=spark_any)
    assert sorted(rows(again.test, "path")) == sorted(test)


def test_another_seed_gives_another_split_and_three_way_splits(spark, image_folder):
    a = load_images(str(image_folder), split=0.75, seed=7, spark=spark)
    b = load_images(str(image_folder), split=0.75, seed=8, spark=spark)
    assert sorted(rows(a.test, "path")) != sorted(rows(b.test, "path"))
    images = load_images(str(image_folder), split=[0.5, 0.25, 0.25], spark=spark)
    assert images.validation is not None
    for part, share in ((images.train, 6), (images.validation, 3), (images.test, 3)):
        assert Counter(c for (c,) in rows(part, "label_name")) == {
            c: share for c in images.classes}
    assert images.df.count() == 36


@pytest.mark.parametrize("m,fractions,expected", [
    (12, (0.8, 0.2), [10, 2]), (2, (0.9, 0.1), [1, 1]), (1, (0.8, 0.2), [1, 0]),
    (3, (0.8, 0.1, 0.1), [1, 1, 1]), (10, (0.7, 0.15, 0.15), [7, 2, 1]), (5, (1.0,), [5])])
def test_split_sizes_round_and_keep_every_split_non_empty(m, fractions, expected):
    assert split_sizes(m, fractions) == expected
    assert sum(split_sizes(m, fractions)) == m


def test_sample_size_fraction_and_cap():
    assert sample_size(12, 0.5, None) == 6
    assert sample_size(3, 0.1, None) == 1  # never empties a class
    assert sample_size(12, None, 5) == 5 and sample_size(3, None, 5) == 3


def test_sampling_per_class_keeps_n_per_class_and_splits_them(spark_any, image_folder):
    few = load_images(str(image_folder), per_class=5, seed=3, spark=spark_any)
    got = rows(few.df, "path", "label_name", "split")
    assert Counter((c, s) for _, c, s in got) == {
        **{(c, "train"): 4 for c in few.classes}, **{(c, "test"): 1 for c in few.classes}}
    assert few.stats["sampled_out"] == 36 - 15
    assert few.counts["total"].to_dict() == {c: 5 for c in few.classes}
    thumbs = few.thumbnails()  # previews come from the kept images, decoded on executors
    kept = {p for p, _, _ in got}
    assert {c: len(v) for c, v in thumbs.items()} == {c: 4 for c in few.classes}
    assert all(p in kept and png[:8] == b"\x89PNG\r\n\x1a\n"
               for items in thumbs.values() for p, png in items)


def test_sampling_is_seeded_and_a_fraction_is_per_class(spark, image_folder):
    a = load_images(str(image_folder), per_class=5, seed=3, spark=spark)
    b = load_images(str(image_folder), per_class=5, seed=3, spark=spark)
    assert sorted(rows(a.df, "path")) == sorted(rows(b.df, "path"))
    half = load_images(str(image_folder), sample=0.5, split=1, spark=spark)
    assert half.test is None
    assert Counter(c for (c,) in rows(half.df, "label_name")) == {c: 6 for c in half.classes}


def test_class_subset_keeps_order_given(spark, image_folder):
    images = load_images(str(image_folder), classes=["tulips", "daisy"], spark=spark)
    assert images.classes == ["tulips", "daisy"]
    got = rows(images.df, "label", "label_name")
    assert {(int(label), c) for label, c in got} == {(0, "tulips"), (1, "daisy")}
    assert len(got) == 24


# --------------------------------------------------------------------------- invalid files

def test_invalid_files_are_counted_listed_and_dropped(spark_any, image_folder_with_corrupt):
    images = load_images(str(image_folder_with_corrupt), spark=spark_any)
    bad = {name(p): r for p, r in images.invalid.itertuples(index=False)}
    assert set(bad) == {"empty.jpg", "notes.jpg", "truncated.jpg"}
    assert "0 bytes" in bad["empty.jpg"] and "not an image" in bad["notes.jpg"]
    assert "truncated" in bad["truncated.jpg"]
    loaded = {name(p) for (p,) in rows(images.df, "path")}
    assert not loaded & set(bad)
    good = {n for n in files_on_disk(image_folder_with_corrupt) if n not in bad}
    assert loaded == good
    assert images.counts.loc["daisy", "invalid"] == 3 and images.counts.loc["roses", "invalid"] == 0
    assert "3 invalid files" in images.summary()


def test_decode_check_also_finds_truncated_files(spark, image_folder_with_corrupt):
    images = load_images(str(image_folder_with_corrupt), check="decode", spark=spark)
    assert {name(p) for p in images.invalid["path"]} == {"empty.jpg", "notes.jpg",
                                                         "truncated.jpg"}


# --------------------------------------------------------------------------- CSV labels

@pytest.fixture
def open_images(tmp_path):
    """Flat folder of id-named images and an Open Images style label CSV."""
    folder = tmp_path / "images"
    folder.mkdir()
    ids = [f"{i:016x}" for i in range(40)]
    for i, image_id in enumerate(ids):
        (folder / f"{image_id}.jpg").write_bytes(encode(synthetic_image(i % 3, i, (40, 30)),
                                                        "JPEG"))
    rows_ = []
    for i, image_id in enumerate(ids):
        main = ["Car", "Tree", "Person"][i % 3]
        rows_.append((image_id, main, 1))
        if i % 5 == 0:
            rows_.append((image_id, "Tree" if main != "Tree" else "Car", 1))  # two labels
        if i % 4 == 0:
            rows_.append((image_id, "Person", 0))  # a negative label: ignored
    table = pd.DataFrame(rows_, columns=["ImageID", "LabelName", "Confidence"])
    table.to_csv(tmp_path / "labels.csv", index=False)
    return folder, tmp_path / "labels.csv", table


def expected_labels(table: pd.DataFrame, classes, policy: str) -> Counter:
    """Independent pandas computation of (image id, class) pairs kept by a policy."""
    pos = table[(table.Confidence >= 0.5) & table.LabelName.isin(classes)]
    per_id = pos.groupby("ImageID").LabelName.apply(
        lambda s: sorted(set(s), key=list(classes).index))
    out = Counter()
    for image_id, labels in per_id.items():
        if policy == "drop" and len(labels) > 1:
            continue
        for label in (labels if policy == "all" else labels[:1]):
            out[(image_id, label)] += 1
    return out


def check_csv_labels(spark, open_images, policies):
    folder, csv, table = open_images
    classes = ["Car", "Tree"]
    for policy in policies:
        images = load_images(str(folder), labels=str(csv), classes=classes,
                             multi_label=policy, split=1, spark=spark)
        assert images.classes == classes
        got = Counter((name(p).split(".")[0], c) for p, c in rows(images.df, "path",
                                                                  "label_name"))
        assert got == expected_labels(table, classes, policy), policy
        multi = sum(1 for _, s in table[(table.Confidence > 0) & table.LabelName.isin(classes)]
                    .groupby("ImageID").LabelName.nunique().items() if s > 1)
        assert images.stats["multi_label"] == multi
        no_label = 40 - table[(table.Confidence > 0) & table.LabelName.isin(classes)] \
            .ImageID.nunique()
        assert images.stats["unlabelled"] == no_label
        assert all(images.classes[int(lab)] == c for lab, c in rows(images.df, "label",
                                                                    "label_name"))


def test_csv_labels_with_class_subset_drop_multi_labelled_images(spark_any, open_images):
    check_csv_labels(spark_any, open_images, ["drop"])


def test_csv_labels_multi_label_policies_first_and_all(spark, open_images):
    check_csv_labels(spark, open_images, ["first", "all"])


def test_csv_label_errors_name_the_option(spark, open_images, tmp_path):
    folder, csv, table = open_images
    with pytest.raises(OptionError, match=r"option 'classes': no class 'Cars'.*did you mean 'Car'"):
        load_images(str(folder), labels=str(csv), classes=["Cars"], spark=spark)
    table.rename(columns={"ImageID": "Id"}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(OptionError, match=r"option 'id_column'.*no column 'ImageID'.*columns: Id"):
        load_images(str(folder), labels=str(tmp_path / "bad.csv"), spark=spark)
    with pytest.raises(DataError, match=r"option 'labels'.*does not exist"):
        load_images(str(folder), labels=str(tmp_path / "missing.csv"), spark=spark)


def test_parquet_label_table_and_pandas_table(spark, open_images, tmp_path):
    folder, _, table = open_images
    table.to_parquet(tmp_path / "labels.parquet")
    a = load_images(str(folder), labels=str(tmp_path / "labels.parquet"), split=1, spark=spark)
    b = load_images(str(folder), labels=table, split=1, spark=spark)
    assert a.classes == b.classes == ["Car", "Person", "Tree"]
    assert sorted(rows(a.df, "path", "label_name")) == sorted(rows(b.df, "path", "label_name"))


# --------------------------------------------------------------------------- other sources

def test_spark_image_source_frame_is_accepted(spark_any, image_folder_with_corrupt):
    frame = (spark_any.read.format("image").option("dropInvalid", "false")
             .option("recursiveFileLookup", "true").load(str(image_folder_with_corrupt)))
    images = load_images(frame, split=0.5)
    assert images.df.columns[:4] == ["path", "image", "label", "label_name"]
    # Spark's image source decodes (Java ImageIO pads truncated JPEGs); what it could not
    # decode becomes an empty struct, which is listed as invalid
    invalid = {name(p) for p in images.invalid["path"]}
    assert "notes.jpg" in invalid and "empty.jpg" not in invalid  # the scan skips 0 bytes
    expected = {n: c for n, c in files_on_disk(image_folder_with_corrupt).items()
                if n not in invalid | {"empty.jpg"}}
    got = rows(images.df, "path", "label_name")
    assert {name(p): c for p, c in got} == expected
    width, n_channels = images.df.select("image.width", "image.nChannels").first()
    assert width > 0 and n_channels in (1, 3, 4)
    assert all(png for items in images.thumbnails().values() for _, png in items)


def test_binaryfile_frame_and_list_of_paths_are_accepted(spark, image_folder):
    frame = spark.read.format("binaryFile").option("recursiveFileLookup", "true") \
        .load(str(image_folder))
    from_frame = load_images(frame, spark=spark)
    listed = load_images([str(image_folder / "daisy"), str(image_folder / "roses")], spark=spark)
    globbed = load_images(str(image_folder / "*" / "*.png"), labels="none", spark=spark)
    assert from_frame.counts["total"].sum() == 36
    assert listed.classes == ["daisy", "roses"] and listed.counts["total"].sum() == 24
    pngs = [n for n in files_on_disk(image_folder) if n.endswith(".png")]
    assert sorted(name(p) for (p,) in rows(globbed.df, "path")) == sorted(pngs)
    assert globbed.classes == [] and globbed.test is None
    assert rows(globbed.df, "label").count((None,)) == len(pngs)
    # an unlabelled set is one train split, and knows its size (featurize counts nothing)
    assert globbed.split_sizes() == {"train": globbed.train.count()} == {"train": len(pngs)}


# --------------------------------------------------------------------------- errors

def test_missing_path_is_one_clear_line(spark_any, tmp_path):
    with pytest.raises(DataError, match=r"option 'path': .*nope does not exist"):
        load_images(str(tmp_path / "nope"), spark=spark_any)


def test_empty_folder_and_folder_without_images(spark, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no files there"):
        load_images(str(tmp_path / "empty"), spark=spark)
    (tmp_path / "docs" / "a").mkdir(parents=True)
    (tmp_path / "docs" / "a" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"no image files.*readme.txt"):
        load_images(str(tmp_path / "docs"), spark=spark)
    write_corrupt_files(tmp_path / "bad" / "x")
    with pytest.raises(DataError, match=r"no valid images.*3 invalid"):
        load_images(str(tmp_path / "bad"), spark=spark)


def test_bad_options_name_the_option_and_choices(spark, image_folder):
    for kwargs, pattern in (
            ({"split": 1.5}, r"option 'split'"), ({"sample": 2}, r"option 'sample'"),
            ({"per_class": 0}, r"option 'per_class'"),
            ({"multi_label": "several"}, r"valid: drop, first, all, keep"),
            ({"classes": ["tulip"]}, r"no class 'tulip'.*did you mean 'tulips'"),
            ({"labels": "folder"}, r"option 'labels'.*did you mean 'folders'")):
        with pytest.raises(OptionError, match=pattern):
            load_images(str(image_folder), spark=spark, **kwargs)


# --------------------------------------------------------------------------- display

def test_label_and_file_names_render_as_text_not_html(spark, tmp_path):
    evil = "<img src=x onerror=alert(1)>"
    write_labelled_folder(tmp_path / "d", [evil, "ok"], per_class=3, seed=5)
    (tmp_path / "d" / evil / f"{evil}.jpg").write_bytes(b"")  # an invalid file, listed
    images = load_images(str(tmp_path / "d"), spark=spark)
    assert images.classes == [evil, "ok"]
    page = images._repr_html_()
    assert evil not in page
    assert html.escape(evil) in page
    assert page.count("data:image/png;base64,") == 6  # 3 thumbnails per class
    assert "1 invalid file" in page


def test_every_option_is_a_load_images_keyword_with_the_same_default():
    params = inspect.signature(load_images).parameters
    for opt in dlload.SPEC.options:
        assert opt.name in params, opt.name
        if opt.name not in ("path", "extensions"):
            assert params[opt.name].default == opt.default, opt.name


def test_help_lists_every_option_with_its_default(ip):
    text = dlload.SPEC.help_text()
    for opt in dlload.SPEC.options:
        assert f"  {opt.name} " in text
    assert "[default: 'folders']" in text and "drop, first, all" in text


def test_dlload_cell_stores_the_same_imageset_as_the_library(ip, spark_any, image_folder):
    ip.run_cell(f"""%%dlload flowers
path: {image_folder}
per_class: 4
split: 0.5
seed: 11
""")
    images = ip.user_ns["flowers"]
    assert isinstance(images, ImageSet)
    direct = load_images(str(image_folder), per_class=4, split=0.5, seed=11, spark=spark_any)
    assert images.classes == direct.classes
    assert sorted(images.train.select("path").collect()) == \
        sorted(direct.train.select("path").collect())
    assert images.counts.equals(direct.counts)


def test_line_form_with_path_positional_and_flags(ip, spark, image_folder):
    result = ip.run_line_magic("dlload", f"few {image_folder} --classes roses --split 1")
    assert ip.user_ns["few"] is result
    assert result.classes == ["roses"] and result.test is None


def test_a_dataframe_variable_is_accepted_as_path(ip, spark, image_folder):
    ip.user_ns["frame"] = spark.read.format("image").option("recursiveFileLookup", "true") \
        .load(str(image_folder))
    result = ip.run_line_magic("dlload", "imgs --path frame --split 1")
    assert result.image_col == "image" and result.counts["total"].sum() == 36


def test_errors_are_one_line_and_nothing_is_stored(ip, spark, tmp_path):
    ip.user_ns.pop("missing", None)
    with pytest.raises(UsageError, match=r"^%%dlload: option 'path': .*nope does not exist$"):
        ip.run_cell(f"%%dlload missing\npath: {tmp_path / 'nope'}\n")
    assert "missing" not in ip.user_ns
    with pytest.raises(UsageError, match=r"unknown option 'per_clas'.*did you mean 'per_class'"):
        ip.run_cell(f"%%dlload x\npath: {tmp_path}\nper_clas: 3\n")
    with pytest.raises(UsageError, match=r"option 'multi_label'.*valid: drop, first, all, keep"):
        ip.run_cell(f"%%dlload x\npath: {tmp_path}\nmulti_label: several\n")
    with pytest.raises(UsageError, match=r"option 'path' is required"):
        ip.run_cell("%%dlload x\nsplit: 0.5\n")
