"""The check step: one pass over the files in Spark that finds the invalid ones.

Each file's header (and last bytes, to spot truncation) is read on the executors; the
driver gets back per-class counts, size ranges and the invalid ``(path, reason)`` pairs,
never the bytes. :func:`check_bytes` and :func:`check_decode` run in Spark's Python
workers: module-level so Spark ships them by reference, importing only Pillow/numpy.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import DataError
from ..results import CONTENT_COL, IMAGE_COL, LABEL_NAME_COL, PATH_COL

#: Bytes of each file the header check reads (the start) and the end-marker check reads.
HEAD_BYTES = 256 * 1024
TAIL_BYTES = 64
#: Files per task in the header-check pass (Spark packs ~32 small files per task).
FILES_PER_CHECK_TASK = 1000

GROUP = "_group"  # the class name, or "" when unlabelled (map keys cannot be null)
#: What an image's seeded split key hashes: its path, or for files Python lists, the
#: path below the loaded folder (so a folder and its copy in a bucket split alike).
SPLIT_KEY_COL = "_split_key"

CHECK_SCHEMA = "width int, height int, mode string, format string, reason string"

Groups = Dict[str, Dict[str, Any]]
Invalid = List[Tuple[str, str]]


# --------------------------------------------------------------------------- worker side

def check_bytes(head: Optional[bytes], tail: Optional[bytes], length: int) -> Tuple:
    """(width, height, mode, format, reason) from a file's first and last bytes.

    ``reason`` is None for a good image. Reads the header only; a missing end marker
    (JPEG ``FFD9``, PNG ``IEND``, GIF ``;``) marks a truncated file.
    """
    from ..imaging import InvalidImage, probe
    try:
        width, height, mode, fmt = probe(head if head is not None else b"")
    except InvalidImage as exc:
        return (None, None, None, None, str(exc))
    reason = _truncation(fmt, tail or b"", length)
    return (width, height, mode, fmt, reason)


def _truncation(fmt: str, tail: bytes, length: int) -> Optional[str]:
    end = tail.rstrip(b"\x00\r\n ")
    if fmt == "JPEG" and b"\xff\xd9" not in end[-16:]:
        return f"truncated JPEG (no end-of-image marker; {length} bytes)"
    if fmt == "PNG" and b"IEND" not in tail:
        return f"truncated PNG (no IEND chunk; {length} bytes)"
    if fmt == "GIF" and not end.endswith(b";"):
        return f"truncated GIF (no trailer; {length} bytes)"
    return None


def check_decode(data: Optional[bytes]) -> Tuple:
    """Like :func:`check_bytes` but decodes every pixel (slower, catches everything)."""
    from ..imaging import InvalidImage, decode_rgb, probe
    try:
        width, height, mode, fmt = probe(data if data is not None else b"")
        decode_rgb(data)
    except InvalidImage as exc:
        return (None, None, None, None, str(exc))
    return (width, height, mode, fmt, None)


# --------------------------------------------------------------------------- the pass

@contextlib.contextmanager
def checked_rows(rows: Any, source: Any, check: str) -> Iterator[Any]:
    """The checked rows, cached while the survey and the key thresholds read them.

    The source partitions the pass (:meth:`.sources.Source.for_checking`); the result
    frames keep their own partitioning.
    """
    checked = _checked(source.for_checking(rows), source, check).persist()
    try:
        yield checked
    finally:
        checked.unpersist()


def _checked(rows: Any, source: Any, check: str) -> Any:
    """Light rows: path, class, the header check and the file's size (no bytes kept).

    ``bytes`` (null with ``check='none'``, which reads no content) lets the featurizer
    size its partitions in memory as well as in images.
    """
    from pyspark.sql import functions as F
    group = F.coalesce(F.col(LABEL_NAME_COL), F.lit("")).alias(GROUP)
    result, size = source.check_result(check)
    return (rows.select(PATH_COL, SPLIT_KEY_COL, group, result.alias("c"),
                        size.alias("bytes"))
            .select(PATH_COL, SPLIT_KEY_COL, GROUP, "c.*", "bytes"))


def content_check(image_col: str, check: str) -> Tuple[Any, Any]:
    """(check struct, size) columns computed from the rows' image column."""
    if image_col == IMAGE_COL:
        return _struct_check()
    if check == "none":
        return _no_check()
    if check == "decode":
        return _decode_check()
    return _header_check()


def _struct_check() -> Tuple[Any, Any]:
    """An image-source struct was decoded by Spark: valid when it has pixels."""
    from pyspark.sql import functions as F
    img = F.col(IMAGE_COL)
    size = F.length(img["data"])
    ok = img.isNotNull() & (img["width"] > 0) & (img["height"] > 0) & (size > 0)
    result = F.struct(
        img["width"].alias("width"), img["height"].alias("height"),
        F.lit(None).cast("string").alias("mode"), F.lit("spark-image").alias("format"),
        F.when(ok, F.lit(None)).otherwise(
            F.lit("the Spark image source could not decode it")).alias("reason"))
    return result, size


def _no_check() -> Tuple[Any, Any]:
    """``check='none'``: every file is valid and no content is read."""
    from pyspark.sql import functions as F
    result = F.struct(*(F.lit(None).cast(t).alias(n) for n, t in
                        (("width", "int"), ("height", "int"), ("mode", "string"),
                         ("format", "string"), ("reason", "string"))))
    return result, F.lit(None).cast("long")


def _decode_check() -> Tuple[Any, Any]:
    from pyspark.sql import functions as F
    content = F.col(CONTENT_COL)
    udf = F.udf(check_decode, CHECK_SCHEMA, useArrow=False)
    return udf(content), F.length(content)


def _header_check() -> Tuple[Any, Any]:
    """Only the first HEAD_BYTES and last TAIL_BYTES of each file reach Python."""
    from pyspark.sql import functions as F
    content = F.col(CONTENT_COL)
    size = F.length(content)
    udf = F.udf(check_bytes, CHECK_SCHEMA, useArrow=False)
    head = F.substring(content, 1, HEAD_BYTES)
    tail = F.when(size > HEAD_BYTES,
                  F.substring(content, -TAIL_BYTES, TAIL_BYTES)).otherwise(content)
    return udf(head, tail, size), size


# --------------------------------------------------------------------------- the survey

def survey(checked: Any, source: Any, label_mode: str, classes: Optional[List[str]]
           ) -> Tuple[Groups, Invalid, Dict[str, int]]:
    """Per-class stats, the invalid files (sorted) and the valid images per class.

    *classes*: the classes asked for, or None for all. Raises :class:`DataError` when
    there is nothing to load.
    """
    groups, invalid = _group_stats(checked)
    listed = (sum(g["n"] + g["bad"] for g in groups.values())
              if label_mode == "folders" and not classes else None)
    invalid += _empty_files(source, label_mode, classes, groups, listed)
    invalid.sort()
    if not groups and not invalid:
        raise source.explain_empty()
    valid = {g: s["n"] for g, s in groups.items() if s["n"] > 0}
    if not valid:
        example = "; ".join(f"{p.rsplit('/', 1)[-1]}: {r}" for p, r in invalid[:3])
        raise DataError(f"no valid images in {source.description}: "
                        f"{len(invalid)} invalid file(s) ({example})")
    return groups, invalid, valid


def _group_stats(checked: Any) -> Tuple[Groups, Invalid]:
    """Per class: valid count, invalid count, size range; and the invalid files. One job."""
    from pyspark.sql import functions as F
    valid = F.col("reason").isNull()
    rows = checked.groupBy(GROUP).agg(
        F.sum(F.when(valid, 1).otherwise(0)).alias("n"),
        F.sum(F.when(valid, 0).otherwise(1)).alias("bad"),
        F.min("width").alias("wmin"), F.max("width").alias("wmax"),
        F.min("height").alias("hmin"), F.max("height").alias("hmax"),
        F.sum(F.when(valid, F.col("bytes"))).alias("bytes"),
        F.collect_list(F.when(~valid, F.struct(PATH_COL, "reason"))).alias("invalid"),
    ).collect()
    groups = {r[GROUP]: {"n": int(r["n"]), "bad": int(r["bad"]), "wmin": r["wmin"],
                         "wmax": r["wmax"], "hmin": r["hmin"], "hmax": r["hmax"],
                         "bytes": r["bytes"]} for r in rows}
    invalid = sorted((x[0], x[1]) for r in rows for x in r["invalid"])
    return groups, invalid


def _empty_files(source: Any, label_mode: str, classes: Optional[List[str]],
                 groups: Groups, listed: Optional[int]) -> Invalid:
    """Zero-byte files as invalid entries (counted per class for folder labels)."""
    out = []
    for path in source.empty_files(listed):
        if label_mode == "folders":
            parts = path.rstrip("/").rsplit("/", 2)
            name = parts[-2] if len(parts) >= 2 else ""
            if classes and name not in classes:
                continue
            stats = groups.setdefault(name, {"n": 0, "bad": 0, "wmin": None, "wmax": None,
                                             "hmin": None, "hmax": None})
            stats["bad"] += 1
        out.append((path, "empty file (0 bytes)"))
    return out


def size_stats(groups: Groups) -> Dict[str, Any]:
    """Width / height ranges and the mean file size of the valid images."""
    def pick(key: str, fn: Any) -> Optional[int]:
        values = [s[key] for s in groups.values() if s.get(key) is not None]
        return int(fn(values)) if values else None
    sized = [(s["bytes"], s["n"]) for s in groups.values() if s.get("bytes") and s["n"]]
    mean_bytes = (int(sum(b for b, _ in sized) / sum(n for _, n in sized)) if sized else None)
    return {"width_min": pick("wmin", min), "width_max": pick("wmax", max),
            "height_min": pick("hmin", min), "height_max": pick("hmax", max),
            "mean_bytes": mean_bytes}
