"""Weights that behave like trained ones, made offline in seconds: for tests and benchmarks.

A freshly initialised ``keras.applications`` network has every BatchNormalization at
the identity (moving mean 0, variance 1, gamma 1, beta 0). Whatever depends on real
normalisation statistics — folding BatchNorm into the convolutions at bfloat16
(:mod:`sparkdl_magics.precision`), the range of activations a reduced type must hold —
is then never exercised. Without ImageNet weights (offline machines, CI), this module
gives a network statistics like a trained one's:

- gamma and beta drawn per channel (seeded: gamma in [0.4, 1.4], beta ~ N(0, 0.25));
- each BatchNormalization's moving mean and variance set to the per-channel mean and
  variance of its *actual* input on a batch of photo-like images
  (:func:`photo_like_images`: 1/f colour noise with edges and blobs, the spectrum of
  natural photographs), layer after layer — one forward pass: the network run in
  training mode normalises each layer by that batch's statistics, the earlier layers
  already normalised, so those statistics are what inference then uses. A first
  convolution on ``caffe``-preprocessed pixels (ResNet50) gets variances in the
  thousands and means far from 0, as a trained one does.

Deterministic for a seed (the architecture's initial kernels come from
``keras.utils.set_random_seed(seed)``). :func:`trained_like_weights` caches the result
as a ``.weights.h5`` file a registry spec loads (``weights: <that file>``).

Home: ``tests/`` (the tests import it as ``trained_like``; conftest puts tests/ on
``sys.path``). Benchmarks import it the way they import ``imagegen``: with
``ROOT / "tests"`` on ``sys.path`` (see benchmarks/featurize.py). Keras is imported on
first use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

#: What every benchmark and test output calls these weights.
LABEL = "trained-like (seeded; BatchNorm statistics from photo-like images)"
CALIBRATION_IMAGES = 8


def photo_like_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """*n* uint8 RGB images (n, size, size, 3) with a photograph's statistics: a 1/f
    amplitude spectrum (smooth regions, some fine detail), correlated colour channels,
    a few hard-edged shapes and a brightness/contrast that vary per image."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    falloff = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / size) ** 1.1
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        phase = rng.uniform(0, 2 * np.pi, (3, size, size))
        fields = np.real(np.fft.ifft2(falloff * np.exp(1j * phase)))
        fields /= fields.std(axis=(1, 2), keepdims=True)
        mix = rng.normal(0.6, 0.15, (3, 3)) * 0.4 + np.eye(3) * 0.6  # correlated channels
        img = np.tensordot(mix, fields, axes=1).transpose(1, 2, 0)
        for _ in range(rng.integers(2, 6)):  # objects: a disc or a box, with an edge
            colour = rng.normal(0, 1.5, 3)
            cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(size // 10,
                                                                              size // 3))]
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) if rng.random() < 0.5 else \
                ((abs(yy - cy) < r) & (abs(xx - cx) < r * rng.uniform(0.3, 1.5)))
            img[mask] = 0.5 * img[mask] + colour
        img = rng.uniform(90, 160) + img * rng.uniform(25, 55)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def photo_file(width: int, height: int, seed: int, noise: np.random.Generator,
               scene: int = 384, fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    """A photo at *width* x *height* as a camera file: one :func:`photo_like_images`
    scene (*scene* px, *seed*) upscaled, sensor noise (sigma 3, drawn from *noise*),
    converted to *mode* and saved as *fmt* (JPEG at quality 90)."""
    import io

    from PIL import Image
    picture = Image.fromarray(photo_like_images(1, scene, seed=seed)[0])
    pixels = np.asarray(picture.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    pixels = pixels + noise.normal(0, 3, pixels.shape).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def make_trained_like(model: Any, preprocess: Any, seed: int = 0,
                      images: Optional[np.ndarray] = None) -> Any:
    """Give *model*'s BatchNormalization layers trained-like gamma/beta and moving
    statistics (see the module doc), in place; returns *model*.

    *preprocess*: the model's input scaling (uint8 RGB batch -> model input), e.g. a
    registry model's ``preprocess_input``. *images*: the calibration batch (default
    :data:`CALIBRATION_IMAGES` :func:`photo_like_images` at the model's input size).
    A model without BatchNormalization is returned unchanged.
    """
    import keras
    norms = [layer for layer in _walk(model) if type(layer).__name__ == "BatchNormalization"]
    if not norms:
        return model
    rng = np.random.default_rng(seed + 1)
    for norm in norms:
        weights = norm.get_weights()
        channels = weights[0].shape
        new = []
        for w in norm.weights:
            name = w.path.rsplit("/", 1)[-1]
            if name == "gamma":
                new.append(rng.uniform(0.4, 1.4, channels))
            elif name == "beta":
                new.append(rng.normal(0.0, 0.25, channels))
            else:
                new.append(np.asarray(w))
        norm.set_weights([np.asarray(v, dtype=np.float32) for v in new])
    if images is None:
        size = int(model.inputs[0].shape[1])
        images = photo_like_images(CALIBRATION_IMAGES, size, seed)
    x = np.asarray(preprocess(np.asarray(images, dtype=np.float32)), dtype=np.float32)
    probe = keras.Model(model.inputs, [norm.input for norm in norms])
    inputs = probe(x, training=True)  # each norm sees inputs normalised by batch statistics
    for norm, value in zip(norms, inputs if isinstance(inputs, (list, tuple)) else [inputs]):
        value = np.asarray(value, dtype=np.float64)
        axis = norm.axis if isinstance(norm.axis, int) else norm.axis[0]
        axes = tuple(a for a in range(value.ndim) if a != axis % value.ndim)
        mean, variance = value.mean(axis=axes), value.var(axis=axes)
        by_name = {w.path.rsplit("/", 1)[-1]: w for w in norm.weights}
        by_name["moving_mean"].assign(mean.astype(np.float32))
        by_name["moving_variance"].assign(variance.astype(np.float32))
    return model


def _walk(model: Any):
    """Every layer of *model*, nested models' layers included, in graph order."""
    for layer in model.layers:
        if hasattr(layer, "layers") and hasattr(layer, "inputs"):
            yield from _walk(layer)
        else:
            yield layer


def trained_like_weights(name: str, folder: Path, seed: int = 0, include_top: bool = False,
                         size: Optional[int] = None) -> Path:
    """Trained-like weights for registry model *name* (``include_top=False`` with average
    pooling, as the featurizer builds it; or with its ImageNet head), saved once as
    ``<folder>/<name>[-top]-trained-like-s<seed>[-<size>].weights.h5`` and reused."""
    import keras

    from sparkdl_magics.models import get_model_info
    info = get_model_info(name)
    size = int(size or info.size)
    suffix = ("-top" if include_top else "") + f"-trained-like-s{seed}" + \
        ("" if size == info.size else f"-{size}")
    path = Path(folder) / f"{name}{suffix}.weights.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        keras.utils.set_random_seed(seed)
        model = info.constructor()(include_top=include_top, weights=None,
                                   pooling=None if include_top else "avg",
                                   input_shape=(size, size, 3))
        make_trained_like(model, info.preprocess(), seed)
        tmp = path.with_name(path.name + ".tmp.weights.h5")
        model.save_weights(str(tmp))
        tmp.replace(path)
        del model
        keras.backend.clear_session()
    return path


__all__ = ["LABEL", "photo_like_images", "make_trained_like", "trained_like_weights"]
