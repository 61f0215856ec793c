"""%%featurize as a notebook user runs it: parse → featurize → store → show."""
from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from test_featurize import SMALL, binary_images, write_weights


def test_featurize_magic_stores_a_featureset_under_the_default_name(ip, spark, image_folder,
                                                                    tmp_path):
    from sparkdl_magics.results import FeatureSet
    weights = write_weights(SMALL, tmp_path)
    ip.user_ns["flowers"] = binary_images(spark, image_folder / "daisy").limit(4)
    ip.run_cell(f"%%featurize flowers\nmodel: {SMALL}\nweights: {weights}\nbatch_size: 2\n")
    fs = ip.user_ns["flowers_features"]
    assert isinstance(fs, FeatureSet) and fs.stats["images"] == 4
    assert fs.model_name == SMALL and fs.stats["batch_size"] == 2
    ip.run_cell(f"%featurize flowers -> feats --model {SMALL} --weights none --cache none")
    assert ip.user_ns["feats"].untrained


def test_featurize_magic_errors_are_one_line(ip, spark, image_folder):
    ip.user_ns.pop("flowers_features", None)
    ip.user_ns["flowers"] = binary_images(spark, image_folder)
    with pytest.raises(UsageError) as err:
        ip.run_cell("%%featurize flowers\nmodel: ResNet5O\n")
    assert "\n" not in str(err.value) and "did you mean 'ResNet50'" in str(err.value)
    with pytest.raises(UsageError, match="batch_size"):
        ip.run_cell("%%featurize flowers\nbatch_size: 0\n")
    with pytest.raises(UsageError, match="no variable named 'nothing'"):
        ip.run_cell("%featurize nothing")
    assert "flowers_features" not in ip.user_ns  # nothing stored when the cell fails


def test_featurize_magic_help_lists_every_option(ip, capsys):
    ip.run_cell("%%featurize?")
    out = capsys.readouterr().out
    for name in ("model", "weights", "layer", "batch_size", "cache", "unsafe", "InceptionV3"):
        assert name in out


def test_featurize_magic_checks_the_augment_option_when_parsing(ip):
    from IPython.core.error import UsageError
    ip.user_ns["some_images"] = object()
    with pytest.raises(UsageError, match=r"option 'augment': unknown operation 'flp'.*did you mean 'flip'"):
        ip.run_cell("%%featurize some_images\naugment: flp, copies=2")
