"""Resolving weights: Keras' ImageNet cache, the offline error, and the ``auto`` fallback
to untrained weights with a warning (no Spark, no download)."""
from __future__ import annotations

import os

import pytest


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
