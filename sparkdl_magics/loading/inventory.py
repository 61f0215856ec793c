"""Every file under a loaded folder: what Spark's file sources do not list, found by the workers.

Spark's file index hides every name that starts with ``_`` or ``.`` (its rule for
``_SUCCESS`` and ``.crc`` files) and everything in such folders; the loader's extension
glob is case-sensitive, so ``x.Jpg`` is not listed either. A valid ``_x.jpg`` is still the
user's image, and a ``._x.jpg`` (macOS AppleDouble) or ``.DS_Store`` is a file the user
should hear was skipped. So one Spark job walks the folders on the workers (a task per
path; they see the files the executors read) and brings back only the files that Spark's
listing does not deliver, each with what it is: a system file, or a file Spark hides (by
its name rule or the glob). The loader then loads the hidden images itself (their bytes are
read on the workers too, :func:`read_file`) and lists the rest with a reason; the files
Spark lists never leave Spark.

Only folders the Python workers can open are walked: plain paths and ``file:`` URIs
(local, local-cluster, Spark Connect servers and clusters with a shared mount). On other
storage (``s3a:``, ``abfss:``, ``hdfs:`` ...) names Spark hides cannot be listed from
Python; :attr:`Unlisted.walked` is then False and the load says so.
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from ..results import CONTENT_COL, PATH_COL

#: System files by name (lower case), with what they are.
SYSTEM_NAMES = {".ds_store": "macOS .DS_Store", "thumbs.db": "Windows Thumbs.db",
                "ehthumbs.db": "Windows ehthumbs.db", "desktop.ini": "Windows desktop.ini"}
#: Folders whose whole content is system files (besides any folder named ``.*``).
SYSTEM_FOLDERS = {"__MACOSX": "a macOS zip folder"}

_WALK_SCHEMA = "array<struct<path: string, size: long, system: string, hidden: boolean>>"
_GLOB_CHARS = re.compile(r"[*?\[{]")


# --------------------------------------------------------------------------- rules

def system_reason(parts: Sequence[str]) -> Optional[str]:
    """Why a file is a system file (None when it is not); *parts*: the folders below the
    loaded path, then the file name."""
    *folders, name = parts
    for folder in folders:
        if folder.startswith("."):
            return f"system file (in hidden folder {folder})"
        if folder in SYSTEM_FOLDERS:
            return f"system file (in {folder}, {SYSTEM_FOLDERS[folder]})"
    if name.lower() in SYSTEM_NAMES:
        return f"system file ({SYSTEM_NAMES[name.lower()]})"
    if name.startswith("._"):
        return "system file (macOS AppleDouble ._ file)"
    if name.startswith("."):
        return "system file (hidden: the name starts with '.')"
    return None


def spark_hides(parts: Sequence[str]) -> bool:
    """Whether Spark's file scan leaves out this file, by name alone (Spark's
    ``HadoopFSUtils.shouldFilterOutPathName`` for folders, ``isDataPath`` for files)."""
    *folders, name = parts

    def hidden(n: str) -> bool:
        return (n.startswith("_") and "=" not in n) or n.startswith(".") \
            or n.endswith("._COPYING_")
    if any(hidden(f) and not f.startswith(("_common_metadata", "_metadata")) for f in folders):
        return True
    return hidden(name)


def expand_braces(pattern: str) -> List[str]:
    """Hadoop glob braces as a list of patterns: ``*.{jpg,png}`` -> ``*.jpg``, ``*.png``."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [x for alt in match.group(1).split(",") for x in expand_braces(head + alt + tail)]


def glob_matches(name: str, glob: Optional[str]) -> bool:
    """Spark's ``pathGlobFilter`` on a file name (case-sensitive, Hadoop braces)."""
    if not glob:
        return True
    return any(fnmatch.fnmatchcase(name, p.replace("[^", "[!")) for p in expand_braces(glob))


# --------------------------------------------------------------------------- worker side

def _roots(pattern: str) -> List[str]:
    """The files and folders a path names (a Hadoop glob's matches, hidden names too)."""
    import glob
    if not _GLOB_CHARS.search(pattern):
        return [pattern] if os.path.exists(pattern) else []
    found = set()
    for p in expand_braces(pattern):
        found.update(glob.glob(p.replace("[^", "[!"), include_hidden=True))
    return sorted(found)


def _files(root: str, recursive: bool) -> Iterator[Tuple[str, List[str]]]:
    """(path, parts below *root*) of every file under *root* (symlinks followed once)."""
    if os.path.isfile(root):
        yield root, [os.path.basename(root)]
        return
    seen = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        below = os.path.relpath(folder, root)
        prefix = [] if below == "." else below.split(os.sep)
        for name in names:
            yield os.path.join(folder, name), prefix + [name]
        if not recursive:
            dirs[:] = []


def walk(pattern: str, glob: Optional[str], recursive: bool) -> List[Tuple]:
    """Worker side: ``(uri, size, system reason, hidden by Spark's name rule)`` of every
    file under *pattern* that Spark's scan (with *glob*) does not deliver, and of every
    system file. Module-level, importing nothing heavy: Spark ships it by reference."""
    out = []
    for root in _roots(pattern):
        for path, parts in _files(root, recursive):
            system = system_reason(parts)
            hidden = spark_hides(parts)
            if system is None and not hidden and glob_matches(parts[-1], glob):
                continue  # Spark lists it
            try:
                size = os.path.getsize(path)
            except OSError:
                continue  # gone since it was listed
            out.append(("file:" + path, size, system, hidden))
    return out


def read_file(uri: Optional[str]) -> Optional[bytes]:
    """Worker side: a local file's bytes (for files Spark's file sources do not list)."""
    if uri is None:
        return None
    try:
        with open(local_path(uri), "rb") as f:
            return f.read()
    except OSError:
        return None


# --------------------------------------------------------------------------- driver side

def local_path(path: str) -> Optional[str]:
    """The local file-system path of a plain path or ``file:`` URI, else None."""
    text = str(path)
    if text.startswith("file:"):
        text = re.sub(r"^file:(//(localhost)?)?", "", text)
    elif re.match(r"^[A-Za-z][\w+.-]*:", text):
        return None
    return text


@dataclass
class Unlisted:
    """The files under the loaded paths that Spark's listing does not deliver."""

    #: (uri, size, system reason or None, hidden by Spark's name rule) per file
    files: List[Tuple[str, int, Optional[str], bool]] = field(default_factory=list)
    #: False when the paths are on storage the workers cannot walk (s3a:, hdfs: ...)
    walked: bool = True

    @classmethod
    def find(cls, spark: Any, paths: Sequence[str], glob: Optional[str],
             recursive: bool = True, index: Sequence[str] = ()) -> "Unlisted":
        """Walk *paths* on the workers (one job, a task per path). *index*: Spark's file
        index of them; any file there on other storage than ``file:`` means the
        plain paths are not local either (``fs.defaultFS`` is a cluster's)."""
        roots = [local_path(p) for p in paths]
        if not paths or any(r is None for r in roots) or \
                any(not str(f).startswith("file:") for f in index):
            return cls(walked=False)
        from pyspark.sql import functions as F
        found = F.udf(walk, _WALK_SCHEMA, useArrow=False)
        frame = spark.createDataFrame([(os.path.abspath(r),) for r in roots], "root string")
        rows = (frame.select(F.explode(found("root", F.lit(glob), F.lit(bool(recursive))))
                             .alias("f")).select("f.*").collect())
        files = sorted({(r["path"], int(r["size"]), r["system"], bool(r["hidden"]))
                        for r in rows})
        return cls(files)


def rows_of(spark: Any, uris: Sequence[str], with_content: bool = True) -> Any:
    """A ``path`` (+ ``content``, read on the workers) frame of files Spark does not list."""
    from pyspark.sql import functions as F
    frame = spark.createDataFrame([(u,) for u in uris], f"{PATH_COL} string")
    if not with_content:
        return frame
    read = F.udf(read_file, "binary", useArrow=False)
    return frame.select(PATH_COL, read(F.col(PATH_COL)).alias(CONTENT_COL))


def _not_an_image(uri: str, extensions: Sequence[str]) -> str:
    """The reason a file with another extension is skipped."""
    from ..imaging import IMAGE_EXTENSIONS
    name = uri.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name.lstrip(".") else ""
    if ext in IMAGE_EXTENSIONS:
        return f"extension .{ext} not asked for (extensions: {', '.join(extensions)})"
    return f"not an image file ({'.' + ext if ext else 'no extension'})"


@dataclass
class Sorted:
    """What the loader does with the files Spark does not list."""

    load: List[str] = field(default_factory=list)  # images Spark hides: loaded by us
    empty: List[str] = field(default_factory=list)  # such images of 0 bytes: invalid
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (uri, reason)


def sort_for_loading(unlisted: Unlisted, extensions: Sequence[str]) -> Sorted:
    """System files and other files are skipped (with a reason); images are loaded, or
    invalid when empty. *extensions*: the lower-case extensions the load reads."""
    out = Sorted()
    for uri, size, system, _ in unlisted.files:
        name = uri.rsplit("/", 1)[-1]
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if system:
            out.skipped.append((uri, system))
        elif ext not in extensions:
            out.skipped.append((uri, _not_an_image(uri, extensions)))
        elif size == 0:
            out.empty.append(uri)
        else:
            out.load.append(uri)
    return out


#: Why a stream does not deliver a file whose name Spark hides.
STREAM_HIDDEN = ("not streamed: Spark's file stream skips names starting with '_' or '.' "
                 "(rename it, or load it with load_images)")


def sort_for_streaming(unlisted: Unlisted, glob: Optional[str]) -> List[Tuple[str, str]]:
    """``(uri, reason)`` of every file under a streamed folder that the stream leaves out."""
    out = []
    for uri, _, system, hidden in unlisted.files:
        reason = system or (STREAM_HIDDEN if hidden else f"not streamed: the name does not "
                                                         f"match the glob {glob}")
        out.append((uri, reason))
    return out


def is_system_name(path_col: Any) -> Any:
    """Spark column: the file is a system file Spark's listing shows (``Thumbs.db``,
    ``desktop.ini``: the others start with ``.`` or sit in ``__MACOSX``, which it hides)."""
    from pyspark.sql import functions as F
    name = F.lower(F.element_at(F.split(path_col, "/"), -1))
    return name.isin([n for n in SYSTEM_NAMES if not n.startswith(".")])
