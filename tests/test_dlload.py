"""%%dlload: options map one-to-one onto load_images, the result is stored and shown,
errors are one line."""
from __future__ import annotations

import inspect

import pytest
from IPython.core.error import UsageError

from sparkdl_magics.loading import load_images
from sparkdl_magics.results import ImageSet
from sparkdl_magics.magics import dlload


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
    with pytest.raises(UsageError, match=r"option 'multi_label'.*valid: drop, first, all"):
        ip.run_cell(f"%%dlload x\npath: {tmp_path}\nmulti_label: keep\n")
    with pytest.raises(UsageError, match=r"option 'path' is required"):
        ip.run_cell("%%dlload x\nsplit: 0.5\n")
