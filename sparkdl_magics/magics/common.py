"""Options shared by the magics that run a Keras model (declared once, used by each)."""
from __future__ import annotations

from .. import defaults
from ..engines import ENGINES, NOT_INSTALLED, OPENVINO, openvino_installed
from ..options import Option, ValueShown, as_bool, as_choice, as_float, as_int, as_str
from ..precision import PRECISIONS

BATCH_SIZE = Option("batch_size", defaults.BATCH_SIZE, "images per model call in each Spark task",
                    as_int(minimum=1), nullable=False)
PREPROCESS = Option("preprocess", None, "user model files: none, unit (0..1), tf (-1..1), "
                    "caffe or torch", as_str)


def _partitions(value):
    """Checked when the cell is parsed (auto, 0, or a number); passed on as written."""
    from ..errors import OptionError
    from ..partitioning import check_partitions
    try:
        check_partitions(value)
    except OptionError:
        raise ValueError("expected auto, 0 (keep the input's partitions) or a number of "
                         "partitions") from None
    return value


PARTITIONS = Option("partitions", "auto", "auto: spread the images evenly over the Spark "
                    "cores (a shuffle of the compressed bytes, or a merge of partitions for "
                    "large sets); 0: keep the input's partitions; N: N partitions", _partitions)
PRECISION = Option("precision", defaults.PRECISION, "the number type the model runs in on "
                   "the workers (auto: bfloat16 on CPUs with AVX512-BF16/AMX and on GPUs of "
                   "compute capability 8.0+, float16 on older GPUs, else float32); features "
                   "are float32 either way", as_choice(*PRECISIONS), nullable=False)
_engine_choice = as_choice(*ENGINES)


def _engine(value):
    """An engine name; ``openvino`` refused when the cell is parsed if it is not
    installed (before a Spark session starts)."""
    engine = _engine_choice(value)
    if engine == OPENVINO and not openvino_installed():
        raise ValueShown(NOT_INSTALLED.removeprefix("option 'engine': "))
    return engine


_engine.choices = ENGINES  # type: ignore[attr-defined]  # the help's "Choices:"
ENGINE = Option("engine", defaults.ENGINE, "what runs the model on the workers: keras, "
                "openvino (converted once per worker; pip install 'sparkdl_magics[openvino]') "
                "or auto (openvino for registry models where it is installed, else keras)",
                _engine, nullable=False)
THRESHOLD = Option("threshold", None, "multi-label models: the probability at which a "
                   "label is predicted [default: the model's, 0.5]",
                   as_float(minimum=0.0, maximum=1.0, exclusive_min=True))
UNSAFE = Option("unsafe", False, "user model files: allow Python code (Lambda layers); only "
                "for files you trust", as_bool)


def lookup_images(ctx, name: str):
    """The image set (or DataFrame of images) a model magic runs on."""
    return ctx.lookup(name, what="an image set from %%dlload or a DataFrame of images")
