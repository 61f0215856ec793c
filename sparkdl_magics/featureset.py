"""The result of featurizing: what %%fit and %%evaluate consume.

Kept in its own small module so training and evaluation depend on this contract only,
not on how features are computed. Spark is imported lazily (type hints only).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

#: Column names shared by every stage.
PATH_COL = "path"
CONTENT_COL = "content"
IMAGE_COL = "image"
LABEL_COL = "label"
LABEL_NAME_COL = "label_name"
FEATURES_COL = "features"


@dataclass
class FeatureSet:
    """Feature vectors for the train/test splits of an image set.

    ``train`` / ``test`` (and ``validation`` when the image set has one) are DataFrames
    with at least ``path``, ``label`` (double class index), ``label_name`` and
    ``features`` (an MLlib dense vector); rows whose image could not be decoded are not
    in them but listed in ``invalid``. ``featurizer`` is the Spark ML Transformer that
    computed the features (raw image column in, ``features`` out), so a fitted pipeline
    can start from raw images. ``images`` is the source ImageSet (for thumbnails).
    """

    train: Any
    test: Optional[Any]
    classes: List[str]
    featurizer: Optional[Any] = None
    images: Optional[Any] = None
    model_name: str = ""
    weights: str = ""
    feature_col: str = FEATURES_COL
    validation: Optional[Any] = None
    invalid: Any = None  # pandas DataFrame [path, reason] of images that failed to decode
    stats: Dict[str, Any] = field(default_factory=dict)  # counts, images/s, feature dim...

    @property
    def num_classes(self) -> int:
        return len(self.classes)
