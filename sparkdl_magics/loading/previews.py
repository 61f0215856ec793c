"""Preview thumbnails of a loaded image set, decoded on the executors.

The loader keeps a few paths per class (the first in the seeded order); this decodes
just those files in Spark and brings back small PNGs. It runs inside the load (so
inside the cell's progress and cancel scope); the display only shows the stored PNGs.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..results import IMAGE_COL, LABEL_NAME_COL, PATH_COL, ImageSet

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
    rows = (images.df.filter(F.col(PATH_COL).isin(wanted))
            .select(PATH_COL, F.coalesce(F.col(LABEL_NAME_COL), F.lit("")).alias("c"),
                    udf(F.col(images.image_col)).alias("png"))
            .collect())
    for row in sorted(rows, key=lambda r: r["path"]):
        out.setdefault(row["c"], []).append((row["path"], row["png"]))
    return out


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

