"""Grad-CAM through a fine-tuned network (what ``explain`` runs for a FineTunedModel).

The fine-tuned ``.keras`` file is ``image → backbone (nested: a keras.applications
model or the user's CNN) → head → Dense softmax`` (:func:`.network.build`). A class's
score is the final Dense layer's logit, ``kernel[:, k] . h + bias[k]`` with ``h`` the
head's last activations: the same linear form a ``%%fit`` model's classifier has over
its features, so the heatmap model is :class:`~sparkdl_magics.cam.HeatmapModel` with
``h`` as the features and the kernel as the class weights, and the maps the last 4-D
output inside the backbone (:func:`~sparkdl_magics.cam.find_maps_layer`). Its gradient
is the logit's (the bias has none); the softmax is left out on purpose: the gradient of
a saturated probability (or of its log) fades as the model grows sure.

CAM needs the class score to be linear in the averaged maps, which the head's
normalisation and hidden layers break: fine-tuned models get Grad-CAM only.

Built on the worker from the cached model of the pipeline's own featurizer stage (the
file cut at its softmax), by the batch runner's ``derive`` hook.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cam import HeatmapModel, find_maps_layer, keras_network, maps_model
from ..errors import OptionError
from .network import OUTPUT_LAYER


@dataclass(frozen=True)
class NetworkHead:
    """Turns the cached fine-tuned network into its Grad-CAM model (hashable: a cache key)."""

    num_classes: int
    method: str = "gradcam"

    def __call__(self, base: Any) -> HeatmapModel:
        from ..tfimport import import_keras
        keras = import_keras()
        net = keras_network(base)
        try:
            final = net.get_layer(OUTPUT_LAYER)
        except ValueError:
            final = None
        if not isinstance(final, keras.layers.Dense) or final.units != self.num_classes:
            raise OptionError(f"option 'model': the fine-tuned network has no Dense "
                              f"{OUTPUT_LAYER!r} layer with {self.num_classes} outputs to "
                              "explain (was the file changed?)")
        body = keras.Model(net.inputs, final.input)  # the head's last activations, h
        layer, _ = find_maps_layer(body)
        weights = np.asarray(final.kernel, dtype=np.float32).T  # (classes, units)
        return HeatmapModel(base, self.method, maps_model(body, layer), weights)


__all__ = ["NetworkHead"]
