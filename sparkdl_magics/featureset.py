"""The result of featurizing: what %%fit and %%evaluate consume.

Kept in its own small module so training and evaluation depend on this contract only,
not on how features are computed. Spark is imported lazily (type hints only).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .errors import DataError

#: Column names shared by every stage.
PATH_COL = "path"
CONTENT_COL = "content"
IMAGE_COL = "image"
LABEL_COL = "label"
LABEL_NAME_COL = "label_name"
FEATURES_COL = "features"


def image_column(df: Any) -> str:
    """The image column of *df*: compressed bytes (``content``) or an image struct (``image``)."""
    for name in (CONTENT_COL, IMAGE_COL):
        if name in df.columns:
            return name
    raise DataError(f"the images have no {CONTENT_COL!r} (bytes) or {IMAGE_COL!r} (image "
                    f"struct) column (columns: {', '.join(df.columns)})")


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
    untrained: bool = False  # weights='none': random features, not a pretrained model

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def feature_dim(self) -> Optional[int]:
        return self.stats.get("feature_dim")

    def summary(self) -> Dict[str, Any]:
        """What the rich display shows, as plain data."""
        return {
            "model": self.model_name, "weights": self.weights, "untrained": self.untrained,
            "classes": list(self.classes), "feature_dim": self.feature_dim,
            **{k: v for k, v in self.stats.items() if k not in ("feature_dim", "untrained")},
        }

    def unpersist(self) -> None:
        """Release cached features (memory-and-disk cache)."""
        for df in (self.train, self.test, self.validation):
            if df is not None:
                try:
                    df.unpersist()
                except Exception:
                    pass

    def _repr_html_(self) -> str:
        from html import escape
        s = self.stats
        per_split = s.get("per_split", {})
        rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>"
                       for k, v in per_split.items())
        warn = ("<p style='color:#b00;font-weight:bold'>weights: none: the model is "
                "UNTRAINED; these features are random projections, not ImageNet features."
                "</p>" if self.untrained else "")
        invalid = ""
        n_invalid = 0 if self.invalid is None else len(self.invalid)
        if n_invalid:
            items = "".join(
                f"<li>{escape(str(r.get('path')))}: {escape(str(r.get('reason')))}</li>"
                for r in self.invalid.head(10).to_dict("records"))
            more = f"<li>... {n_invalid - 10} more</li>" if n_invalid > 10 else ""
            invalid = (f"<details><summary>{n_invalid} image(s) could not be decoded and "
                       f"were left out</summary><ul>{items}{more}</ul></details>")
        speed = s.get("images_per_s")
        return (
            f"<div><b>FeatureSet</b>: {escape(str(self.model_name))} "
            f"(weights: {escape(str(self.weights))}), {escape(str(self.feature_dim))}-dim "
            f"features, {len(self.classes)} classes "
            f"({escape(', '.join(map(str, self.classes[:10])))}"
            f"{', ...' if len(self.classes) > 10 else ''}){warn}"
            f"<table><tr><th>split</th><th>images</th></tr>{rows}</table>"
            f"<p>{escape(str(s.get('seconds', '?')))} s"
            + (f", {escape(str(speed))} images/s" if speed else "")
            + f"; cache: {escape(str(s.get('cache', '?')))}</p>{invalid}</div>")
