"""What the stages return: plain dataclasses and the column names they share.

Every stage hands its result to the next one and to the display as one of these classes,
and stages recognise their inputs with ``isinstance`` on them. A result keeps its data
(Spark DataFrames, pandas frames, dicts) and computes nothing: no Spark jobs, no HTML.
Its rich display is drawn by :mod:`sparkdl_magics.display`, and its few user-facing
actions (``FittedModel.save``, ``.predict``, ...) are done by the stage that owns them.
Both are looked up when called (:func:`_stage`): stages import this module, never the
reverse, so it stands at the bottom of the package and imports nothing of ours.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

# --------------------------------------------------------------------------- columns

#: The image's path or URI (every image frame).
PATH_COL = "path"
#: The compressed file bytes (``binaryFile``'s column).
CONTENT_COL = "content"
#: A Spark ``image``-source struct (BGR pixels), the other accepted image column.
IMAGE_COL = "image"
#: The class index, a double as MLlib wants it (null when unlabelled).
LABEL_COL = "label"
#: The class name.
LABEL_NAME_COL = "label_name"
#: ``multi_label: keep``: the image's label set (array<string>, in class order) and
#: the same set as a multi-hot vector (array<double>, one 0/1 per class)
LABELS_COL = "labels"
LABEL_VECTOR_COL = "label_vector"
#: Multi-label model outputs: one probability per class (array<double>, class order)
#: and the predicted label set (array<string>: the labels at or above the threshold)
LABEL_PROBABILITIES_COL = "label_probabilities"
PREDICTED_LABELS_COL = "predicted_labels"
#: The split an image belongs to ("train", "validation", "test").
SPLIT_COL = "split"
SPLITS = ("train", "validation", "test")
#: Pooled CNN features, an MLlib dense vector.
FEATURES_COL = "features"
#: MLlib classifier outputs (``%%fit`` models): predicted class index, probability vector.
CLASS_INDEX_COL = "prediction"
PROBABILITIES_COL = "probability"
#: The predicted class name of a fitted model (IndexToString of the class index).
PREDICTION_NAME_COL = "prediction_name"
#: Top-K prediction (``%%predict``) outputs: the top-1 class name and its probability
#: (named as MLlib names its outputs), and the top-K list.
TOP_LABEL_COL = "prediction"
TOP_PROBABILITY_COL = "probability"
TOP_K_COL = "predictions"
#: Why an image could not be decoded, in the featurize and predict outputs.
FEATURIZE_ERROR_COL = "featurize_error"
PREDICT_ERROR_COL = "predict_error"
#: The number type the model ran in, per row, in the task that computed the features
#: (``featurize`` reads it in its counting job, then drops it) or the predictions
#: (``Predictions`` reads it with the rows it computes; not in ``Predictions.df``);
#: likewise the engine that ran it.
FEATURIZE_PRECISION_COL = "featurize_precision"
FEATURIZE_ENGINE_COL = "featurize_engine"
PREDICT_PRECISION_COL = "predict_precision"
PREDICT_ENGINE_COL = "predict_engine"


def _stage(module: str) -> Any:
    """A stage module of this package, imported when a result's method needs it."""
    return importlib.import_module(f"{__package__}.{module}")


class _Rendered:
    """Rich display by :func:`sparkdl_magics.display.to_html` (the display computes nothing)."""

    def _repr_html_(self) -> str:
        return _stage("display").to_html(self)


# --------------------------------------------------------------------------- loading

@dataclass(repr=False)
class ImageSet(_Rendered):
    """Images loaded into Spark, with their classes, splits and invalid files.

    ``df`` holds every valid image kept (after class subset and sampling) with a
    ``split`` column; ``train`` / ``validation`` / ``test`` are its splits
    (``validation`` is None unless a 3-way split was asked; ``test`` is None for
    ``split: 1``; for unlabelled images ``train`` is ``df`` and ``test`` is None).
    Columns: ``path``, ``content`` (compressed bytes) or ``image`` (Spark image struct,
    when the source was an image-source frame), ``label`` (double class index, null
    when unlabelled), ``label_name``, ``split``. ``classes[i]`` is the name of label i.
    ``invalid`` lists files that are not readable images (pandas: path, reason);
    ``skipped`` the files under the path that are no images (pandas: path, reason):
    system files (``._x``, ``.DS_Store``, ``Thumbs.db``, files in hidden folders) and
    other files, so that every file is loaded, invalid or skipped;
    ``counts`` is images per class and split (pandas, one row per class);
    ``previews`` a few PNG thumbnails per class, ``{class: [(path, png), ...]}``;
    :meth:`images_of` the bytes of a few of its files.
    """

    df: Any
    train: Any
    test: Optional[Any]
    classes: List[str]
    invalid: Any  # pandas DataFrame [path, reason]
    counts: Any  # pandas DataFrame, index class, columns train/(validation)/test/total/invalid
    validation: Optional[Any] = None
    image_col: str = CONTENT_COL
    source: str = ""
    labels: str = "folders"
    seed: int = 42
    fractions: Tuple[float, ...] = (0.8, 0.2)
    stats: Dict[str, Any] = field(default_factory=dict)
    preview_paths: Dict[str, List[str]] = field(default_factory=dict)
    previews: Dict[str, List[Tuple[str, bytes]]] = field(default_factory=dict)
    skipped: Any = None  # pandas DataFrame [path, reason], or None (no folder listed)
    #: ``paths -> DataFrame[path, content]`` reading just those files, where the files are
    #: read by Python (a few thumbnails then cost a few reads, not a task per partition).
    contents: Any = field(default=None, repr=False, compare=False)
    #: ``(DataFrame[path, ...], chunk=None) -> the same + content``: the bytes read in that
    #: frame's own tasks, *chunk* files at a time (where Python reads the files): the
    #: featurizer spreads the rows over the task slots first and reads after, so no
    #: shuffle moves the bytes.
    content_of: Any = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def images_of(self, paths: List[str]) -> Any:
        """A DataFrame ``path`` + the image column of the files at *paths* (lazily)."""
        if self.contents is not None and self.image_col == CONTENT_COL:
            return self.contents(paths)
        from pyspark.sql import functions as F
        return self.df.filter(F.col(PATH_COL).isin(list(paths))).select(PATH_COL,
                                                                        self.image_col)

    @property
    def labelled(self) -> bool:
        return self.labels != "none"

    @property
    def num_images(self) -> int:
        return int(self.stats.get("images", 0))

    @property
    def num_invalid(self) -> int:
        return int(len(self.invalid))

    @property
    def num_skipped(self) -> int:
        return int(len(self.skipped)) if self.skipped is not None else 0

    def split_sizes(self) -> Dict[str, int]:
        """Images per split, e.g. ``{'train': 28, 'test': 8}`` (empty when not counted)."""
        if self.stats.get("split_images"):  # label sets: an image counts once
            return dict(self.stats["split_images"])
        if self.counts is None:
            return {}
        if not self.labelled and "images" in self.counts.columns:  # unsplit: all is train
            return {"train": int(self.counts["images"].sum())}
        cols = [s for s in SPLITS if s in self.counts.columns]
        return {s: int(self.counts[s].sum()) for s in cols}

    def summary(self) -> str:
        """One line: images, classes, splits, invalid and skipped files."""
        parts = [f"{self.num_images} images"]
        if self.labelled:
            parts[0] += f" in {self.num_classes} class{'es' if self.num_classes != 1 else ''}"
            sizes = self.split_sizes()
            if len(sizes) > 1:
                parts.append(" / ".join(f"{k} {v}" for k, v in sizes.items()))
        else:
            parts[0] += " (unlabelled)"
        parts.append(f"{self.num_invalid} invalid file{'s' if self.num_invalid != 1 else ''}")
        for key, what in (("skipped_system", "system file{} skipped"),
                          ("skipped_other", "other file{} skipped (not images)")):
            n = int(self.stats.get(key) or 0)
            if n:
                parts.append(f"{n} " + what.format("s" if n != 1 else ""))
        if self.stats.get("hidden_unchecked"):
            parts.append("names starting with '_' or '.' not listed (storage the Python "
                         "workers cannot walk)")
        policy = self.stats.get("multi_label_policy", "drop")
        for key, what in (("multi_label", f"with several labels ({policy})"),
                          ("unlabelled", "without a label in the table"),
                          ("sampled_out", "left out by sampling"),
                          ("no_id", "label rows without an image id (ignored)"),
                          ("bad_confidence", "label rows whose confidence is not a number "
                                             "(ignored)")):
            if self.stats.get(key):
                parts.append(f"{self.stats[key]} {what}")
        parts += _table_match_parts(self.stats)
        if self.stats.get("width_min") is not None:
            parts.append(f"sizes {self.stats['width_min']}–{self.stats['width_max']} x "
                         f"{self.stats['height_min']}–{self.stats['height_max']} px")
        return "; ".join(parts)

    def thumbnails(self, per_class: Optional[int] = None, max_side: int = 96
                   ) -> Dict[str, List[Tuple[str, bytes]]]:
        """PNG thumbnails per class, ``{class: [(path, png_bytes), ...]}``: the stored
        previews, or (for more per class than the load kept) decoded again by Spark."""
        kept = max((len(v) for v in self.previews.values()), default=0)
        if self.previews and (per_class is None or per_class <= kept) and max_side == 96:
            return {k: v[:per_class] for k, v in self.previews.items()}
        return _stage("loading.previews").thumbnails(self, per_class, max_side)

    def __repr__(self) -> str:
        return f"ImageSet({self.summary()})"


def _table_match_parts(stats: Dict[str, Any]) -> List[str]:
    """The summary's words on a label table: how its ids matched the files, the ids
    naming no file or several, the images with the empty label set."""
    parts = []
    forms = stats.get("id_match") or {}
    if forms:
        parts.append("label ids matched as " + " and ".join(
            f"{f}s" + (f" ({n})" if len(forms) > 1 else "") for f, n in forms.items()))
    if stats.get("missing_images"):
        n = stats["missing_images"]
        shown = ", ".join(str(i) for i in stats.get("missing_examples", []))
        parts.append(f"{n} label-table id{'s' if n != 1 else ''} with no image file"
                     + (f" (e.g. {shown})" if shown else ""))
    if stats.get("ambiguous_ids"):
        n = stats["ambiguous_ids"]
        shown = "; ".join(f"{i}: {', '.join(p.rsplit('/', 2)[-2] + '/' + p.rsplit('/', 1)[-1] for p in paths)}"
                          for i, paths in list(stats.get("ambiguous_examples", {}).items())[:3])
        parts.append(f"{n} ambiguous id{'s' if n != 1 else ''} naming several files, "
                     f"left out (e.g. {shown})")
    if stats.get("empty_label_set"):
        parts.append(f"{stats['empty_label_set']} with the empty label set")
    return parts


# --------------------------------------------------------------------------- features

@dataclass(repr=False)
class FeatureSet(_Rendered):
    """Feature vectors for the train/test splits of an image set.

    ``train`` / ``test`` (and ``validation`` when the image set has one) are DataFrames
    with at least ``path``, ``label`` (double class index), ``label_name`` and
    ``features`` (an MLlib dense vector); rows whose image could not be decoded are not
    in them but listed in ``invalid``. ``featurizer`` is the Spark ML Transformer that
    computed the features (raw image column in, ``features`` out), so a fitted pipeline
    can start from raw images. ``images`` is the source ImageSet (for thumbnails).
    """

    train: Any
    test: Optional[Any]
    classes: List[str]
    featurizer: Optional[Any] = None
    images: Optional[ImageSet] = None
    model_name: str = ""
    weights: str = ""
    feature_col: str = FEATURES_COL
    validation: Optional[Any] = None
    invalid: Any = None  # pandas DataFrame [path, reason] of images that failed to decode
    stats: Dict[str, Any] = field(default_factory=dict)  # counts, images/s, feature dim...
    untrained: bool = False  # weights='none': random features, not a pretrained model

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def feature_dim(self) -> Optional[int]:
        return self.stats.get("feature_dim")

    def summary(self) -> Dict[str, Any]:
        """What the rich display shows, as plain data."""
        return {
            "model": self.model_name, "weights": self.weights, "untrained": self.untrained,
            "classes": list(self.classes), "feature_dim": self.feature_dim,
            **{k: v for k, v in self.stats.items() if k not in ("feature_dim", "untrained")},
        }

    def unpersist(self) -> None:
        """Release cached features (memory-and-disk cache)."""
        for df in (self.train, self.test, self.validation):
            if df is not None:
                df.unpersist()

    def __repr__(self) -> str:
        return (f"FeatureSet({self.model_name}, {self.feature_dim}-dim, "
                f"{len(self.classes)} classes, {self.stats.get('per_split', {})})")


# --------------------------------------------------------------------------- prediction

@dataclass(repr=False)
class Predictions(_Rendered):
    """Top-K predictions per image.

    ``df``: the input rows (``path``, ``label``/``label_name``/``split`` when present;
    image bytes dropped) plus ``prediction`` (top-1 class name), ``probability``
    (its probability), ``predictions`` (top-K ``class_id``/``wnid``/``label``/
    ``probability``, best first) and ``predict_error`` (why an image could not be
    decoded; its predictions are null). Lazy: it runs when used, and works on a
    streaming DataFrame (write it with ``writeStream``). ``rows`` holds the first
    ``show`` rows as pandas once computed (by ``%%predict`` or :meth:`preview`).

    From a multi-label model (``threshold`` set, ``classes`` its labels), ``df`` has
    ``predicted_labels`` (each image's label set) and ``label_probabilities`` (one per
    label) instead of the top-K columns.

    ``stats['precision']``: the precision asked for until rows are computed, then what
    the tasks that computed them ran in (``auto -> float32`` for a model that cannot run
    at a reduced type): :meth:`preview` and :meth:`to_pandas` read it from
    ``reporting_df`` (``df`` plus ``predict_precision`` and ``predict_engine``, one value
    per row) in the job that computes the rows. ``stats['engine']`` likewise: the engine
    asked for, then the engines that ran.
    """

    df: Any
    model_name: str
    weights: str
    top_k: int
    untrained: bool = False
    stats: Dict[str, Any] = field(default_factory=dict)
    show: int = 20  # rows the rich display shows
    rows: Optional[Any] = None  # pandas: the first rows, once computed
    classes: Optional[List[str]] = None  # a multi-label model's labels
    threshold: Optional[float] = None  # a multi-label model's cut: label sets, not top-K
    reporting_df: Optional[Any] = None  # df + the precision and engine each row's task ran
    requested_precision: str = ""  # what was asked ("auto", ...): see stats['precision']
    requested_engine: str = ""  # likewise for stats['engine']

    @property
    def multi_label(self) -> bool:
        return self.threshold is not None

    @property
    def is_streaming(self) -> bool:
        return bool(getattr(self.df, "isStreaming", False))

    def to_pandas(self, limit: Optional[int] = 1000) -> Any:
        """Rows as pandas (``limit`` rows; None for all — only for small results)."""
        return _stage("prediction").read_rows(self, limit)

    def preview(self, n: Optional[int] = None) -> Any:
        """The first *n* rows (default: ``show``) as pandas, computed once and kept."""
        return _stage("prediction").preview_rows(self, n)

    def summary(self) -> Dict[str, Any]:
        return {"model": self.model_name, "weights": self.weights, "top_k": self.top_k,
                "untrained": self.untrained, **self.stats}

    def __repr__(self) -> str:
        if self.multi_label:
            return f"Predictions({self.model_name}, label sets at {self.threshold:g})"
        return f"Predictions({self.model_name}, top {self.top_k})"


# --------------------------------------------------------------------------- training

@dataclass(repr=False)
class FittedModel(_Rendered):
    """A trained classifier pipeline and how it was chosen.

    ``pipeline_model`` is the whole ``PipelineModel`` (featurizer stage first when the
    FeatureSet had one). ``grid`` is a pandas frame with one row per grid point (its
    params, its ``score`` on ``metric``, and ``chosen``); ``params`` the chosen values;
    ``objective_history`` the logistic-regression loss per iteration when available.
    """

    pipeline_model: Any
    classes: List[str]
    classifier: str
    metric: str = "f1"
    params: Dict[str, Any] = field(default_factory=dict)
    grid: Any = None  # pandas.DataFrame or None
    tuning: str = ""  # e.g. "3-fold cross-validation"
    notes: List[str] = field(default_factory=list)
    objective_history: Optional[List[float]] = None
    features: Optional[FeatureSet] = None  # what it was trained on (not saved)
    num_features: int = 0
    has_probabilities: bool = True
    model_name: str = ""  # featurizer model (InceptionV3, ...) when known
    train_count: int = 0
    untrained: bool = False  # its features came from an untrained backbone
    run_id: Optional[str] = None  # the MLflow run it was logged to (tracking on)

    @property
    def has_featurizer(self) -> bool:
        return len(self.pipeline_model.stages) > 2

    @property
    def classifier_model(self) -> Any:
        return self.pipeline_model.stages[-2]

    def transform(self, df: Any) -> Any:
        """Predictions for *df*: from its ``features`` column when present, else from
        raw images through the featurizer stage (lazy)."""
        return _stage("training").transform(self, df)

    def predict(self, images: Any) -> Any:
        """Predict class names for new images: an ImageSet, a FeatureSet, or a DataFrame
        of raw images (or of features). Returns a DataFrame with ``prediction_name``."""
        return _stage("training").predict_classes(self, images)

    def register_sql_function(self, name: str = "classify", output: str = "label",
                              spark: Any = None) -> Any:
        """``SELECT <name>(content) FROM images``: this model as a Spark SQL function
        (class name, or class probabilities with ``output="probabilities"``)."""
        return _stage("sql").register_sql_function(name, model=self, output=output,
                                                   spark=spark)

    def save(self, path: str, overwrite: bool = True) -> str:
        """Save as a ``PipelineModel`` (loadable with ``PipelineModel.load``) plus how it
        was chosen; see :func:`sparkdl_magics.persist.save_model`."""
        return _stage("persist").save_model(self, path, overwrite)

    @classmethod
    def load(cls, path: str, spark: Any = None) -> "FittedModel":
        """Load a model saved with :meth:`save` (any session; the magics not needed)."""
        return _stage("persist").load_model(path, spark)

    def export(self, path: str, format: str = "keras") -> str:
        """Write one Keras network that needs no Spark (images in, class probabilities
        out): a ``.keras`` file or a TF Serving folder (``format="saved_model"``); see
        :mod:`sparkdl_magics.export`."""
        return _stage("export").export(self, path, format)

    def __repr__(self) -> str:
        chosen = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return (f"FittedModel({self.classifier}, {len(self.classes)} classes"
                + (f", {chosen}" if chosen else "") + ")")


@dataclass(repr=False)
class FineTunedModel(FittedModel):
    """A network fine-tuned on the images (``finetune`` / ``%%finetune``): a FittedModel
    whose ``pipeline_model`` applies the saved Keras file to raw images
    (``[featurizer (the .keras file, cut at its softmax) → argmax → IndexToString]``), so
    evaluation, prediction and saving take it as they take an MLlib classifier.

    ``model_file``: the fine-tuned ``.keras`` file on the driver (a plain Keras model:
    preprocessed images in, class probabilities out; ``preprocess`` names its input
    scaling). ``history``: one row per epoch (loss, accuracy, val_loss, val_accuracy,
    seconds, images_per_s_per_worker), as pandas; with validation its first row is
    epoch 0, the network before fine-tuning (the probe), validated only. ``best_epoch``:
    the epoch whose weights were kept. ``warmup``: the head's epochs on the frozen
    backbone before fine-tuning (``head_epochs``). ``checksums``: per worker and epoch
    (and step, when traced) the weights' checksum, as pandas: equal across workers when
    the data-parallel training kept them in sync. ``images``: the ImageSet it was
    trained on (the default evaluation data; not saved).
    """

    model_file: str = ""
    preprocess: str = "none"
    input_size: Tuple[int, int] = (224, 224)
    history: Any = None  # pandas.DataFrame, one row per epoch
    checksums: Any = None  # pandas.DataFrame [rank, kind, epoch, step, checksum]
    workers: int = 1
    unfreeze: Any = 0
    unfrozen_layers: int = 0
    head: Tuple[int, ...] = ()
    stopped_early: Optional[int] = None  # the epoch early stopping stopped at
    best_epoch: Optional[int] = None  # the kept epoch, with validation (0: the starting head)
    checksum: str = ""  # the kept weights' checksum (equal for equal seed, data, workers)
    warmup: Any = None  # pandas.DataFrame: the head's epochs on the frozen backbone
    seconds: float = 0.0
    live_progress: bool = False  # whether epochs were shown while training
    images: Optional[ImageSet] = None

    @property
    def has_featurizer(self) -> bool:
        return True

    def __repr__(self) -> str:
        epochs = 0 if self.history is None else len(self.history)
        last = ""
        if self.history is not None and len(self.history):
            row = self.history.iloc[-1]
            last = f", loss {row['loss']:.4f}"
        return (f"FineTunedModel({self.model_name}, {len(self.classes)} classes, "
                f"{epochs} epochs on {self.workers} worker{'s' if self.workers != 1 else ''}"
                f"{last})")


# --------------------------------------------------------------------------- evaluation

@dataclass(repr=False)
class Evaluation(_Rendered):
    """Metrics of one model on one labelled data set.

    ``metrics``: accuracy, f1 / precision / recall (weighted by support), count, and
    log_loss, auc, pr_auc where they apply. ``per_class`` and ``confusion`` are pandas
    frames with class names (confusion rows = true class, columns = predicted).
    ``roc`` / ``pr`` are curve frames for two classes; ``errors`` the most confidently
    misclassified images (path, true, predicted, probability, thumbnail PNG bytes).
    ``predictions`` is the Spark DataFrame the numbers came from.
    """

    metrics: Dict[str, float]
    per_class: Any
    confusion: Any
    predictions: Any
    classes: List[str]
    roc: Any = None
    pr: Any = None
    errors: Any = None
    notes: List[str] = field(default_factory=list)
    name: str = ""
    untrained: bool = False  # the model's features came from an untrained backbone
    run_id: Optional[str] = None  # the MLflow run its metrics were logged to

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items()
                          if k in ("accuracy", "f1", "log_loss", "auc"))
        return f"Evaluation({self.name + ': ' if self.name else ''}{shown})"


@dataclass(repr=False)
class Comparison(_Rendered):
    """Several models evaluated on their data, side by side (``table``: one row each)."""

    evaluations: Dict[str, Evaluation]
    table: Any

    def __getitem__(self, name: str) -> Evaluation:
        return self.evaluations[name]

    def __repr__(self) -> str:
        return f"Comparison({', '.join(self.evaluations)})"


# --------------------------------------------------------------------------- explanation

@dataclass(repr=False)
class Explanation(_Rendered):
    """Where a fitted model looked: class heatmaps for a few images (``%%explain``).

    ``rows`` (pandas, one row per image, mistakes first when labels are known): ``path``,
    ``true`` (class name or None), ``predicted``, ``probability`` (of the predicted
    class, None without probabilities), ``explained`` (the class whose map is drawn),
    ``correct``, ``width`` / ``height`` (the image's own size), ``thumbnail`` and
    ``overlay`` (PNG bytes: the image, and the heatmap over it at ``alpha``), ``error``
    (why an image could not be explained). ``maps[i]`` is row i's heatmap as the model
    computed it (float32 in [0, 1], the backbone's map resolution, e.g. 7 x 7, or
    occlusion's grid); :meth:`heatmap` gives it at the image's size. ``method``:
    ``cam``, ``gradcam`` or ``occlusion``.
    """

    rows: Any
    maps: List[Any]
    classes: List[str]
    method: str
    target: str = "predicted"  # predicted, true, or a class name
    alpha: float = 0.5
    model_name: str = ""
    notes: List[str] = field(default_factory=list)
    untrained: bool = False

    def __len__(self) -> int:
        return len(self.maps)

    def heatmap(self, i: int) -> Any:
        """Row *i*'s heatmap at its image's size, (height, width) float32 in [0, 1].

        Kept small (``maps``) and scaled on request: a 12-megapixel photo's full-size
        map is 48 MB."""
        import numpy as np
        from PIL import Image
        small = self.maps[i]
        width, height = self.rows["width"].iloc[i], self.rows["height"].iloc[i]
        if small is None or width is None or height is None:
            return None
        big = Image.fromarray(np.asarray(small, dtype=np.float32), "F").resize(
            (int(width), int(height)), Image.Resampling.BILINEAR)
        return np.clip(np.asarray(big, dtype=np.float32), 0.0, 1.0)

    def __repr__(self) -> str:
        wrong = int((~self.rows["correct"].fillna(True).astype(bool)).sum()) \
            if len(self.rows) else 0
        return (f"Explanation({self.method}, {len(self.maps)} images, {wrong} mistakes, "
                f"class: {self.target})")


# --------------------------------------------------------------------------- multi-label

@dataclass(repr=False)
class MultiLabelModel(_Rendered):
    """One binary classifier per label, for images with label sets (``multi_label: keep``).

    ``pipeline_model`` is one ``PipelineModel``: the featurizer stage first when the
    FeatureSet had one, then one logistic-regression model per class (class order),
    each writing its probability vector to ``_p<i>``. :meth:`transform` / :meth:`predict`
    give ``label_probabilities`` and ``predicted_labels`` (probability >= ``threshold``).
    ``positives``: training images carrying each label.
    """

    pipeline_model: Any
    classes: List[str]
    threshold: float = 0.5
    classifier: str = "logistic_regression"
    params: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    features: Optional[FeatureSet] = None  # what it was trained on (not saved)
    num_features: int = 0
    positives: Dict[str, int] = field(default_factory=dict)
    model_name: str = ""
    train_count: int = 0
    untrained: bool = False

    @property
    def has_featurizer(self) -> bool:
        return len(self.pipeline_model.stages) > len(self.classes)

    def transform(self, df: Any, threshold: Optional[float] = None) -> Any:
        """Label probabilities and label sets for *df* (features, or raw images)."""
        return _stage("multilabel").transform(self, df, threshold)

    def predict(self, images: Any, threshold: Optional[float] = None) -> Any:
        """Label probabilities and label sets for an ImageSet, a FeatureSet or a DataFrame."""
        return _stage("multilabel").predict(self, images, threshold)

    def register_sql_function(self, name: str = "tags", output: str = "labels",
                              threshold: Optional[float] = None, spark: Any = None) -> Any:
        """``SELECT <name>(content) FROM images``: this model as a Spark SQL function
        (each image's label set, or ``output="probabilities"``: one per label)."""
        return _stage("sql").register_sql_function(name, model=self, output=output,
                                                   threshold=threshold, spark=spark)

    def save(self, path: str, overwrite: bool = True) -> str:
        """Save the PipelineModel and the classes/threshold (:mod:`sparkdl_magics.persist`)."""
        return _stage("persist").save_model(self, path, overwrite)

    @classmethod
    def load(cls, path: str, spark: Any = None) -> "MultiLabelModel":
        return _stage("persist").load_model(path, spark)

    def __repr__(self) -> str:
        return (f"MultiLabelModel({self.classifier} per label, {len(self.classes)} labels, "
                f"threshold {self.threshold:g})")


@dataclass(repr=False)
class MultiLabelEvaluation(_Rendered):
    """Metrics of a multi-label model on one data set with label sets.

    ``metrics``: subset_accuracy, hamming_loss, f1_micro, f1_macro, roc_auc_macro,
    average_precision_macro (scikit-learn's definitions), threshold, count.
    ``per_label``: per label, support, predicted positives, precision, recall, f1,
    roc_auc, average_precision. ``roc`` / ``pr``: curve frames per label. ``errors``:
    the images with the most wrong labels (path, true, predicted, wrong_labels,
    thumbnail). ``predictions``: the Spark DataFrame the numbers came from.
    """

    metrics: Dict[str, Any]
    per_label: Any
    predictions: Any
    classes: List[str]
    roc: Dict[str, Any] = field(default_factory=dict)
    pr: Dict[str, Any] = field(default_factory=dict)
    errors: Any = None
    notes: List[str] = field(default_factory=list)
    name: str = ""
    untrained: bool = False

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={self.metrics[k]:.4f}" for k in
                          ("f1_micro", "f1_macro", "roc_auc_macro", "hamming_loss")
                          if k in self.metrics)
        return f"MultiLabelEvaluation({self.name + ': ' if self.name else ''}{shown})"


# --------------------------------------------------------------------------- session

@dataclass(repr=False)
class SessionInfo(_Rendered):
    """What ``%dlspark`` shows: the kind of session and where it runs."""

    mode: str  # "classic" or "connect"
    master: str
    version: str
    app_name: Optional[str] = None
    executors: Optional[int] = None
    cores: Optional[int] = None
    started_here: bool = False
    where: str = ""  # what it is, in words: "remote Connect server at sc://host:port", ...
    package_version: str = ""  # the sparkdl_magics version attached to it
    gpus: Optional[str] = None  # GPUs Spark schedules (per executor / per task); None: none

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    def __str__(self) -> str:
        parts = [f"Spark {self.version} ({self.mode}, {self.where})", f"master: {self.master}"]
        if self.executors is not None:
            parts.append(f"executors: {self.executors}")
        if self.cores is not None:
            parts.append(f"cores: {self.cores}")
        if self.gpus:
            parts.append(f"GPUs: {self.gpus}")
        if self.package_version:
            parts.append(f"sparkdl_magics {self.package_version}")
        return " | ".join(parts)

    __repr__ = __str__


__all__ = ["ImageSet", "FeatureSet", "Predictions", "FittedModel", "FineTunedModel", "Evaluation",
           "Comparison", "SessionInfo", "Explanation", "MultiLabelModel", "MultiLabelEvaluation"]
