"""Preview thumbnails of a loaded image set, decoded on the executors.

The loader keeps a few paths per class (the first in the seeded order); this decodes
just those files in Spark and brings back small PNGs. It runs inside the load (so
inside the cell's progress and cancel scope); the display only shows the stored PNGs.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..results import CONTENT_COL, IMAGE_COL, PATH_COL, ImageSet

#: Thumbnails kept per class for the preview grid.
PER_CLASS = 4
#: The longest side of a thumbnail, in pixels.
MAX_SIDE = 96


def thumbnails(images: ImageSet, per_class: Optional[int] = None, max_side: int = MAX_SIDE
               ) -> Dict[str, List[Tuple[str, bytes]]]:
    """``{class: [(path, png_bytes), ...]}`` for up to *per_class* preview paths a class."""
    from pyspark.sql import functions as F
    per_class = PER_CLASS if per_class is None else int(per_class)
    wanted = [p for paths in images.preview_paths.values() for p in paths[:per_class]]
    out: Dict[str, List[Tuple[str, bytes]]] = {c: [] for c in images.preview_paths}
    if not wanted:
        return out
    fn = _thumb_from_struct if images.image_col == IMAGE_COL else _thumb_from_bytes
    udf = F.udf(lambda v: fn(v, max_side), "binary", useArrow=False)
    rows = images.images_of(wanted).select(PATH_COL, udf(F.col(images.image_col)).alias("png")) \
        .collect()
    group = {p: g for g, paths in images.preview_paths.items() for p in paths}
    for row in sorted(rows, key=lambda r: r["path"]):
        out.setdefault(group[row["path"]], []).append((row["path"], row["png"]))
    return out


def image_thumbnails(paths: List[Optional[str]], *frames: Any) -> List[Optional[bytes]]:
    """PNG thumbnails for a few *paths* (None where unknown or unreadable), from the first
    of *frames* (DataFrames or ImageSets, or None) that has the images' bytes. Only the
    few files asked for are read; they are made small on the driver."""
    from pyspark.sql import functions as F

    from ..imaging import InvalidImage, thumbnail_png
    wanted = [p for p in paths if p]
    source = next((f for f in frames if f is not None and CONTENT_COL in _columns(f)), None)
    if not wanted or source is None:
        return [None] * len(paths)
    chosen = (source.images_of(wanted) if isinstance(source, ImageSet)
              else source.filter(F.col(PATH_COL).isin(wanted)).select(PATH_COL, CONTENT_COL))
    rows = chosen.collect()
    by_path: Dict[str, Optional[bytes]] = {}
    for r in rows:
        try:
            by_path[r[PATH_COL]] = thumbnail_png(bytes(r[CONTENT_COL] or b""))
        except InvalidImage:  # an unreadable (or empty) image just has no thumbnail
            by_path[r[PATH_COL]] = None
    return [by_path.get(p) for p in paths]


def _columns(frame: Any) -> List[str]:
    return [frame.image_col] if isinstance(frame, ImageSet) else list(frame.columns)


# Module-level functions so Spark ships them by reference; they import only Pillow.
def _thumb_from_bytes(data: Optional[bytes], max_side: int) -> Optional[bytes]:
    from ..imaging import InvalidImage, thumbnail_png
    try:
        return thumbnail_png(data, max_side)
    except InvalidImage:
        return None


def _thumb_from_struct(image: Any, max_side: int) -> Optional[bytes]:
    import io

    from PIL import Image

    from ..imaging import RESAMPLE, InvalidImage, struct_to_rgb
    try:
        array = struct_to_rgb(image["height"], image["width"], image["nChannels"],
                              image["mode"], bytes(image["data"] or b""))
    except InvalidImage:
        return None
    thumb = Image.fromarray(array, "RGB")
    thumb.thumbnail((max_side, max_side), RESAMPLE)
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    return buf.getvalue()

