"""HTML for a FeatureSet: model, feature size, images per split, speed, invalid images."""
from __future__ import annotations

from ..results import FeatureSet
from .html import escape, untrained_banner

MAX_CLASSES_NAMED = 10
MAX_INVALID_SHOWN = 10


def featureset_html(features: FeatureSet) -> str:
    s = features.stats
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>"
                   for k, v in s.get("per_split", {}).items())
    classes = features.classes
    named = ", ".join(map(str, classes[:MAX_CLASSES_NAMED]))
    more = ", ..." if len(classes) > MAX_CLASSES_NAMED else ""
    speed = s.get("images_per_s")
    timing = (f"{escape(s.get('seconds', '?'))} s"
              + (f", {escape(speed)} images/s" if speed else "")
              + f"; cache: {escape(s.get('cache', '?'))}")
    return (f"<div><b>FeatureSet</b>: {escape(features.model_name)} "
            f"(weights: {escape(features.weights)}), {escape(features.feature_dim)}-dim "
            f"features, {len(classes)} classes ({escape(named)}{more})"
            + untrained_banner(features.untrained, "these features are random projections, "
                               "not ImageNet features")
            + f"<table><tr><th>split</th><th>images</th></tr>{rows}</table>"
            f"<p>{timing}</p>{_invalid(features)}</div>")


def _invalid(features: FeatureSet) -> str:
    invalid = features.invalid
    n = 0 if invalid is None else len(invalid)
    if not n:
        return ""
    items = "".join(f"<li>{escape(r.get('path'))}: {escape(r.get('reason'))}</li>"
                    for r in invalid.head(MAX_INVALID_SHOWN).to_dict("records"))
    more = f"<li>... {n - MAX_INVALID_SHOWN} more</li>" if n > MAX_INVALID_SHOWN else ""
    return (f"<details><summary>{n} image(s) could not be decoded and were left out"
            f"</summary><ul>{items}{more}</ul></details>")
