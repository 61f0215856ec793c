"""%%dlload: load a labelled image collection into Spark (an ImageSet).

Thin: parse → :func:`sparkdl_magics.loading.load_images` (same option names) → store
the ImageSet under the name on the line → return it (it renders inline).
"""
from __future__ import annotations

from typing import Any

from .. import defaults
from ..loading.choices import CHECKS, MULTI_LABEL_POLICIES, PER_CLASS_MIN, READERS, SAMPLE_MAX
from ..options import (MagicCall, MagicSpec, Option, as_choice, as_float, as_int, as_list_of,
                       as_mapping, as_str)
from .runner import Context


def _paths(value: Any) -> Any:
    """One path / glob / URI, or a list of them."""
    if isinstance(value, (list, tuple)):
        return [as_str(v) for v in value]
    return as_str(value)


def _split(value: Any) -> Any:
    """A train fraction, or a [train, test] / [train, validation, test] list."""
    if isinstance(value, (list, tuple)):
        return [as_float(0, 1)(v) for v in value]
    return as_float(0, 1, exclusive_min=True)(value)


_paths.__name__ = "path"
_split.__name__ = "split"

SPEC = MagicSpec(
    name="dlload",
    summary="Load labelled images into Spark (compressed), with class counts, a preview, "
            "invalid files listed, sampling and a stratified seeded train/test split.",
    positional=("name", "path"),
    usage="The ImageSet is stored under 'name' and shown (class counts, thumbnails).\n"
          "'path' may also be the name of a notebook variable holding a Spark DataFrame\n"
          "(a binaryFile frame, or an image-source frame). Same options as\n"
          "sparkdl_magics.load_images(...).",
    options=(
        Option("path", None, "folder with one sub-folder per class, a glob, a list of "
               "paths, a bucket prefix (s3://, gs://, abfss://, az://) or any URI Spark "
               "reads (dbfs:/, hdfs://)", _paths),
        Option("labels", "folders", "where labels come from: folders (parent folder "
               "name), none (unlabelled), or a CSV/Parquet label table path", as_str),
        Option("id_column", "ImageID", "label table: the image id column; ids may be file "
               "stems, file names, paths relative to the folder, or absolute paths", as_str),
        Option("label_column", "LabelName", "label table: column with the class name", as_str),
        Option("confidence_column", "Confidence", "label table: confidence column (used "
               "if present)", as_str),
        Option("min_confidence", 0.5, "label table: ignore rows with a lower confidence",
               as_float()),
        Option("classes", None, "keep only these classes, e.g. [Car, Tree] (class index "
               "order as given)", as_list_of(as_str)),
        Option("multi_label", "drop", "images with several of the chosen labels: drop "
               "them, keep the first class, keep all (one row per label), or keep each "
               "image with its label set (a multi-label task)",
               as_choice(*MULTI_LABEL_POLICIES)),
        Option("label_separator", None, "label table: several labels in one cell, split on "
               "this, e.g. '|' (NIH 'Finding Labels')", as_str),
        Option("empty_label", None, "with multi_label: keep, the label meaning none (an "
               "empty label set), e.g. No Finding", as_str),
        Option("sample", None, "keep this fraction of each class (seeded)",
               as_float(0, SAMPLE_MAX, exclusive_min=True)),
        Option("per_class", None, "keep at most this many images per class (seeded)",
               as_int(PER_CLASS_MIN)),
        Option("split", defaults.SPLIT, "train fraction, or [train, test] / [train, validation, test]; "
               "stratified and seeded; 1 = no test set", _split),
        Option("seed", defaults.SEED, "seed for sampling and splitting", as_int()),
        Option("check", "header", "invalid-file check: header (header + end marker), "
               "decode (decode every image, slow), none", as_choice(*CHECKS)),
        Option("extensions", None, "image file extensions to list (default: jpg, jpeg, png, "
               "gif, bmp, webp, tif, tiff)", as_list_of(as_str)),
        Option("storage_options", None, "object stores: what the environment does not "
               "say, e.g. {endpoint: http://127.0.0.1:9000, anonymous: true, region: "
               "eu-west-1, profile: dev}", as_mapping),
        Option("reader", "auto", "who lists and reads the files: auto (Python on the "
               "executors for local folders and stores Spark cannot read), spark, python",
               as_choice(*READERS)),
    ),
)


def run(call: MagicCall, ctx: Context) -> Any:
    from ..errors import OptionError
    from ..loading import load_images
    from ..session import is_dataframe

    opts = {k: v for k, v in call.options.items() if v is not None}
    name = call.positional[0] if call.positional else None
    if name is not None and not name.isidentifier():
        raise OptionError(f"{name!r} is not a Python variable name (usage: "
                          f"{ctx.spec.usage_line()})")
    if len(call.positional) > 1:
        if "path" in call.given:
            raise OptionError("give the path either on the line or as 'path:', not both")
        opts["path"] = call.positional[1]
    source = opts.get("path")
    if isinstance(source, str) and source.isidentifier() \
            and is_dataframe(ctx.shell.user_ns.get(source)):
        opts["path"] = ctx.shell.user_ns[source]
    if source is None:
        raise OptionError("option 'path' is required: a folder (one sub-folder per class), "
                          "a glob, a list of paths, or a DataFrame variable")
    spark = opts["path"].sparkSession if is_dataframe(opts["path"]) else ctx.spark()
    with ctx.progress_scope("dlload"):
        images = load_images(spark=spark, **opts)
    if name is not None:
        ctx.store(name, images)
    return images
