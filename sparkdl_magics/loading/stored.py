"""Files that Python lists and reads on the executors (:mod:`sparkdl_magics.storage`).

The listing is two Spark jobs, and its rows never reach the driver:

1. one task per loaded path lists that path's top level: the sub-folders (the class
   folders, or a bucket's prefixes) become the *units* of the next job; a path that
   does not exist, a bucket that does not, missing credentials or an endpoint that does
   not answer come back here as one line each;
2. one task per unit lists every file below it (``mapInArrow``: rows stream out in
   batches, so a folder of a million files is never one Python list) and says what each
   file is: an image, or skipped with a reason (system files such as ``._x`` and
   ``.DS_Store``, files in hidden folders, other extensions). Names Spark's own sources
   hide (``_x.jpg``) are images like any other here.

The listing is persisted on the executors (``path``, ``size``, ``skip``); the driver only
collects counts, the skipped and the empty files. Each file's header check reads just its
first and last bytes (:func:`check_rows`, ranged reads on object stores) and the bytes
themselves are read only by the frames that need them (:func:`read_bytes`), in the
batch that decodes them — exactly like ``binaryFile``'s ``content`` for the rest of the
package. Reads on object stores run in a small thread pool per task (pyarrow releases
the GIL), since each object costs a round trip.
"""
from __future__ import annotations

import fnmatch
import math
import re
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import pandas as pd  # this module is imported only when a load lists with Python

from ..errors import DataError
from ..results import CONTENT_COL, PATH_COL
from ..storage import Store, filesystem, storage_message
from .inventory import _files, _not_an_image, _roots, expand_braces, system_reason

#: The persisted listing: every file, its size, why it is skipped (None: an image) and
#: its path below the loaded path (the split key: a folder copied to a bucket splits alike).
LISTING_SCHEMA = "path string, size long, skip string, below string"
SIZE_COL = "size"
SKIP_COL = "skip"
BELOW_COL = "below"
#: Rows per Arrow batch the listing yields.
LISTING_BATCH = 4096
#: Objects read at once per task on a remote store (local files: one at a time).
REMOTE_THREADS = 16
#: Images per chunk of read bytes a task hands back (bounds a worker's memory).
READ_CHUNK = 32
#: A partition of the listing per this many files in the header-check pass.
FILES_PER_CHECK_TASK = 2000
#: Why an object named ``x/`` with nothing below it is skipped (S3 consoles and tools make
#: them for empty folders; pyarrow lists every ``x/`` object as a folder, so one with
#: files below it is that folder and is not counted on its own).
FOLDER_MARKER = "system file (folder marker: an empty 'folder/' object)"
_GLOB = re.compile(r"[*?\[{]")
_UNITS_SCHEMA = "start string, recursive boolean, error string"


# --------------------------------------------------------------------------- worker side

def units_of(store: Store, url: str) -> List[Tuple[Optional[str], bool, Optional[str]]]:
    """Worker side: ``(start, recursive, error)`` units below one loaded path: its own
    files (not recursive) and each sub-folder (recursive); a glob is one unit."""
    path = store.fs_path(url)
    if _GLOB.search(path):
        return [(path, True, None)]
    try:
        if store.kind == "local":
            return _local_units(path, url)
        from pyarrow import fs as pafs
        fs = filesystem(store)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            bucket = path.split("/", 1)[0]
            if bucket != path and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                return [(None, False, f"{url}: no such bucket {bucket!r}")]
            if not fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
                return [(None, False, f"option 'path': {url} does not exist")]
        if info.type == pafs.FileType.File:
            return [(path, False, None)]
        children = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    except Exception as exc:  # the store's own words, shortened to one line
        return [(None, False, storage_message(exc, url, store))]
    return [(path, False, None)] + [(c.path, True, None) for c in children
                                    if c.type == pafs.FileType.Directory]


def _local_units(path: str, url: str) -> List[Tuple[Optional[str], bool, Optional[str]]]:
    import os
    if not os.path.exists(path):
        return [(None, False, f"option 'path': {url} does not exist")]
    if not os.path.isdir(path):
        return [(path, False, None)]
    with os.scandir(path) as entries:
        folders = sorted(e.path for e in entries if e.is_dir(follow_symlinks=True))
    return [(path, False, None)] + [(f, True, None) for f in folders]


def list_files(store: Store, root: str, start: str, recursive: bool,
               extensions: Sequence[str], tag: str = ""
               ) -> Iterator[Tuple[str, int, Optional[str], str]]:
    """Worker side: ``(url, size, skip reason, path below the loaded path)`` of every file
    of one unit; *root*: the loaded path, whose sub-folders and file names decide the
    skip reasons; *tag* prefixes the path below it (which of several loaded paths)."""
    base = store.fs_path(root)
    for fs_path, parts, size in _walk(store, base, start, recursive):
        url = store.url(fs_path, root)
        yield url, size, _skip_reason(parts, url, extensions), tag + "/".join(parts)


def _walk(store: Store, base: str, start: str, recursive: bool
          ) -> Iterator[Tuple[str, List[str], int]]:
    """(file system path, parts below the loaded path, size) of the unit's files."""
    import os
    if store.kind == "local":
        roots = _roots(start) if _GLOB.search(start) else [start]
        for root in roots:
            top = root if _GLOB.search(start) or os.path.isfile(root) else base
            for path, _ in _files(root, recursive):
                try:
                    size = os.path.getsize(path)
                except OSError:
                    continue  # gone since it was listed
                below = os.path.relpath(path, top) if top != path else os.path.basename(path)
                yield path, below.split(os.sep), size
        return
    from pyarrow import fs as pafs
    fs = filesystem(store)
    pattern = start if _GLOB.search(start) else None
    prefix = start[:_GLOB.search(start).start()].rsplit("/", 1)[0] if pattern else start
    info = fs.get_file_info(prefix)
    if info.type == pafs.FileType.File:
        yield prefix, [prefix.rsplit("/", 1)[-1]], int(info.size or 0)
        return
    top = prefix if pattern else base
    folders, parents = [], set()
    for entry in fs.get_file_info(pafs.FileSelector(prefix, recursive=bool(recursive or pattern),
                                                    allow_not_found=True)):
        parents.add(entry.path.rsplit("/", 1)[0])
        if entry.type != pafs.FileType.File:
            folders.append(entry.path)
            continue
        if pattern and not any(fnmatch.fnmatchcase(entry.path, p)
                               for p in expand_braces(pattern)):
            continue
        yield entry.path, entry.path[len(top):].lstrip("/").split("/"), int(entry.size or 0)
    if pattern or not recursive:  # a top level's folders are units of their own
        return
    if not parents and prefix != base:
        folders = [prefix]  # the unit itself: a sub-folder with nothing below it
    for folder in folders:  # a folder with nothing below it: a folder-marker object (x/)
        if folder not in parents:
            yield folder + "/", folder[len(top):].lstrip("/").split("/") + [""], 0


def _skip_reason(parts: Sequence[str], url: str, extensions: Sequence[str]) -> Optional[str]:
    """Why a listed file is not loaded (None: it is an image, maybe an empty one)."""
    name = parts[-1]
    if not name:
        return FOLDER_MARKER
    system = system_reason(parts)
    if system:
        return system
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return None if ext in extensions else _not_an_image(url, extensions)


def read_bytes(store: Store, paths: Sequence[Optional[str]]) -> List[Optional[bytes]]:
    """Worker side: the bytes of each file (None where it cannot be read)."""
    return _each(store, paths, lambda fs, p: _read(store, fs, p, None))


def read_ends(store: Store, paths: Sequence[Optional[str]], head: int, tail: int
              ) -> List[Optional[Tuple[bytes, bytes, int]]]:
    """Worker side: ``(first head bytes, last tail bytes, size)`` of each file: two
    ranged reads, so a header check costs a few KB even for a 10 MB photo."""
    return _each(store, paths, lambda fs, p: _read(store, fs, p, (head, tail)))


def _each(store: Store, paths: Sequence[Optional[str]], read: Any) -> List[Any]:
    fs = filesystem(store)
    if not store.remote or len(paths) < 2:
        return [read(fs, p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(min(REMOTE_THREADS, len(paths))) as pool:
        return list(pool.map(lambda p: read(fs, p), paths))


def _read(store: Store, fs: Any, url: Optional[str], ends: Optional[Tuple[int, int]]) -> Any:
    if url is None:
        return None
    try:
        with fs.open_input_file(store.fs_path(url)) as f:
            if ends is None:
                return f.read()
            size = f.size()
            head = f.read_at(min(ends[0], size), 0)
            tail = head[-ends[1]:] if size <= ends[0] else f.read_at(ends[1], size - ends[1])
            return head, tail, size
    except OSError:
        return None  # gone, or unreadable since it was listed: the check says invalid


# --------------------------------------------------------------------------- Spark side

def listing_frame(spark: Any, store: Store, urls: Sequence[str],
                  extensions: Sequence[str]) -> Any:
    """The persisted listing of *urls* (two jobs, see the module docstring); raises
    :class:`DataError` with the store's one-line reason when a path cannot be listed."""
    units = _units_here(spark, store, urls)
    if units is None:
        from pyspark.sql import functions as F
        roots = spark.createDataFrame([(u,) for u in urls], "root string")
        found = F.udf(lambda u: units_of(store, u), f"array<struct<{_UNITS_SCHEMA}>>",
                      useArrow=False)
        units = roots.select("root", F.explode(found("root")).alias("u")) \
            .select("root", "u.*").collect()
    errors = sorted({u["error"] for u in units if u["error"]})
    if errors:
        raise DataError(errors[0])
    tags = {u: (f"{i}:" if len(urls) > 1 else "") for i, u in enumerate(urls)}
    table = spark.createDataFrame([(u["root"], u["start"], bool(u["recursive"]),
                                    tags[u["root"]]) for u in units],
                                  "root string, start string, recursive boolean, tag string")
    exts = list(extensions)

    def listed(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        for batch in batches:
            for row in batch.to_pylist():
                rows = list_files(store, row["root"], row["start"], row["recursive"], exts,
                                  row["tag"])
                while True:
                    chunk = [r for _, r in zip(range(LISTING_BATCH), rows)]
                    if not chunk:
                        break
                    yield pa.RecordBatch.from_arrays(
                        [pa.array([c[0] for c in chunk], pa.string()),
                         pa.array([c[1] for c in chunk], pa.int64()),
                         pa.array([c[2] for c in chunk], pa.string()),
                         pa.array([c[3] for c in chunk], pa.string())],
                        names=["path", SIZE_COL, SKIP_COL, BELOW_COL])
    return table.repartition(max(1, len(units))).mapInArrow(listed, LISTING_SCHEMA)


def _units_here(spark: Any, store: Store, urls: Sequence[str]) -> Optional[List[Any]]:
    """The units of local folders, listed by the driver where it shares the executors'
    disk (the top level only: one entry per sub-folder), saving a job; None elsewhere
    (the executors list them)."""
    from ..storage import shares_driver_disk
    if store.kind != "local" or not shares_driver_disk(spark):
        return None
    return [{"root": url, "start": start, "recursive": recursive, "error": error}
            for url in urls for start, recursive, error in units_of(store, url)]


def check_partitions(files: int, slots: int) -> int:
    """Partitions of the header-check pass: every task slot busy, tasks not too small."""
    return max(1, min(files, max(slots, math.ceil(files / FILES_PER_CHECK_TASK))))


def content_column(store: Store, chunk: int = READ_CHUNK) -> Any:
    """A column expression: the bytes of the file at ``path``, read in the task that
    uses them (batched, at most *chunk* images held at a time: a pandas UDF applied to
    this column receives them *chunk* at a time)."""
    from pyspark.sql import functions as F

    def content(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for paths in batches:
            values = list(paths)
            for i in range(0, len(values), chunk):
                yield pd.Series(read_bytes(store, values[i:i + chunk]), dtype=object)
    return F.pandas_udf(content, "binary")(F.col(PATH_COL)).alias(CONTENT_COL)


def check_column(store: Store, check: str, head: int, tail: int) -> Any:
    """A struct column: the header check of the file at ``path`` (see
    :func:`..checks.check_bytes`), reading only its ends (``decode``: all of it)."""
    from pyspark.sql import functions as F

    from .checks import CHECK_SCHEMA, check_bytes, check_decode
    columns = ["width", "height", "mode", "format", "reason"]

    def checked(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for paths in batches:
            values = list(paths)
            for i in range(0, len(values), READ_CHUNK * 8):
                part = values[i:i + READ_CHUNK * 8]
                if check == "decode":
                    results = [check_decode(b) if b is not None else _unreadable()
                               for b in read_bytes(store, part)]
                else:
                    results = [check_bytes(*e) if e is not None else _unreadable()
                               for e in read_ends(store, part, head, tail)]
                yield pd.DataFrame(results, columns=columns)
    return F.pandas_udf(checked, CHECK_SCHEMA)(F.col(PATH_COL))


def _unreadable() -> Tuple:
    return (None, None, None, None, "could not be read (gone or not readable since it was listed)")




# --------------------------------------------------------------------------- label tables

def table_frame(spark: Any, store: Store, url: str) -> Any:
    """A CSV / TSV / Parquet label table in a store, read by one executor into a Spark
    DataFrame of string columns (streamed in Arrow batches: a 500 MB table never sits
    on the driver). A first small job reads the header, for the frame's schema."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    def header(u: str) -> List[str]:
        try:
            return ["ok"] + _table_batches(store, u, header_only=True)
        except Exception as exc:  # the store's own words, one line
            return ["error", storage_message(exc, u, store)]
    got = spark.createDataFrame([(url,)], "u string") \
        .select(F.udf(header, "array<string>", useArrow=False)("u")).first()[0]
    if got[0] == "error":
        raise DataError(got[1].replace("option 'path'", "option 'labels'"))
    names = got[1:]
    schema = StructType([StructField(n, StringType()) for n in names])

    def batches(parts: Iterator[Any]) -> Iterator[Any]:
        for part in parts:
            for row in part.to_pylist():
                yield from _table_batches(store, row["u"])
    return spark.createDataFrame([(url,)], "u string").mapInArrow(batches, schema)


def _table_batches(store: Store, url: str, header_only: bool = False) -> Any:
    """Worker side: the table's column names, or its rows as Arrow batches of strings."""
    import pyarrow as pa
    fs = filesystem(store)
    lower = url.lower()
    source = fs.open_input_file(store.fs_path(url))
    if lower.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq
        reader = pq.ParquetFile(source)
        names = reader.schema_arrow.names
        if header_only:
            return names
        return (pa.RecordBatch.from_arrays([b.column(i).cast(pa.string()) for i in
                                            range(b.num_columns)], names=names)
                for b in reader.iter_batches(batch_size=LISTING_BATCH))
    from pyarrow import csv
    parse = csv.ParseOptions(delimiter="\t" if lower.endswith(".tsv") else ",")
    if lower.endswith(".gz"):
        source = pa.CompressedInputStream(source, "gzip")
    names = csv.open_csv(source, parse_options=parse).schema.names
    if header_only:
        return names
    source = fs.open_input_file(store.fs_path(url))
    if lower.endswith(".gz"):
        source = pa.CompressedInputStream(source, "gzip")
    convert = csv.ConvertOptions(column_types={n: pa.string() for n in names},
                                 strings_can_be_null=False)
    return iter(csv.open_csv(source, parse_options=parse, convert_options=convert))


__all__ = ["listing_frame", "content_column", "check_column", "check_partitions",
           "table_frame", "LISTING_SCHEMA", "SIZE_COL", "SKIP_COL", "BELOW_COL"]
