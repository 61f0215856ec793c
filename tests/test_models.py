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


@pytest.fixture
def cached_resnet50(tmp_path, monkeypatch):
    """A Keras cache (KERAS_HOME) holding ResNet50's no-top ImageNet weights file."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    cached = tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    cached.write_bytes(b"weights")
    return cached


def test_imagenet_weights_come_from_keras_cache(cached_resnet50):
    from sparkdl_magics.weights import resolve_spec
    resolved = resolve_spec("ResNet50", "imagenet")
    assert resolved.weights == "imagenet" and not resolved.untrained
    assert resolved.spec.weights_file.name.endswith(cached_resnet50.name)
    assert resolved.feature_dim == 2048 and resolved.spec.input_size == (224, 224)


def test_missing_imagenet_weights_offline_is_one_clear_error(tmp_path, monkeypatch):
    import keras
    from sparkdl_magics.errors import EnvironmentProblem
    from sparkdl_magics.weights import resolve_spec
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(EnvironmentProblem) as err:
        resolve_spec("Xception", "imagenet")
    message = str(err.value)
    assert "\n" not in message
    assert "xception_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message


def test_dlmodels_magic_shows_the_table(ip):
    table = ip.run_line_magic("dlmodels", "")
    assert "ResNet50" in set(table["model"]) and len(table) >= 15
    mobile = ip.run_line_magic("dlmodels", "--family mobile")
    assert set(mobile["model"]) == {"MobileNetV2", "MobileNetV3Small", "MobileNetV3Large"}
    assert list(ip.run_line_magic("dlmodels", "efficientnetv2")["model"]) == [
        "EfficientNetV2B0", "EfficientNetV2S"]


def test_auto_weights_fall_back_to_untrained_with_a_warning_offline(tmp_path, monkeypatch):
    import keras
    from sparkdl_magics import weights as w
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr(w, "untrained_weights", lambda info, top=False: str(tmp_path / "u.h5"))
    (tmp_path / "u.h5").write_bytes(b"untrained")
    with pytest.warns(w.UntrainedFallback, match="UNTRAINED") as caught:
        resolved = w.resolve_spec("MobileNetV3Small", "auto")
    assert resolved.untrained and resolved.weights == "none"
    message = str(caught[0].message)
    assert "(network is unreachable)" in message  # the real reason, not 'OSError'
    assert caught[0].filename == "sparkdl_magics"  # one line in a cell, no source line
    assert resolved.spec.weights_file.name.endswith("u.h5")


def test_auto_weights_use_imagenet_when_cached(cached_resnet50, recwarn):
    from sparkdl_magics.weights import resolve_spec
    resolved = resolve_spec("ResNet50", "AUTO")
    assert resolved.weights == "imagenet" and not resolved.untrained
    assert not [r for r in recwarn if "UNTRAINED" in str(r.message)]
