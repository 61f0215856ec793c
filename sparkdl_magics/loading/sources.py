"""Where the images come from: files Spark lists, or a DataFrame the user already has.

Spark lists and reads the files (``binaryFile``, recursive lookup, a glob on image
extensions), so any URI Spark reads works and nothing walks directories on the driver.
Zero-byte files are the one thing Spark's scan skips silently: they are found here, from
the file index, so that they can be reported as invalid rather than vanish.
"""
from __future__ import annotations

import os
import re
from typing import Any, List, Optional, Sequence, Tuple
from urllib.parse import unquote

from ..errors import DataError, OptionError, missing_path_errors
from ..results import CONTENT_COL, IMAGE_COL, PATH_COL
from ..session import is_dataframe


def _paths(path: Any) -> List[str]:
    """The ``path`` option as a list of paths / URIs (``~`` expanded for local ones)."""
    if path is None:
        raise OptionError("option 'path': give a folder, a glob, a list of paths or a "
                          "DataFrame of images")
    items = list(path) if isinstance(path, (list, tuple)) else [path]
    out = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)) or not str(item).strip():
            raise OptionError(f"option 'path': expected a path or URI, got {item!r}")
        text = os.fspath(item).strip()
        out.append(os.path.expanduser(text) if "://" not in text else text)
    return out


def _extension_glob(extensions: Optional[Sequence[str]]) -> str:
    """``*.{jpg,JPG,...}``: Spark's ``pathGlobFilter`` is case-sensitive."""
    if extensions is None:
        # imported here: numpy and Pillow come with it, and %load_ext imports this package
        from ..imaging import IMAGE_EXTENSIONS
        extensions = IMAGE_EXTENSIONS
    names = []
    for ext in extensions:
        ext = str(ext).lstrip(".").lower()
        names += [ext, ext.upper()]
    return "*.{" + ",".join(dict.fromkeys(names)) + "}"


def _read_files(spark: Any, paths: List[str], glob: Optional[str]) -> Any:
    reader = spark.read.format("binaryFile").option("recursiveFileLookup", "true")
    if glob:
        reader = reader.option("pathGlobFilter", glob)
    return reader.load(paths)


def _frame_rows(frame: Any) -> Tuple[Any, str]:
    """(path + image column, the image column's name) of a DataFrame source."""
    from pyspark.sql import functions as F
    cols = set(frame.columns)
    if IMAGE_COL in cols and dict(frame.dtypes)[IMAGE_COL].startswith("struct"):
        return frame.select(F.col(f"{IMAGE_COL}.origin").alias(PATH_COL), IMAGE_COL), IMAGE_COL
    if {PATH_COL, CONTENT_COL} <= cols:
        return frame.select(PATH_COL, CONTENT_COL), CONTENT_COL
    raise DataError(
        "a DataFrame source needs 'path' and 'content' columns (a binaryFile "
        f"frame) or an 'image' struct (an image-source frame); it has: "
        f"{', '.join(frame.columns)}")


class Source:
    """The source rows, as a function of whether the bytes are needed."""

    def __init__(self, spark: Any, path: Any, extensions: Optional[Sequence[str]]):
        self.spark = spark
        self.frame: Optional[Any] = None
        self.image_col = CONTENT_COL
        self._indexed: Optional[List[str]] = None
        if is_dataframe(path):
            self.frame, self.image_col = _frame_rows(path)
            self.description = "DataFrame"
            self.paths: List[str] = []
        else:
            self.paths = _paths(path)
            self.description = ", ".join(self.paths)
            self.glob = _extension_glob(extensions)

    def rows(self) -> Any:
        """path + the image column (bytes or struct); lazily, nothing is read yet."""
        if self.frame is not None:
            return self.frame
        return _read_files(self.spark, self.paths, self.glob).select(PATH_COL, CONTENT_COL)

    def listing(self) -> Any:
        """path only (for a binaryFile read, Spark then skips the file contents)."""
        if self.frame is not None:
            return self.frame.select(PATH_COL)
        return _read_files(self.spark, self.paths, self.glob).select(PATH_COL)

    def indexed_files(self) -> List[str]:
        """The files Spark's file index lists (URIs), zero-byte ones included."""
        if self.frame is not None:
            return []
        if self._indexed is None:
            self._indexed = _read_files(self.spark, self.paths, self.glob).inputFiles()
        return self._indexed

    def empty_files(self, scanned: Optional[int] = None) -> List[str]:
        """Zero-byte files: Spark's file scans skip them, so find them from the file
        index (``inputFiles``) when it lists more files than the scan returns
        (*scanned*: rows the scan returned, when already known)."""
        if self.frame is not None:
            return []
        listed = self.indexed_files()
        if len(listed) <= (scanned if scanned is not None else self.listing().count()):
            return []
        files = sorted({unquote(re.sub(r"^([A-Za-z][\w+.-]*):///", r"\1:/", f)) for f in listed})
        indexed = self.spark.createDataFrame([(f,) for f in files], f"{PATH_COL} string")
        missing = indexed.join(self.listing(), on=PATH_COL, how="left_anti").collect()
        return sorted(r[0] for r in missing)

    def explain_empty(self) -> DataError:
        """Why there is nothing to load: an empty folder, or files that are not images."""
        what = f"option 'path' ({self.description})"
        if self.frame is not None:
            return DataError("the DataFrame given as 'path' has no rows")
        with missing_path_errors(self.paths):
            others = [r[0] for r in _read_files(self.spark, self.paths, None)
                      .select(PATH_COL).limit(3).collect()]
        if not others:
            return DataError(f"{what}: no files there (empty folder?)")
        names = ", ".join(o.rsplit("/", 1)[-1] for o in others)
        return DataError(f"{what}: no image files (extensions: {self.glob}); found other "
                         f"files such as {names}")
