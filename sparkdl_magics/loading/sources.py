"""Where the images come from: files Spark lists, or a DataFrame the user already has.

Spark lists and reads the files (``binaryFile``, recursive lookup, a glob on image
extensions), so any URI Spark reads works and nothing walks directories on the driver.
What Spark's scan leaves out silently is found here so that nothing vanishes: zero-byte
files (from the file index: reported invalid), and names Spark hides (``_x.jpg``,
``._x.jpg``, ``.DS_Store``, files in ``.ipynb_checkpoints/``; found by the workers, see
:mod:`.inventory`): hidden images are loaded, system and other files listed as skipped.
"""
from __future__ import annotations

import os
import re
from typing import Any, List, Optional, Sequence, Tuple
from urllib.parse import unquote

from ..errors import DataError, OptionError, missing_path_errors
from ..results import CONTENT_COL, IMAGE_COL, PATH_COL
from ..session import is_dataframe
from .inventory import Sorted, Unlisted, rows_of, sort_for_loading


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


def _extension_names(extensions: Optional[Sequence[str]]) -> List[str]:
    """The extensions to load, lower case, without dots."""
    if extensions is None:
        # imported here: numpy and Pillow come with it, and %load_ext imports this package
        from ..imaging import IMAGE_EXTENSIONS
        extensions = IMAGE_EXTENSIONS
    return list(dict.fromkeys(str(ext).lstrip(".").lower() for ext in extensions))


def _extension_glob(extensions: Optional[Sequence[str]]) -> str:
    """``*.{jpg,JPG,...}``: Spark's ``pathGlobFilter`` is case-sensitive (other cases,
    ``x.Jpg``, are found by the inventory)."""
    names = []
    for ext in _extension_names(extensions):
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
        self._files: Optional[Any] = None
        self._indexed: Optional[List[str]] = None
        self._unlisted: Optional[Unlisted] = None
        self._sorted: Optional[Sorted] = None
        if is_dataframe(path):
            self.frame, self.image_col = _frame_rows(path)
            self.description = "DataFrame"
            self.paths: List[str] = []
        else:
            self.paths = _paths(path)
            self.description = ", ".join(self.paths)
            self.extensions = _extension_names(extensions)
            self.glob = _extension_glob(extensions)

    def unlisted(self) -> Unlisted:
        """The files under the paths that Spark's scan does not deliver (found once, by
        the workers: :mod:`.inventory`)."""
        if self._unlisted is None:
            self._unlisted = (Unlisted(walked=False) if self.frame is not None else
                              Unlisted.find(self.spark, self.paths, self.glob,
                                            index=self.indexed_files()))
        return self._unlisted

    def sorted_unlisted(self) -> Sorted:
        """Those files sorted: images to load, empty images, skipped files with a reason."""
        if self._sorted is None:
            self._sorted = sort_for_loading(self.unlisted(), self.extensions)
        return self._sorted

    def skipped(self) -> List[Tuple[str, str]]:
        """``(path, reason)`` of the files not loaded that are no images: system files
        (``._x``, ``.DS_Store``, ``Thumbs.db``, hidden folders) and other files."""
        return [] if self.frame is not None else self.sorted_unlisted().skipped

    def files(self) -> Any:
        """The ``binaryFile`` frame of the paths, made once: every query of the load
        reads this one frame, so Spark lists the folder once (its file index holds the
        listing; a new frame would list again and keep its own copy, ~2 KB a file)."""
        if self._files is None:
            self._files = _read_files(self.spark, self.paths, self.glob)
        return self._files

    def rows(self) -> Any:
        """path + the image column (bytes or struct); lazily, nothing is read yet."""
        if self.frame is not None:
            return self.frame
        rows = self.files().select(PATH_COL, CONTENT_COL)
        hidden = self.sorted_unlisted().load
        return rows.unionByName(rows_of(self.spark, hidden)) if hidden else rows

    def listing(self) -> Any:
        """path only (for a binaryFile read, Spark then skips the file contents)."""
        if self.frame is not None:
            return self.frame.select(PATH_COL)
        rows = self.files().select(PATH_COL)
        hidden = self.sorted_unlisted().load
        return rows.unionByName(rows_of(self.spark, hidden, False)) if hidden else rows

    def indexed_files(self) -> List[str]:
        """The files Spark's file index lists (URIs), zero-byte ones included."""
        if self.frame is not None:
            return []
        if self._indexed is None:
            self._indexed = self.files().inputFiles()
        return self._indexed

    def empty_files(self, scanned: Optional[int] = None) -> List[str]:
        """Zero-byte files: Spark's file scans skip them, so find them from the file
        index (``inputFiles``) when it lists more files than the scan returns
        (*scanned*: rows the scan returned, when already known)."""
        if self.frame is not None:
            return []
        hidden = self.sorted_unlisted()
        listed = self.indexed_files()
        scanned = scanned if scanned is not None else self.listing().count()
        if len(listed) <= scanned - len(hidden.load):
            return sorted(hidden.empty)
        files = sorted({unquote(re.sub(r"^([A-Za-z][\w+.-]*):///", r"\1:/", f)) for f in listed})
        indexed = self.spark.createDataFrame([(f,) for f in files], f"{PATH_COL} string")
        missing = indexed.join(self.listing(), on=PATH_COL, how="left_anti").collect()
        return sorted({r[0] for r in missing} | set(hidden.empty))

    def explain_empty(self) -> DataError:
        """Why there is nothing to load: an empty folder, or files that are not images."""
        what = f"option 'path' ({self.description})"
        if self.frame is not None:
            return DataError("the DataFrame given as 'path' has no rows")
        with missing_path_errors(self.paths):
            others = [r[0] for r in _read_files(self.spark, self.paths, None)
                      .select(PATH_COL).limit(3).collect()]
        if not others and self.skipped():
            names = ", ".join(p.rsplit("/", 1)[-1] for p, _ in self.skipped()[:3])
            return DataError(f"{what}: no image files, only {len(self.skipped())} skipped "
                             f"file(s) such as {names} ({self.skipped()[0][1]})")
        if not others:
            return DataError(f"{what}: no files there (empty folder?)")
        names = ", ".join(o.rsplit("/", 1)[-1] for o in others)
        return DataError(f"{what}: no image files (extensions: {self.glob}); found other "
                         f"files such as {names}")
