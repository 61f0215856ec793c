"""Register a model as a Spark SQL function: ``SELECT classify(content) FROM images``.

``register_sql_function("classify", model="ResNet50")`` resolves the model once on the
driver, ships its weights (Spark Connect too) and registers one batched pandas UDF with
``spark.udf.register``. The function takes an image column — compressed bytes
(``binaryFile``'s ``content``) or a Spark image-source struct (``image``) — and
returns, by ``output``:

- ``label`` (default): the top-1 class name (``string``);
- ``labels``: the top-K classes, ``array<struct<class_id, wnid, label, probability>>``;
- ``probabilities``: every class score (``array<float>``);
- ``features``: pooled CNN features (``array<float>``; the headless model, as
  ``%%featurize`` computes them).

An image that cannot be decoded gives NULL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .errors import OptionError, unknown_choice

SQL_OUTPUTS = ("label", "labels", "probabilities", "features")


@dataclass
class SqlFunction:
    """What was registered: the name, its output, and the UDF (usable from Python too)."""

    name: str
    output: str
    model_name: str
    weights: str
    return_type: str
    udf: Any

    def __call__(self, *cols: Any) -> Any:
        return self.udf(*cols)


def register_sql_function(name: str = "classify", model: str = "InceptionV3",
                          weights: Optional[str] = "imagenet", output: str = "label",
                          top_k: int = 5, batch_size: int = 32,
                          labels: Optional[Sequence[str]] = None,
                          layer: Optional[str] = None, preprocess: Optional[str] = None,
                          unsafe: bool = False, spark: Any = None) -> SqlFunction:
    """Register *model* as the SQL function *name* in *spark* (the active session)."""
    from .prediction import OUTPUT_TYPES, _check_int, image_udf, resolve_classifier
    from .session import get_spark, task_cores
    name = str(name).strip()
    if not name.isidentifier():
        raise OptionError(f"option 'name': {name!r} is not a valid SQL function name")
    if str(output).lower() not in SQL_OUTPUTS:
        raise unknown_choice("output", output, SQL_OUTPUTS)
    output = str(output).lower()
    top_k = _check_int("top_k", top_k)
    batch_size = _check_int("batch_size", batch_size)
    spark = spark or get_spark()
    if output == "features":
        from .weights import resolve_spec
        resolved = resolve_spec(str(model), "none" if weights is None else str(weights),
                                layer, preprocess, unsafe=bool(unsafe), spark=spark)
    else:
        if layer:
            raise OptionError("option 'layer': only with output: features")
        resolved = resolve_classifier(model, weights, preprocess, unsafe, spark)
    # SQL users get the top-K array itself ("topk"), not the (array, error) pair
    udf = image_udf(resolved.spec, batch_size, "topk" if output == "labels" else output,
                    top_k, labels, task_cores(spark))
    registered = spark.udf.register(name, udf)
    rtype = OUTPUT_TYPES["topk" if output == "labels" else output]
    return SqlFunction(name, output, resolved.model_name, resolved.weights, rtype,
                       registered)


__all__ = ["register_sql_function", "SqlFunction", "SQL_OUTPUTS"]
