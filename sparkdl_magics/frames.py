"""The DataFrame behind what a user passes to a stage: results or plain DataFrames.

Every stage accepts a result from the previous one or a Spark DataFrame (classic or
Connect). These helpers say, with ``isinstance`` on the result classes, which frame a
stage works on, and give one clear error for anything else.
"""
from __future__ import annotations

from typing import Any

from .errors import DataError, OptionError
from .results import CONTENT_COL, FEATURES_COL, IMAGE_COL, FeatureSet, ImageSet
from .session import is_dataframe


def image_column(df: Any) -> str:
    """The image column of *df*: compressed bytes (``content``) or an image struct (``image``)."""
    for name in (CONTENT_COL, IMAGE_COL):
        if name in df.columns:
            return name
    raise DataError(f"the images have no {CONTENT_COL!r} (bytes) or {IMAGE_COL!r} (image "
                    f"struct) column (columns: {', '.join(df.columns)})")


def images_frame(images: Any, action: str) -> Any:
    """All images of an ImageSet (its ``df``), or a DataFrame of images as it is."""
    if is_dataframe(images):
        return images
    if isinstance(images, ImageSet):
        return images.df
    raise DataError(f"cannot {action} a {type(images).__name__}: expected an image set "
                    "from %%dlload / load_images, or a DataFrame of images")


def model_input_frame(data: Any) -> Any:
    """What a fitted model predicts on: a DataFrame, a FeatureSet's test split (else
    train), or an ImageSet's images (raw images go through the featurizer stage)."""
    if is_dataframe(data):
        return data
    if isinstance(data, FeatureSet):
        return data.test if data.test is not None else data.train
    return images_frame(data, "predict on")


def evaluation_frame(data: Any, trained_on: Any) -> Any:
    """What a model is evaluated on: *data* (a FeatureSet's test split, an ImageSet's test
    split — else all its images —, or a DataFrame), else the test split of the features
    it was trained on (*trained_on*)."""
    if data is None:
        if trained_on is None:
            raise OptionError("this model does not know its test data (it was loaded from "
                              "disk?): pass data= (a FeatureSet, ImageSet or DataFrame)")
        data = trained_on
    if isinstance(data, FeatureSet):
        if data.test is None:
            raise DataError("the FeatureSet has no test split: split the images when "
                            "loading (split: 0.8), or pass data=")
        if data.feature_col != FEATURES_COL:
            return data.test.withColumnRenamed(data.feature_col, FEATURES_COL)
        return data.test
    if isinstance(data, ImageSet):
        return data.test if data.test is not None else data.df
    if not is_dataframe(data):
        raise DataError(f"cannot evaluate on a {type(data).__name__}: expected a FeatureSet, "
                        "an ImageSet or a Spark DataFrame")
    return data


__all__ = ["image_column", "images_frame", "model_input_frame", "evaluation_frame"]
