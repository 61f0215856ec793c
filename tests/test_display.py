"""What the renderers draw, checked on the figure data and the HTML (not on pixels).

The confusion heatmap is built by ``confusion_figure`` (a matplotlib Figure), so its
texts, ticks, fonts and size can be read back; the ImageSet display is plain HTML. The
UNTRAINED marker is checked on every result built from an untrained backbone, and on
a real fit/evaluate of an untrained FeatureSet.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from sparkdl_magics.display.evaluation import confusion_figure
from sparkdl_magics.results import Evaluation, FittedModel, ImageSet, Predictions

#: figure_png's resolution, and the width a notebook column shows an image at without
#: scaling it down (JupyterLab/VS Code output areas are about this wide).
DPI = 90
COLUMN_PX = 900


def confusion(n, diagonal=8, seed=0, high=3):
    """A confusion frame: *diagonal* correct per class, a few mistakes, mostly zeros."""
    rng = np.random.default_rng(seed)
    values = np.zeros((n, n), dtype=np.int64)
    np.fill_diagonal(values, diagonal)
    for i in range(n):
        values[i, (i + 1 + rng.integers(0, n - 1)) % n] += rng.integers(1, high + 1)
    names = [f"class_{i:02d}" for i in range(n)] if n > 10 else [str(i) for i in range(n)]
    return pd.DataFrame(values, index=names, columns=names)


def _cell_texts(fig):
    ax = fig.axes[0]
    return [t for t in ax.texts]


def _shown_scale(fig):
    """How much a notebook column scales the figure's PNG down (1.0: not at all)."""
    width_px = fig.get_size_inches()[0] * DPI
    return min(1.0, COLUMN_PX / width_px)


# --------------------------------------------------------------------------- heatmap

@pytest.mark.parametrize("n", [10, 50])
def test_confusion_zero_cells_have_no_text(n):
    frame = confusion(n)
    fig = confusion_figure(frame)
    values = frame.to_numpy()
    texts = _cell_texts(fig)
    assert texts, "non-zero counts are printed"
    for t in texts:
        x, y = t.get_position()
        assert values[int(round(y)), int(round(x))] != 0, "a zero cell has a text"
        assert t.get_text() == str(values[int(round(y)), int(round(x))])
    assert len(texts) == int((values != 0).sum())


@pytest.mark.parametrize("n,diagonal", [(3, 2), (10, 3), (50, 9)])
def test_confusion_colorbar_ticks_are_whole_counts(n, diagonal):
    fig = confusion_figure(confusion(n, diagonal=diagonal, high=1))
    bar = fig.axes[1]
    low, high = bar.get_ylim()
    ticks = [t for t in bar.get_yticks() if low - 1e-9 <= t <= high + 1e-9]
    assert len(ticks) >= 2
    assert all(float(t).is_integer() for t in ticks), ticks


@pytest.mark.parametrize("n", [3, 10, 50])
def test_confusion_has_no_title(n):
    fig = confusion_figure(confusion(n))
    assert all(ax.get_title() == "" for ax in fig.axes)
    assert fig._suptitle is None


def test_confusion_labels_stay_readable_at_50_classes():
    fig = confusion_figure(confusion(50))
    ax = fig.axes[0]
    scale = _shown_scale(fig)
    labels = ax.get_xticklabels() + ax.get_yticklabels()
    assert len(ax.get_yticklabels()) == 50, "every class is named"
    # as large as 7 pt once the notebook has fitted the image into its column
    assert min(t.get_fontsize() for t in labels) * scale >= 7
    assert all(t.get_rotation() == 90 for t in ax.get_xticklabels())
    cells = _cell_texts(fig)
    assert cells and min(t.get_fontsize() for t in cells) * scale >= 6


def test_confusion_counts_are_large_at_10_classes():
    fig = confusion_figure(confusion(10, diagonal=40))
    assert min(t.get_fontsize() for t in _cell_texts(fig)) * _shown_scale(fig) >= 10
    ax = fig.axes[0]
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels()), "short labels upright"


@pytest.mark.parametrize("n", [2, 10, 50, 200])
def test_confusion_figure_size_is_bounded(n):
    width, height = confusion_figure(confusion(n)).get_size_inches()
    assert 3 <= width <= 10.5 and 3 <= height <= 9.5, (width, height)


def test_confusion_many_classes_thins_labels_and_drops_unreadable_counts():
    fig = confusion_figure(confusion(200))
    ax = fig.axes[0]
    assert 0 < len(ax.get_yticklabels()) < 200  # every k-th class, not an overlapping smear
    assert not _cell_texts(fig)  # a 3-pt count is noise: the colour says it


def test_confusion_all_zero_and_float_counts():
    zero = confusion_figure(pd.DataFrame(np.zeros((3, 3), dtype=int), index=list("abc"),
                                         columns=list("abc")))
    assert not _cell_texts(zero)
    frac = confusion_figure(pd.DataFrame([[0.5, 0.0], [0.25, 1.0]], index=["a", "b"],
                                         columns=["a", "b"]))
    assert sorted(t.get_text() for t in _cell_texts(frac)) == ["0.25", "0.5", "1"]


# --------------------------------------------------------------------------- image set

def _image_set(n_classes=10, splits=("train", "test"), per_class=(40, 10), previews=4):
    from PIL import Image
    import io
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 200)).save(buf, format="PNG")
    png = buf.getvalue()
    names = [str(i) for i in range(n_classes)]
    counts = pd.DataFrame({s: [n + i for i in range(n_classes)] for s, n in zip(splits, per_class)},
                          index=names)
    counts["total"] = counts[list(splits)].sum(axis=1)
    counts["invalid"] = 0
    return ImageSet(df=None, train=None, test=None, classes=names,
                    invalid=pd.DataFrame(columns=["path", "reason"]), counts=counts,
                    source="/data/digits", stats={"images": int(counts["total"].sum())},
                    previews={c: [(f"/data/digits/{c}/{k}.png", png) for k in range(previews)]
                              for c in names})


def test_class_bars_show_the_numbers_per_split():
    images = _image_set()
    html = images._repr_html_()
    for i in range(10):
        assert f"train {40 + i} · test {10 + i}" in html


def test_class_bars_of_one_split_show_the_total_only():
    images = _image_set(splits=("train",), per_class=(30,))
    html = images._repr_html_()
    assert "train 30 ·" not in html and ">30<" in html


def test_previews_are_one_compact_row_per_class():
    images = _image_set()
    html = images._repr_html_()
    previews = html[html.index("sparkdl-previews"):]
    previews = previews[:previews.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", previews)
    assert len(rows) == 10
    for name, row in zip(images.classes, rows):
        assert f">{name}</td>" in row  # the class name at the left of its row
        assert row.count("<img") == 4
    heights = [int(h) for h in re.findall(r"max-height:(\d+)px", previews)]
    assert heights and max(heights) <= 48  # stored at 96 px: shown at most half that


# --------------------------------------------------------------------------- UNTRAINED

def _evaluation(untrained):
    classes = ["a", "b"]
    frame = pd.DataFrame([[3, 1], [0, 4]], index=classes, columns=classes)
    per_class = pd.DataFrame({"class": classes, "precision": [1.0, 0.8], "recall": [0.75, 1.0],
                              "f1": [0.86, 0.89], "support": [4, 4]})
    return Evaluation(metrics={"accuracy": 0.875, "f1": 0.87, "count": 8}, per_class=per_class,
                      confusion=frame, predictions=None, classes=classes,
                      untrained=untrained)


class _Pipeline:
    stages = ["classifier", "index_to_string"]


def test_untrained_marker_on_fitted_model():
    model = FittedModel(pipeline_model=_Pipeline(), classes=["a", "b"],
                        classifier="logistic_regression", untrained=True)
    assert "UNTRAINED" in model._repr_html_()
    model.untrained = False
    assert "UNTRAINED" not in model._repr_html_()


def test_untrained_marker_on_evaluation():
    assert "UNTRAINED" in _evaluation(untrained=True)._repr_html_()
    assert "UNTRAINED" not in _evaluation(untrained=False)._repr_html_()


@pytest.mark.parametrize("rows", [None, "computed"])
def test_untrained_marker_on_predictions(rows):
    shown = None
    if rows:
        shown = pd.DataFrame({"path": ["/x/1.png"], "predictions": [[
            {"class_id": 1, "wnid": "n0", "label": "goldfish", "probability": 0.5}]],
            "predict_error": [None]})
    for untrained in (True, False):
        result = Predictions(df=None, model_name="MobileNetV3Small",
                             weights="none" if untrained else "imagenet", top_k=1,
                             untrained=untrained, rows=shown)
        assert ("UNTRAINED" in result._repr_html_()) is untrained


def test_untrained_marker_in_the_app_tabs():
    pytest.importorskip("ipywidgets")
    from sparkdl_magics.display.app import AppView
    view = AppView(path="/data", models=["MobileNetV3Small"], model="MobileNetV3Small",
                   classifiers=["logistic_regression"], classifier="logistic_regression",
                   weights="none", main_params={"logistic_regression": {"maxIter": 5}},
                   on_run=lambda: None, on_cancel=lambda: None)
    model = FittedModel(pipeline_model=_Pipeline(), classes=["a", "b"],
                        classifier="logistic_regression", untrained=True)
    view.show_result("fit", model)
    view.show_result("evaluate", _evaluation(untrained=True))
    for tab in ("Model", "Metrics", "Confusion matrix"):
        assert "UNTRAINED" in view.outputs[tab].outputs[0]["data"]["text/html"], tab
    from sparkdl_magics.display.app import metrics_line
    assert metrics_line(_evaluation(untrained=True)).endswith("(UNTRAINED features)")
    assert "UNTRAINED" not in metrics_line(_evaluation(untrained=False))


def test_fit_and_evaluate_of_untrained_features_are_marked(spark):
    from helpers import blobs
    from sparkdl_magics import evaluate, fit
    features = blobs(spark, with_images=False)
    features.untrained = True
    model = fit(features, maxIter=5)
    assert model.untrained and "UNTRAINED" in model._repr_html_()
    ev = evaluate(model)
    assert ev.untrained and "UNTRAINED" in ev._repr_html_()
