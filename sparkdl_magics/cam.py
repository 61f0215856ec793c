"""Class heatmaps on the worker: which part of an image a class's score came from.

A ``%%fit`` model is a CNN backbone (the featurizer) followed by an MLlib classifier on
its features. When the features are the global average of the backbone's last
convolutional maps ``A`` (h' x w' x d) and the classifier is linear (scores ``W f +
b``), a class score is the spatial mean of ``W[k] . A(x, y)`` plus a constant: that
sum's terms *are* the heatmap (CAM, exact, no gradients). When the features are not
such an average (a user model cut after a Dense layer, max pooling), Grad-CAM weighs
the maps by the gradient of the class score, the classifier appended as a final
linear layer. On a pooled backbone both give the same map up to scale.

- :func:`find_maps_layer`: the last 4-D layer of a feature network (at or before its
  cut layer, inside a nested backbone too) and whether the features are its global
  average; :func:`maps_model`: the network with those maps as a second output.
- :class:`HeatmapHead`: the small hashable description the driver builds (method,
  classifier weights). :class:`~sparkdl_magics.inference.BatchRunner` turns the
  worker's cached feature model into a :class:`HeatmapModel` with it, once per worker.
  A fine-tuned network brings its own head
  (:class:`~sparkdl_magics.finetuning.heatmaps.NetworkHead`: its last Dense layer).
- :func:`heatmap_batch` / :func:`heatmap_frame`: the runner's adapter and formatter.

Runs wherever the batch runner runs; Keras/TensorFlow are imported on first use.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .inference import LoadedModel, decode_bytes, decode_struct
from .tfimport import import_keras

METHODS = ("cam", "gradcam")
#: What the heatmap UDF returns per image: the map (row-major, h' x w', not normalised),
#: its shape, the image's own size, a PNG thumbnail, and why it failed.
UDF_RETURN = ("heat array<float>, map_h int, map_w int, width int, height int, "
              "thumbnail binary, error string")
THUMBNAIL_SIDE = 160


# --------------------------------------------------------------------------- the maps

def find_maps_layer(net: Any) -> Tuple[Optional[str], bool]:
    """(name of the last 4-D layer of *net*, features are its global average).

    *net* is the feature network as the featurizer runs it (cut at its cut layer). The
    name is None when *net*'s own output is 4-D: the featurizer averages such an
    output over space itself, so it is both the maps and (averaged) the features.
    A backbone nested as one layer (``x = base(inputs)``, as fine-tuning builds its
    network and as many user models are written) is looked into: its maps are named
    ``"<backbone layer>/<maps layer>"``, a path :func:`maps_model` follows.
    """
    if len(net.outputs[0].shape) == 4:
        return None, True
    layers = [lay for lay in net.layers if type(lay).__name__ != "InputLayer"]
    found: Optional[Tuple[Any, Optional[str], bool]] = None  # (layer, inner path, pooled)
    for lay in layers:
        if _rank(lay) == 4:
            found = (lay, None, False)
        else:
            inner = _nested_maps(lay)
            if inner is not None:
                found = (lay,) + inner
    if found is None:
        from .errors import OptionError
        raise OptionError(f"option 'method': the model {getattr(net, 'name', '')!r} has no "
                          "4-D (convolutional) layer to draw a heatmap from")
    layer, inner, inner_pooled = found
    last = layers[-1]
    if inner is not None:  # the features are the nested backbone's own pooled output
        return f"{layer.name}/{inner}", inner_pooled and last is layer
    pooled = (type(last).__name__ == "GlobalAveragePooling2D"
              and not getattr(last, "keepdims", False)
              and _producer(last.input) is layer)
    return layer.name, pooled


def _nested_maps(layer: Any) -> Optional[Tuple[str, bool]]:
    """(maps path, pooled) inside *layer* when it is a functional model with 4-D
    layers and a flat output; None otherwise."""
    if not (hasattr(layer, "layers") and hasattr(layer, "outputs")):
        return None
    from .errors import OptionError
    try:
        path, pooled = find_maps_layer(layer)
    except OptionError:  # no 4-D layer inside
        return None
    except (AttributeError, IndexError, ValueError):  # a subclassed model: no graph to read
        return None
    return (path, pooled) if path is not None else None


def maps_model(net: Any, path: Optional[str]) -> Any:
    """*net* with two outputs, (the maps at *path*, its own output), sharing its layers.

    *path* as :func:`find_maps_layer` names it. Maps inside a nested backbone are not
    tensors of the outer graph, so the outer graph is replayed (``clone_model`` reusing
    every layer) with the backbone's call swapped for one that also returns its maps.
    """
    keras = import_keras()
    if path is None:
        return keras.Model(net.inputs, [net.output, net.output])
    name, _, inner = path.partition("/")
    layer = net.get_layer(name)
    if not inner:
        return keras.Model(net.inputs, [layer.output, net.output])
    probe = maps_model(layer, inner)
    seen: dict = {}

    def call(lay: Any, *args: Any, **kwargs: Any) -> Any:
        if lay is not layer:
            return lay(*args, **kwargs)
        maps, out = probe(*args, **kwargs)
        seen["maps"] = maps
        return out
    replayed = keras.models.clone_model(net, clone_function=lambda lay: lay, call_function=call)
    return keras.Model(replayed.inputs, [seen["maps"], replayed.output])


def _rank(layer: Any) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer used several times has no one output
        return 0


def _producer(tensor: Any) -> Any:
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history else None


# --------------------------------------------------------------------------- the worker model

@dataclass(frozen=True)
class HeatmapHead:
    """What turns the cached feature model into a heatmap model (hashable: a cache key).

    ``weights``: the classifier's (classes x features) weights as float32 bytes;
    ``method``: ``cam`` or ``gradcam``.
    """

    method: str
    weights: bytes
    num_classes: int

    def matrix(self) -> np.ndarray:
        return np.frombuffer(self.weights, dtype=np.float32).reshape(self.num_classes, -1)

    def __call__(self, base: LoadedModel) -> "HeatmapModel":
        net = keras_network(base)
        layer, _ = find_maps_layer(net)
        return HeatmapModel(base, self.method, maps_model(net, layer), self.matrix())


def linear_head(method: str, weights: np.ndarray) -> HeatmapHead:
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    return HeatmapHead(method, weights.tobytes(), int(weights.shape[0]))


def keras_network(base: LoadedModel) -> Any:
    """The cached model's Keras network (heatmaps need its layers), or a one-line error."""
    keras = import_keras()
    if not isinstance(base.model, keras.Model):
        from .errors import OptionError
        raise OptionError("option 'method': heatmaps need a Keras model (.keras / .h5 "
                          "or a registry model), not a SavedModel folder")
    return base.model


class HeatmapModel(LoadedModel):
    """A network with two outputs (last maps, features) and the class weights over the
    features: class score ``k`` is ``weights[k] . features`` (plus a constant).

    :meth:`run` takes rows of ``[preprocessed image, class selector]`` (flat; the
    selector picks the class whose map is drawn: a one-hot row) and returns the
    un-normalised maps, (n, h', w'). Each image goes through the network alone: oneDNN
    chooses its convolution kernels by the batch's shape, so one image's maps differed
    in the last bits between a batch of one and a batch of several (ResNet50: about
    1e-6 of the peak), and which images share a batch depends on the partitioning
    (local, local-cluster and Connect differ). Alone, an image's map depends only on
    the image, the model, TensorFlow's thread count (``spark.task.cpus``) and the CPU's
    instruction set. It costs little: ResNet50 at 224 px, 16 images one by one took
    1.1-1.2x a batch of 16 (one thread).
    """

    def __init__(self, base: LoadedModel, method: str, probe: Any, weights: np.ndarray):
        super().__init__(base.spec, probe, base.preprocess)
        self.method = method
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self._heat = None

    @property
    def num_classes(self) -> int:
        return int(self.weights.shape[0])

    def run(self, x: np.ndarray) -> np.ndarray:
        w, h = self.input_size
        pixels = h * w * 3
        images = np.ascontiguousarray(x[:, :pixels].reshape(-1, h, w, 3), dtype=np.float32)
        select = np.ascontiguousarray(x[:, pixels:], dtype=np.float32)
        with self._lock:
            if self._heat is None:
                self._heat = _heat_function(self.model, self.method, self.weights)
            maps = [np.asarray(self._heat(images[i:i + 1], select[i:i + 1]), dtype=np.float32)
                    for i in range(len(images))]
        return np.concatenate(maps) if maps else np.zeros((0, 0, 0), dtype=np.float32)


def _heat_function(net: Any, method: str, class_weights: np.ndarray) -> Any:
    """One traced TensorFlow function: (images, selectors) -> class maps (n, h', w')."""
    import tensorflow as tf
    weights = tf.constant(class_weights)  # (classes, features)
    images_spec = tf.TensorSpec((None,) + tuple(net.inputs[0].shape[1:]), tf.float32)
    select_spec = tf.TensorSpec((None, class_weights.shape[0]), tf.float32)

    def scores(features: Any, select: Any) -> Any:
        features = tf.cast(features, tf.float32)
        if len(features.shape) == 4:  # the featurizer averages a 4-D output over space
            features = tf.reduce_mean(features, axis=[1, 2])
        return tf.reduce_sum(tf.matmul(features, weights, transpose_b=True) * select, axis=1)

    if method == "cam":
        def heat(images: Any, select: Any) -> Any:
            maps, _ = net(images, training=False)
            return tf.einsum("nhwc,nc->nhw", tf.cast(maps, tf.float32),
                             tf.matmul(select, weights))
    else:
        def heat(images: Any, select: Any) -> Any:
            with tf.GradientTape() as tape:
                maps, features = net(images, training=False)
                score = scores(features, select)
            grads = tape.gradient(score, maps)
            return tf.einsum("nhwc,nc->nhw", tf.cast(maps, tf.float32),
                             tf.cast(tf.reduce_mean(grads, axis=[1, 2]), tf.float32))
    return tf.function(heat, input_signature=[images_spec, select_spec], jit_compile=False)


def normalise(heat: np.ndarray) -> np.ndarray:
    """The positive part of a class map scaled to [0, 1] (all zeros: no positive evidence)."""
    heat = np.maximum(np.asarray(heat, dtype=np.float32), 0.0)
    top = float(heat.max()) if heat.size else 0.0
    return heat / top if top > 0 else heat


# --------------------------------------------------------------------------- runner parts

def batch_items(batch: Any) -> List[Dict[str, Any]]:
    """A pandas batch of the runner's struct column as one dict per row."""
    cols = list(batch.columns)
    return [dict(zip(cols, values)) for values in zip(*(batch[c] for c in cols))]


def heatmap_batch(batch: Any, model: HeatmapModel) -> Tuple[List[Any], Any]:
    """The runner's adapter: rows of (image, target class index) as dicts."""
    return batch_items(batch), functools.partial(_decode_row, preprocess=model.preprocess,
                                                 num_classes=model.num_classes)


def _image_of(item: Any) -> Any:
    image = item.get("image")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), decode_bytes
    return image, decode_struct


def decode_image(item: Dict[str, Any], size: Tuple[int, int]) -> np.ndarray:
    """A row's ``image`` (file bytes or an image struct) as uint8 RGB at *size*."""
    image, decode = _image_of(item)
    return decode(image, size)


def _decode_row(item: Any, size: Tuple[int, int], preprocess: Any, num_classes: int) -> np.ndarray:
    x = preprocess(decode_image(item, size)[None].astype(np.float32))[0]
    select = np.zeros(num_classes, dtype=np.float32)
    select[int(item["target"])] = 1.0
    return np.concatenate([np.asarray(x, dtype=np.float32).ravel(), select])


def heatmap_frame(items: Sequence[Any], heats: List[Optional[np.ndarray]],
                  errors: List[Optional[str]]) -> Any:
    """The runner's formatter: the raw map, the image's size and a thumbnail per row."""
    import pandas as pd
    rows = []
    for item, heat, error in zip(items, heats, errors):
        width = height = thumb = None
        if heat is not None:
            width, height, thumb = size_and_thumbnail(item)
        rows.append({"heat": None if heat is None else heat.ravel().astype(np.float32),
                     "map_h": None if heat is None else int(heat.shape[0]),
                     "map_w": None if heat is None else int(heat.shape[1]),
                     "width": width, "height": height, "thumbnail": thumb, "error": error})
    return pd.DataFrame(rows, columns=["heat", "map_h", "map_w", "width", "height",
                                       "thumbnail", "error"])


def size_and_thumbnail(item: Any) -> Tuple[Optional[int], Optional[int], Optional[bytes]]:
    from .imaging import InvalidImage, probe, thumbnail_png
    from .loading.previews import _thumb_from_struct
    image, decode = _image_of(item)
    try:
        if decode is decode_bytes:
            width, height, _, _ = probe(image)
            return width, height, thumbnail_png(image, THUMBNAIL_SIDE)
        return int(image["width"]), int(image["height"]), _thumb_from_struct(image, THUMBNAIL_SIDE)
    except InvalidImage:  # it decoded for the model; a thumbnail failing is not fatal
        return None, None, None


__all__ = ["find_maps_layer", "maps_model", "keras_network", "HeatmapHead", "HeatmapModel",
           "linear_head", "normalise",
           "heatmap_batch", "heatmap_frame", "batch_items", "decode_image",
           "size_and_thumbnail", "METHODS", "UDF_RETURN"]
