"""The model registry and ImageNet weights resolution (no Spark, no download)."""
from __future__ import annotations

import pytest


def test_registry_lists_the_classic_and_modern_models_with_their_facts():
    import sparkdl_magics
    table = sparkdl_magics.list_models()
    assert list(table.columns[:3]) == ["model", "input_size", "feature_dim"]
    rows = table.set_index("model")
    for name, size, dim in [("InceptionV3", "299x299", 2048), ("Xception", "299x299", 2048),
                            ("ResNet50", "224x224", 2048), ("VGG16", "224x224", 512),
                            ("VGG19", "224x224", 512), ("MobileNetV2", "224x224", 1280),
                            ("EfficientNetB0", "224x224", 1280), ("ConvNeXtTiny", "224x224", 768)]:
        assert rows.loc[name, "input_size"] == size and rows.loc[name, "feature_dim"] == dim
    assert rows["weights_local"].dtype == bool


def test_each_row_names_the_exact_keras_preprocess_input():
    import keras
    from sparkdl_magics.models import MODELS
    for info in MODELS:
        module = getattr(keras.applications, info.module)
        assert info.preprocess() is module.preprocess_input
        assert callable(info.constructor())


def test_unknown_model_name_suggests_the_closest():
    from sparkdl_magics.errors import OptionError
    from sparkdl_magics.models import get_model_info
    assert get_model_info("resnet50").name == "ResNet50"
    with pytest.raises(OptionError, match=r"unknown model 'InceptionV4'.*did you mean 'InceptionV3'"):
        get_model_info("InceptionV4")


def test_dlmodels_magic_shows_the_table(ip):
    table = ip.run_line_magic("dlmodels", "")
    assert "ResNet50" in set(table["model"]) and len(table) >= 15
    mobile = ip.run_line_magic("dlmodels", "--family mobile")
    assert set(mobile["model"]) == {"MobileNetV2", "MobileNetV3Small", "MobileNetV3Large"}
    assert list(ip.run_line_magic("dlmodels", "efficientnetv2")["model"]) == [
        "EfficientNetV2B0", "EfficientNetV2S"]


