"""Label tables as real data sets ship them.

Ids as stems (Open Images), file names (NIH ChestX-ray14's ``Image Index``, Kaggle's
``train.csv``), paths relative to the folder, absolute paths; ids naming two files;
rows without an image; several labels in one cell (``Finding Labels`` with ``|``); a
CSV saved with a UTF-8 byte-order mark and CRLF line ends. Every table is written by
the test, next to images it writes.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from imagegen import encode, synthetic_image

from sparkdl_magics.errors import DataError, OptionError
from sparkdl_magics.loading import load_images

LABELS = ["Car", "Tree", "Person"]


def write_images(root: Path, n: int = 12, folders=("a", "b")) -> list:
    """``root/<folder>/idNNN.jpg`` spread over *folders*; returns the paths."""
    paths = []
    for i in range(n):
        folder = root / folders[i % len(folders)]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"id{i:03d}.jpg"
        path.write_bytes(encode(synthetic_image(i % 3, i, (32, 24)), "JPEG"))
        paths.append(path)
    return paths


def label_of(i: int) -> str:
    return LABELS[i % 3]


def ids_in_form(form: str, root: Path, paths: list) -> list:
    return {"stem": [p.stem for p in paths],
            "file name": [p.name for p in paths],
            "relative path": [str(p.relative_to(root)) for p in paths],
            "absolute path": [str(p) for p in paths],
            "file URI": [p.as_uri() for p in paths]}[form]


def got_labels(images) -> Counter:
    return Counter((r["path"].rsplit("/", 1)[-1], r["label_name"])
                   for r in images.df.select("path", "label_name").collect())


@pytest.mark.parametrize("form", ["stem", "file name", "relative path", "absolute path",
                                  "file URI"])
def test_ids_match_in_every_form_and_the_summary_says_which(spark, tmp_path, form):
    root = tmp_path / "images"
    paths = write_images(root)
    ids = ids_in_form(form, root, paths)
    lines = ["ImageID,LabelName"] + [f"{i},{label_of(n)}" for n, i in enumerate(ids)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    images = load_images(str(root), labels=str(tmp_path / "labels.csv"), split=1, spark=spark)
    assert got_labels(images) == Counter((p.name, label_of(n)) for n, p in enumerate(paths))
    shown = "absolute path" if form == "file URI" else form
    assert images.stats["id_match"] == {shown: len(paths)}
    assert f"label ids matched as {shown}s" in images.summary()
    assert "missing_images" not in images.stats and "ambiguous_ids" not in images.stats


def test_mixed_forms_relative_to_a_folder_above_and_windows_separators(spark, tmp_path):
    root = tmp_path / "data" / "images"
    paths = write_images(root, n=6)
    ids = [paths[0].stem, paths[1].name, "images/" + str(paths[2].relative_to(root)),
           "./" + str(paths[3].relative_to(root)), str(paths[4].relative_to(root))
           .replace("/", "\\"), str(paths[5])]
    lines = ["ImageID,LabelName"] + [f"{i},{label_of(n)}" for n, i in enumerate(ids)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    images = load_images(str(root), labels=str(tmp_path / "labels.csv"), split=1, spark=spark)
    assert got_labels(images) == Counter((p.name, label_of(n)) for n, p in enumerate(paths))
    assert images.stats["id_match"] == {"absolute path": 1, "relative path": 3,
                                        "file name": 1, "stem": 1}
    assert "label ids matched as absolute paths (1) and relative paths (3)" in images.summary()


def test_an_id_naming_two_files_is_reported_not_guessed(spark, tmp_path):
    root = tmp_path / "images"
    paths = write_images(root, n=6)  # a/id000, b/id001, a/id002, ...
    twin = root / "b" / "id002.jpg"  # a/id002.jpg and b/id002.jpg: the stem is ambiguous
    twin.write_bytes(paths[2].read_bytes())
    lines = ["ImageID,LabelName"] + [f"{p.stem},{label_of(n)}" for n, p in enumerate(paths)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    images = load_images(str(root), labels=str(tmp_path / "labels.csv"), split=1, spark=spark)
    assert images.stats["ambiguous_ids"] == 1
    assert list(images.stats["ambiguous_examples"]) == ["id002"]
    assert [p.rsplit("/", 2)[-2] for p in images.stats["ambiguous_examples"]["id002"]] == \
        ["a", "b"]
    assert "id002.jpg" not in {k[0] for k in got_labels(images)}  # neither file is labelled
    assert images.num_images == 5 and images.stats["unlabelled"] == 2
    assert "1 ambiguous id naming several files, left out (e.g. id002: a/id002.jpg, " \
           "b/id002.jpg)" in images.summary()
    # paths relative to the folder tell the two apart
    lines = ["ImageID,LabelName", "a/id002.jpg,Car", "b/id002.jpg,Tree"]
    (tmp_path / "rel.csv").write_text("\n".join(lines) + "\n")
    images = load_images(str(root), labels=str(tmp_path / "rel.csv"), split=1, spark=spark)
    assert sorted(r[0].rsplit("/", 2)[-2] + r[1] for r in
                  images.df.select("path", "label_name").collect()) == ["aCar", "bTree"]


def test_rows_without_an_image_are_counted_and_a_few_ids_shown(spark, tmp_path):
    root = tmp_path / "images"
    paths = write_images(root, n=6)
    gone = [f"gone{i:02d}.jpg" for i in range(8)]
    lines = ["ImageID,LabelName"] + [f"{p.name},{label_of(n)}" for n, p in enumerate(paths)]
    lines += [f"{g},Car" for g in gone] + [f"{gone[0]},Tree"]  # two rows, one id
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    images = load_images(str(root), labels=str(tmp_path / "labels.csv"), split=1, spark=spark)
    assert images.num_images == 6
    assert images.stats["missing_images"] == 8
    assert images.stats["missing_examples"] == gone[:5]
    assert ("8 label-table ids with no image file (e.g. gone00.jpg, gone01.jpg, gone02.jpg, "
            "gone03.jpg, gone04.jpg)") in images.summary()


def test_no_id_matching_names_the_option_and_shows_both_sides(spark, tmp_path):
    root = tmp_path / "images"
    write_images(root, n=4)
    (tmp_path / "labels.csv").write_text("ImageID,LabelName\nx1.png,Car\nx2.png,Tree\n")
    with pytest.raises(DataError, match=r"option 'id_column': none of the 2 ids .* names an "
                                        r"image file .*'x1.png'.*files such as 'id00"):
        load_images(str(root), labels=str(tmp_path / "labels.csv"), spark=spark)


def nih_table(tmp_path: Path, paths: list, bom: bool = True, crlf: bool = True) -> Path:
    """An NIH ChestX-ray14-style table: ``Image Index`` (file names), ``Finding Labels``
    with ``|``, ``No Finding`` for none; written with a BOM and CRLF line ends."""
    findings = ["Effusion", "Cardiomegaly|Effusion", "No Finding", "Atelectasis",
                "Cardiomegaly", "Atelectasis|Effusion|Cardiomegaly"]
    lines = ["Image Index,Finding Labels,Patient Age"]
    lines += [f"{p.name},{findings[n % len(findings)]},{40 + n}" for n, p in enumerate(paths)]
    text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    path = tmp_path / "Data_Entry.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def test_pipe_separated_labels_with_a_bom_and_crlf(spark, tmp_path):
    root = tmp_path / "images"
    paths = write_images(root, n=12)
    csv = nih_table(tmp_path, paths)
    opts = dict(labels=str(csv), id_column="Image Index", label_column="Finding Labels",
                label_separator="|", split=1, spark=spark)
    images = load_images(str(root), multi_label="all", **opts)
    assert images.classes == ["Atelectasis", "Cardiomegaly", "Effusion", "No Finding"]
    got = got_labels(images)
    assert got[("id001.jpg", "Cardiomegaly")] == got[("id001.jpg", "Effusion")] == 1
    assert got[("id005.jpg", "Atelectasis")] == 1 and sum(got.values()) == 2 * (1 + 2 + 1 + 1
                                                                                + 1 + 3)
    assert images.stats["id_match"] == {"file name": 12}
    # classes, then the multi-label policy, apply to the split labels
    images = load_images(str(root), classes=["Effusion", "Cardiomegaly"], multi_label="drop",
                         **opts)
    assert dict(Counter(r[0] for r in images.df.select("label_name").collect())) == \
        {"Effusion": 2, "Cardiomegaly": 2}
    assert images.stats["multi_label"] == 4
    first = load_images(str(root), classes=["Effusion", "Cardiomegaly"], multi_label="first",
                        **opts)
    assert got_labels(first)[("id001.jpg", "Effusion")] == 1  # Effusion is first in order
    # without the separator, a cell is one class named as written
    plain = load_images(str(root), labels=str(csv), id_column="Image Index",
                        label_column="Finding Labels", split=1, spark=spark)
    assert "Cardiomegaly|Effusion" in plain.classes


def test_label_table_option_errors_name_the_option(spark, tmp_path):
    root = tmp_path / "images"
    paths = write_images(root, n=4)
    csv = nih_table(tmp_path, paths, bom=False, crlf=False)
    opts = dict(labels=str(csv), id_column="Image Index", label_column="Finding Labels",
                label_separator="|", spark=spark)
    with pytest.raises(OptionError, match=r"option 'empty_label' needs multi_label: keep"):
        load_images(str(root), empty_label="No Finding", **opts)
    with pytest.raises(OptionError, match=r"option 'empty_label': no label 'No Findings'.*"
                                          r"did you mean 'No Finding'"):
        load_images(str(root), empty_label="No Findings", multi_label="keep", **opts)
    with pytest.raises(OptionError, match=r"option 'label_separator' needs a label table"):
        load_images(str(root), labels="folders", label_separator="|", spark=spark)
    with pytest.raises(OptionError, match=r"option 'label_column'.*no column 'Finding label'"
                                          r".*did you mean 'Finding Labels'"):
        load_images(str(root), **{**opts, "label_column": "Finding label"})


def test_dlload_magic_takes_the_label_table_options(ip, spark, tmp_path):
    root = tmp_path / "images"
    paths = write_images(root, n=6)
    csv = nih_table(tmp_path, paths)
    ip.run_cell(f"%%dlload xr\npath: {root}\nlabels: {csv}\nid_column: Image Index\n"
                "label_column: Finding Labels\nlabel_separator: '|'\nmulti_label: keep\n"
                "empty_label: No Finding\nsplit: 1\n")
    images = ip.user_ns["xr"]
    assert images.classes == ["Atelectasis", "Cardiomegaly", "Effusion"]
    sets = {r["path"].rsplit("/", 1)[-1]: r["labels"]
            for r in images.df.select("path", "labels").collect()}
    assert sets["id001.jpg"] == ["Cardiomegaly", "Effusion"] and sets["id002.jpg"] == []
    assert images.stats["empty_label_set"] == 1
