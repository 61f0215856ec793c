"""Where the images come from: files Python lists on the executors, files Spark lists,
or a DataFrame the user already has. :func:`make_source` picks one
(:func:`sparkdl_magics.storage.choose` decides who reads a path).

- :class:`StoredSource`: local folders and object stores Python reads (:mod:`.stored`):
  a distributed listing, so the driver holds no per-file state; every file is an image or
  skipped with a reason; bytes are read by the tasks that use them.
- :class:`Source`: storage only Spark reads (``dbfs:``, ``hdfs:``, an ``s3a:`` with the
  connector): Spark lists and reads the files (``binaryFile``, recursive lookup, a glob
  on image extensions). What Spark's scan leaves out silently is found so that nothing
  vanishes: zero-byte files (from the file index: reported invalid), and names Spark
  hides (``_x.jpg``, ``._x.jpg``, ``.DS_Store``; found by the workers where they can walk
  the folders, see :mod:`.inventory`).
- a DataFrame given as ``path`` (:class:`Source` with ``frame``).

The loader uses one interface: ``rows()`` (path + image column, lazily), ``listing()``
(paths only), ``file_count()``, ``check_result()``, ``with_content()``, ``skipped()``,
``empty_files()``, ``explain_empty()``.
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote

from ..errors import DataError, OptionError, missing_path_errors
from ..results import CONTENT_COL, IMAGE_COL, PATH_COL
from ..session import is_dataframe
from .checks import SPLIT_KEY_COL
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

    def file_count(self) -> int:
        """How many files the listing holds (sizes the header-check pass)."""
        return len(self.indexed_files())

    @property
    def hidden_unchecked(self) -> bool:
        """Whether names Spark hides could not be looked for (storage the workers
        cannot walk)."""
        return self.frame is None and not self.unlisted().walked

    def for_checking(self, rows: Any) -> Any:
        """*rows* partitioned for the header-check pass: many small files make many
        small scan tasks; the check needs far fewer."""
        from .checks import FILES_PER_CHECK_TASK
        n_files = self.file_count()
        if n_files > FILES_PER_CHECK_TASK:
            return rows.coalesce(max(2, math.ceil(n_files / FILES_PER_CHECK_TASK)))
        return rows

    def check_result(self, check: str) -> Tuple[Any, Any]:
        """(check struct, size) columns of the header check, from the image column."""
        from .checks import content_check
        return content_check(self.image_col, check)

    def with_content(self, frame: Any, images: int) -> Any:
        """*frame* with its image column: here it is there from the start."""
        return frame

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
        """path + the image column (bytes or struct) + the split key (the path);
        lazily, nothing is read yet."""
        from pyspark.sql import functions as F
        if self.frame is not None:
            rows = self.frame
        else:
            rows = self.files().select(PATH_COL, CONTENT_COL)
            hidden = self.sorted_unlisted().load
            rows = rows.unionByName(rows_of(self.spark, hidden)) if hidden else rows
        return rows.withColumn(SPLIT_KEY_COL, F.col(PATH_COL))

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


class StoredSource:
    """Files Python lists and reads on the executors (:mod:`.stored`): the same
    interface as :class:`Source`, with no per-file state on the driver."""

    frame = None
    image_col = CONTENT_COL
    hidden_unchecked = False

    def __init__(self, spark: Any, paths: List[str], extensions: Optional[Sequence[str]],
                 store: Any):
        self.spark = spark
        self.store = store
        self.paths = [_absolute(p) if store.kind == "local" else p for p in paths]
        self.description = ", ".join(paths)
        self.extensions = _extension_names(extensions)
        self.glob = _extension_glob(extensions)
        self._listed: Optional[Any] = None
        self._counts: Optional[Dict[str, Any]] = None
        self._skipped: List[Tuple[str, str]] = []
        self._empty: List[str] = []

    def listed(self) -> Any:
        """Every file under the paths (``path``, ``size``, ``skip``), listed once by
        the executors and persisted on their disks: with a ``local`` master the
        executor is the driver's JVM, whose heap would otherwise hold ~100 bytes a file."""
        if self._listed is None:
            from pyspark import StorageLevel

            from .stored import listing_frame
            self._listed = listing_frame(self.spark, self.store, self.paths,
                                         self.extensions).persist(StorageLevel.DISK_ONLY)
        return self._listed

    def counts(self) -> Dict[str, Any]:
        """Files and images of the listing; the skipped and the empty files (one job)."""
        if self._counts is None:
            from pyspark.sql import functions as F

            from .stored import SIZE_COL, SKIP_COL
            image = F.col(SKIP_COL).isNull()
            row = self.listed().agg(
                F.count(F.lit(1)).alias("files"),
                F.sum(F.when(image & (F.col(SIZE_COL) > 0), 1).otherwise(0)).alias("images"),
                F.collect_list(F.when(image & (F.col(SIZE_COL) == 0), F.col(PATH_COL)))
                .alias("empty"),
                F.collect_list(F.when(~image, F.struct(PATH_COL, SKIP_COL))).alias("skipped"),
            ).first()
            self._counts = {k: int(row[k] or 0) for k in ("files", "images")}
            self._empty = sorted(row["empty"])
            self._skipped = sorted((r[0], r[1]) for r in row["skipped"])
        return self._counts

    def _images(self) -> Any:
        from pyspark.sql import functions as F

        from .stored import SIZE_COL, SKIP_COL
        return self.listed().filter(F.col(SKIP_COL).isNull() & (F.col(SIZE_COL) > 0))

    def rows(self) -> Any:
        """path + size of the images (the bytes come with :meth:`with_content`); the
        split key is the path below the loaded folder or prefix."""
        from pyspark.sql import functions as F

        from .stored import BELOW_COL, SIZE_COL
        return self._images().select(PATH_COL, SIZE_COL,
                                     F.col(BELOW_COL).alias(SPLIT_KEY_COL))

    def listing(self) -> Any:
        return self._images().select(PATH_COL)

    def file_count(self) -> int:
        return self.counts()["images"]

    def for_checking(self, rows: Any) -> Any:
        """*rows* spread over the task slots (the listing has a partition per folder)."""
        from ..session import task_slots
        from .stored import check_partitions
        return rows.repartition(check_partitions(self.file_count(), task_slots(self.spark)))

    def check_result(self, check: str) -> Tuple[Any, Any]:
        """The header check reads each file's ends on the executors (ranged reads)."""
        from pyspark.sql import functions as F

        from .checks import HEAD_BYTES, TAIL_BYTES, content_check
        from .stored import SIZE_COL, check_column
        if check == "none":
            return content_check(CONTENT_COL, check)
        return check_column(self.store, check, HEAD_BYTES, TAIL_BYTES), F.col(SIZE_COL)

    def with_content(self, frame: Any, images: int) -> Any:
        """*frame* spread over small partitions (at most ~128 images each, as the
        featurizer's batches expect), then each file's bytes read in its partition."""
        from ..partitioning import IMAGES_PER_PARTITION
        parts = max(1, math.ceil(images / IMAGES_PER_PARTITION))
        return self.content_of(frame.repartition(parts))

    def content_of(self, frame: Any, chunk: Optional[int] = None) -> Any:
        """*frame* (with ``path``) plus each file's bytes, read in *frame*'s own tasks
        (*chunk* files at a time): a consumer that repartitions the rows first (the
        featurizer) then moves paths between tasks, not bytes."""
        from .stored import READ_CHUNK, content_column
        return frame.select("*", content_column(self.store, chunk or READ_CHUNK))

    def contents(self, paths: Sequence[str]) -> Any:
        """``path`` + ``content`` of a few listed files, read in the listing's own few
        partitions (the result frames' many small partitions would each start Python)."""
        from pyspark.sql import functions as F

        from .stored import content_column
        return self.listed().filter(F.col(PATH_COL).isin(list(paths))) \
            .select(PATH_COL, content_column(self.store))

    def skipped(self) -> List[Tuple[str, str]]:
        """``(path, reason)`` of the files that are not loaded (system, other files)."""
        self.counts()
        return self._skipped

    def empty_files(self, scanned: Optional[int] = None) -> List[str]:
        """Images of zero bytes (invalid)."""
        self.counts()
        return self._empty

    def explain_empty(self) -> DataError:
        """Why there is nothing to load: no files, only system files, or no images."""
        what = f"option 'path' ({self.description})"
        skipped = self.skipped()
        if not skipped:
            return DataError(f"{what}: no files there (empty folder?)")
        system = [s for s in skipped if s[1].startswith("system file")]
        if len(system) == len(skipped):
            names = ", ".join(p.rsplit("/", 1)[-1] for p, _ in system[:3])
            return DataError(f"{what}: no image files, only {len(system)} skipped "
                             f"file(s) such as {names} ({system[0][1]})")
        others = [p for p, r in skipped if not r.startswith("system file")]
        names = ", ".join(o.rsplit("/", 1)[-1] for o in others[:3])
        return DataError(f"{what}: no image files (extensions: {self.glob}); found other "
                         f"files such as {names}")


def _absolute(path: str) -> str:
    """A local path as an absolute one (the executors' working folder is not ours)."""
    from .inventory import local_path
    local = local_path(path)
    return os.path.abspath(local) if local is not None else path


def make_source(spark: Any, path: Any, extensions: Optional[Sequence[str]],
                storage_options: Optional[Dict[str, Any]] = None, reader: str = "auto") -> Any:
    """The source of a load: a DataFrame's rows, files Python reads, or files Spark reads."""
    if is_dataframe(path):
        if storage_options:
            raise OptionError("option 'storage_options' is for paths, not a DataFrame")
        return Source(spark, path, extensions)
    from ..storage import choose
    paths = _paths(path)
    store = choose(spark, paths, storage_options, reader)
    if store is None:
        return Source(spark, paths, extensions)
    return StoredSource(spark, paths, extensions, store)
