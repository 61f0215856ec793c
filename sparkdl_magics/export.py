"""One network that needs no Spark: a fitted model as a plain Keras model.

:func:`network` builds, from a :class:`~sparkdl_magics.results.FittedModel`, the Keras
model that does what its Spark pipeline does, as layers: decoded RGB images (0..255, at
the backbone's input size) → the backbone's own preprocessing → the backbone and its
pooling → the classifier → class probabilities (``scores`` for a linear SVC, which has
none). A fine-tuned model's network is its own ``.keras`` file behind its preprocessing.

Exact, not approximate: the classifier's coefficients become ``Dense`` layers computed in
float64 as MLlib computes them (logistic regression multinomial and binomial, linear SVC
and its one-vs-rest, the multilayer perceptron's sigmoid layers and softmax). MLlib's
``standardization`` needs no layer of its own: the models it fits hold coefficients on
the original feature scale. Preprocessing is built from Keras' own layers (``Rescaling``,
``Normalization``, a fixed 1x1 convolution for Caffe's BGR means), so the file loads
with plain Keras, without this package. Trees, naive Bayes and factorization machines
are not layers: they get one line saying which classifiers can be exported.

:func:`export` writes it: ``format="keras"`` (one ``.keras`` file) or ``"saved_model"``
(a TF Serving folder whose default signature takes images and whose ``serve_bytes``
signature takes encoded image files, decoded and resized by TensorFlow — close to, not
bit-equal with, Pillow's decoding that the Spark path uses). Next to it,
``<name>.json`` holds the class names, the input size and what the output is.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .errors import DataError, OptionError, unknown_choice
from .results import FineTunedModel, FittedModel

FORMATS = ("keras", "saved_model")
#: Classifiers whose fitted model is a few layers (the rest are refused in one line).
EXPORTABLE = ("logistic_regression", "linear_svc", "mlp")
#: The output layer's name: probabilities, or scores where the classifier has none.
PROBABILITIES = "probabilities"
SCORES = "scores"
#: Caffe-style means (BGR), as ``keras.applications.imagenet_utils`` subtracts them.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def network(model: Any) -> Any:
    """The Keras model: ``(batch, height, width, 3)`` RGB 0..255 in, one row per image
    out (probabilities, or a linear SVC's scores), in class order (``model.classes``)."""
    keras = _keras()
    featurizer = _featurizer_of(model)
    head = None if isinstance(model, FineTunedModel) else _head_spec(model)
    backbone, mode, (width, height) = _backbone(featurizer)
    images = keras.Input((height, width, 3), dtype="float32", name="images")
    x = _preprocessing(keras, mode)(images) if mode != "none" else images
    x = backbone(x)
    if len(x.shape) == 4:  # an unpooled map (a user layer): the runner averages it too
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    elif len(x.shape) == 3:
        x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    if head is not None:
        x = _head_layers(keras, head)(x)
    return keras.Model(images, x, name=_safe_name(model))


def export(model: Any, path: str, format: str = "keras") -> str:
    """Write :func:`network` to *path* (``.keras`` file or SavedModel folder) and its
    ``<name>.json`` (classes, input size, output); returns *path*."""
    fmt = str(format).strip().lower().replace("-", "_")
    if fmt not in FORMATS:
        raise unknown_choice("format", format, FORMATS)
    path = os.path.abspath(os.path.expanduser(str(path)))
    if fmt == "keras" and not path.endswith(".keras"):
        raise OptionError(f"option 'path': a Keras file must end in .keras (got {path!r}; "
                          "or use format='saved_model' for a folder)")
    net = network(model)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if fmt == "keras":
        net.save(path)
    else:
        _write_saved_model(net, path)
    with open(_info_path(path), "w") as out:
        json.dump(describe(model, net), out, indent=1)
    return path


def describe(model: Any, net: Any) -> Dict[str, Any]:
    """What a serving system needs to know about the exported network, as plain data."""
    _, height, width, _ = net.inputs[0].shape
    return {"classes": list(model.classes), "input_shape": [None, int(height), int(width), 3],
            "input_values": "RGB 0..255 (float32), resized to the input size",
            "output": SCORES if _is_scores(model) else PROBABILITIES}


def _info_path(path: str) -> str:
    root = path[:-len(".keras")] if path.endswith(".keras") else path.rstrip(os.sep)
    return root + ".json"


def _keras() -> Any:
    from .tfimport import import_keras
    return import_keras()


def _safe_name(model: Any) -> str:
    kind = "finetuned" if isinstance(model, FineTunedModel) else model.classifier
    return f"sparkdl_{kind}"


def _is_scores(model: Any) -> bool:
    return not isinstance(model, FineTunedModel) and not model.has_probabilities


# --------------------------------------------------------------------------- backbone

def _featurizer_of(model: Any) -> Any:
    """The model's featurizer stage, or one line on why there is nothing to export."""
    if not isinstance(model, FittedModel):
        raise DataError(f"export takes a model from %%fit or %%finetune, got a "
                        f"{type(model).__name__} (exportable classifiers: "
                        f"{', '.join(EXPORTABLE)}, and fine-tuned networks)")
    if not model.has_featurizer:
        raise DataError("this model was fit on precomputed features (no featurizer stage): "
                        "there is no image network to export with it")
    return model.pipeline_model.stages[0]


def _backbone(featurizer: Any) -> Tuple[Any, str, Tuple[int, int]]:
    """(the Keras backbone at float32, its preprocess mode, (width, height)) of a
    featurizer stage, built as the workers build it."""
    from .finetuning.network import serving_preprocess
    from .inference import build
    from .weights import resolve_spec
    resolved = resolve_spec(featurizer.getModelName(), featurizer.getWeights(),
                            featurizer.getLayer() or None,
                            featurizer.getOrDefault(featurizer.preprocess) or None,
                            unsafe=featurizer.getOrDefault(featurizer.unsafe))
    spec = resolved.spec
    if spec.model_file is not None and spec.model_file.archive:
        raise DataError("a SavedModel folder backbone cannot be exported as Keras layers "
                        "(use a .keras or .h5 model file)")
    loaded = build(spec)  # float32: the exported network is float32
    mode = serving_preprocess(spec.model, None if spec.model else spec.preprocess)
    return loaded.model, mode, spec.input_size


def _preprocessing(keras: Any, mode: str) -> Any:
    """``imagenet_utils.preprocess_input(x, mode)`` (or ``unit``) as Keras layers."""
    layers = keras.layers
    if mode == "unit":
        return layers.Rescaling(1.0 / 255.0, name="preprocess")
    if mode == "tf":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")
    if mode == "torch":
        return keras.Sequential([
            layers.Rescaling(1.0 / 255.0),
            layers.Normalization(mean=list(_TORCH_MEAN),
                                 variance=[s * s for s in _TORCH_STD])], name="preprocess")
    if mode == "caffe":  # RGB -> BGR, minus the BGR means: one fixed 1x1 convolution
        kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
        for out_channel, in_channel in enumerate((2, 1, 0)):
            kernel[0, 0, in_channel, out_channel] = 1.0
        conv = layers.Conv2D(3, 1, name="preprocess", trainable=False)
        conv.build((None, None, None, 3))
        conv.set_weights([kernel, -np.asarray(_CAFFE_MEAN_BGR, dtype=np.float32)])
        return conv
    raise unknown_choice("preprocess", mode, ("none", "unit", "tf", "caffe", "torch"))


# --------------------------------------------------------------------------- classifier

def _head_spec(model: FittedModel) -> List[Tuple[np.ndarray, np.ndarray, str]]:
    """The classifier as ``[(kernel (in, out), bias (out,), activation), ...]``."""
    if model.classifier not in EXPORTABLE:
        raise DataError(
            f"classifier '{model.classifier}' is not made of layers and cannot be exported "
            f"(exportable: {', '.join(EXPORTABLE)}, and fine-tuned networks)")
    clf = model.classifier_model
    name = type(clf).__name__
    if name == "LogisticRegressionModel":
        return [_logistic(clf, len(model.classes))]
    if name == "LinearSVCModel":  # Spark's rawPrediction: [-margin, margin]
        w, b = _dense_values(clf.coefficients), float(clf.intercept)
        return [(np.stack([-w, w], axis=1), np.array([-b, b]), "linear")]
    if name == "OneVsRestModel":  # one margin per class (each model's rawPrediction[1])
        margins = [_margin(m) for m in clf.models]
        return [(np.stack([w for w, _ in margins], axis=1),
                 np.array([b for _, b in margins]), "linear")]
    if name == "MultilayerPerceptronClassificationModel":
        return _perceptron(clf)
    raise DataError(f"classifier model {name} cannot be exported "
                    f"(exportable: {', '.join(EXPORTABLE)}, and fine-tuned networks)")


def _dense_values(vector: Any) -> np.ndarray:
    return np.asarray(vector.toArray(), dtype=np.float64)


def _logistic(clf: Any, num_classes: int) -> Tuple[np.ndarray, np.ndarray, str]:
    """Multinomial: softmax(Wx + b). Binomial (one row): [1 - s, s] with s = sigmoid(wx + b),
    which is softmax([0, wx + b])."""
    matrix = np.asarray(clf.coefficientMatrix.toArray(), dtype=np.float64)
    intercepts = _dense_values(clf.interceptVector)
    if matrix.shape[0] == 1 and num_classes == 2:
        matrix = np.vstack([np.zeros_like(matrix), matrix])
        intercepts = np.array([0.0, intercepts[0]])
    return matrix.T, intercepts, "softmax"


def _margin(binary: Any) -> Tuple[np.ndarray, float]:
    """A binary linear model's margin ``w.x + b`` (rawPrediction[1])."""
    name = type(binary).__name__
    if name == "LinearSVCModel":
        return _dense_values(binary.coefficients), float(binary.intercept)
    raise DataError(f"one-vs-rest over {name} cannot be exported "
                    f"(exportable: {', '.join(EXPORTABLE)})")


def _perceptron(clf: Any) -> List[Tuple[np.ndarray, np.ndarray, str]]:
    """MLlib's layout: per layer, the (out x in) matrix column-major, then the bias;
    sigmoid between layers, softmax on top."""
    sizes = list(clf.getLayers())
    flat = _dense_values(clf.weights)
    out: List[Tuple[np.ndarray, np.ndarray, str]] = []
    offset = 0
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        kernel = flat[offset:offset + n_in * n_out].reshape(n_in, n_out)
        offset += n_in * n_out
        bias = flat[offset:offset + n_out]
        offset += n_out
        out.append((kernel, bias, "softmax" if i == len(sizes) - 2 else "sigmoid"))
    if offset != flat.size:
        raise DataError(f"the perceptron's {flat.size} weights do not fit its layers {sizes}")
    return out


def _head_layers(keras: Any, spec: List[Tuple[np.ndarray, np.ndarray, str]]) -> Any:
    """Dense layers in float64 (as MLlib computes), the last named for its output."""
    last = len(spec) - 1
    layers = []
    for i, (kernel, bias, activation) in enumerate(spec):
        name = (PROBABILITIES if activation == "softmax" else SCORES) if i == last \
            else f"hidden_{i + 1}"
        dense = keras.layers.Dense(kernel.shape[1], activation=activation, dtype="float64",
                                   name=name)
        dense.build((None, kernel.shape[0]))
        dense.set_weights([kernel, bias])
        layers.append(dense)
    return keras.Sequential(layers, name="classifier")


# --------------------------------------------------------------------------- saved model

def _write_saved_model(net: Any, path: str) -> None:
    """A SavedModel with two signatures: images (the default) and encoded image bytes."""
    keras = _keras()
    import tensorflow as tf
    _, height, width, _ = net.inputs[0].shape

    def from_bytes(data: Any) -> Any:
        def decode(one: Any) -> Any:
            image = tf.io.decode_image(one, channels=3, expand_animations=False)
            image = tf.image.resize(tf.cast(image, tf.float32), (height, width),
                                    method="bilinear", antialias=True)
            return tf.clip_by_value(image, 0.0, 255.0)
        images = tf.map_fn(decode, data, fn_output_signature=tf.TensorSpec(
            (height, width, 3), tf.float32))
        return net(images, training=False)

    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint("serve", lambda images: net(images, training=False),
                         input_signature=[tf.TensorSpec((None, height, width, 3), tf.float32)])
    archive.add_endpoint("serve_bytes", from_bytes,
                         input_signature=[tf.TensorSpec((None,), tf.string)])
    archive.write_out(path, verbose=False)


__all__ = ["network", "export", "describe", "FORMATS", "EXPORTABLE"]
