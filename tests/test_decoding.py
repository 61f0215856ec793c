"""JPEG draft-mode decoding against a full decode (sparkdl_magics.imaging).

A JPEG at least twice the model's input size on both sides is decoded by libjpeg at a
reduced scale before the resize; the README states how far that moves the pixels and
ResNet50's features (trained-like weights) from a full decode followed by the same
resize. These tests hold the code to that statement on photo-like JPEGs, and show that
smaller JPEGs and other formats still decode bit-identical to a full decode.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from helpers import cosines
from sparkdl_magics import imaging
from trained_like import photo_file, trained_like_weights

SIZE = (224, 224)
#: The README's bound for ResNet50 features, draft vs full decoding (0.9866 measured by
#: benchmarks/featurize.py; these images are other seeds).
MIN_COSINE = 0.985
#: The README's bound for the mean pixel difference (of 255).
MAX_MEAN_PIXEL_DIFFERENCE = 1.0


def _photo(width: int, height: int, seed: int, fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    """A photo-like camera file, its noise seeded like its scene."""
    return photo_file(width, height, seed, np.random.default_rng(seed), fmt=fmt, mode=mode)


def _full_decode(data: bytes) -> np.ndarray:
    """Decode every pixel, then the package's resize: what draft mode is compared with."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(imaging.to_rgb(image).resize(SIZE, imaging.RESAMPLE), dtype=np.uint8)


@pytest.fixture(scope="module")
def big_jpegs():
    """1024x768 (decoded at 1/2) and 2048x1536 (at 1/4) photo-like JPEGs."""
    return [_photo(1024, 768, seed) for seed in range(3)] + \
        [_photo(2048, 1536, seed) for seed in range(3, 5)]


def test_big_jpegs_decode_in_draft_mode_close_to_a_full_decode(big_jpegs):
    for data in big_jpegs:
        draft, full = imaging.decode_array(data, SIZE), _full_decode(data)
        difference = np.abs(draft.astype(int) - full).mean()
        assert 0 < difference <= MAX_MEAN_PIXEL_DIFFERENCE  # draft mode ran, and stayed close


@pytest.mark.slow
def test_draft_decoding_keeps_resnet50_features_within_the_stated_cosine(big_jpegs,
                                                                         weights_dir):
    from sparkdl_magics.inference import build
    from sparkdl_magics.weights import resolve_spec
    spec = resolve_spec("ResNet50", str(trained_like_weights("ResNet50", weights_dir))).spec
    model = build(spec)
    draft = model.predict(np.stack([imaging.decode_array(d, SIZE) for d in big_jpegs]))
    full = model.predict(np.stack([_full_decode(d) for d in big_jpegs]))
    cosine = cosines(draft, full)
    print(f"draft vs full decoding, ResNet50 features: cosine min {cosine.min():.6f}")
    assert cosine.min() >= MIN_COSINE and cosine.min() < 1.0


@pytest.mark.parametrize("fmt, mode, size", [
    ("JPEG", "RGB", (400, 300)),    # less than twice the input size: no reduced scale
    ("PNG", "RGB", (1024, 768)),    # no reduced-scale decoding for other formats
    ("PNG", "RGBA", (1024, 768)),
    ("PNG", "L", (1024, 768)),
    ("WEBP", "RGB", (1024, 768)),
])
def test_small_jpegs_and_other_formats_decode_in_full(fmt, mode, size):
    data = _photo(*size, seed=7, fmt=fmt, mode=mode)
    np.testing.assert_array_equal(imaging.decode_array(data, SIZE), _full_decode(data))
