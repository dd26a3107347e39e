"""The run pictures a person reads (``shared/training/plots.py``), rendered after 1 and after 3 epochs: learning curves
with a marker at every epoch, whole-number epoch ticks and legends outside the data; prediction panels with a
class legend and no blank band under the title."""

import numpy as np
import pytest

from segparity.training.plots import learning_curves_figure, plot_learning_curves, plot_predictions, predictions_figure
from segparity.data.synthetic import synthetic_class_names
from segparity.training.config import METRICS


def _rows(epochs: int) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "loss": 1.0 / e, "val_loss": 1.1 / e}
        row.update({m: 0.5 + 0.1 * e for m in METRICS})
        row.update({f"val_{m}": 0.45 + 0.1 * e for m in METRICS})
        rows.append(row)
    return rows


def _visible_ticks(ax) -> list[float]:
    low, high = ax.get_xlim()
    return [t for t in ax.get_xticks() if low <= t <= high]


@pytest.mark.parametrize("epochs", [1, 3])
def test_learning_curves_have_markers_integer_epochs_and_legends_outside(tmp_path, epochs):
    figure = learning_curves_figure(_rows(epochs), "unet, torch, synthetic")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    loss, metrics = figure.axes
    assert len(loss.lines) == 2 and len(metrics.lines) == 2 * len(METRICS)
    for ax in (loss, metrics):
        for line in ax.lines:  # one epoch must still draw a point: every line has a marker
            assert line.get_marker() not in ("", "None", None), line.get_label()
            assert len(line.get_xdata()) == epochs
        ticks = _visible_ticks(ax)
        assert ticks == [float(e) for e in range(1, epochs + 1)]  # 1, 2, 3: no 1.25, 1.5, ...
        legend = ax.get_legend()
        assert legend is not None
        box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert box.x0 >= area.x1 or box.y1 <= area.y0, "the legend must not cover the data"
    plot_learning_curves(_rows(epochs), tmp_path / "curves.png", "title")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("classes", [2, 3])
def test_prediction_panels_have_a_class_legend_and_no_blank_band(tmp_path, classes):
    rng = np.random.default_rng(0)
    images = rng.random((3, 32, 32, 3))
    masks, predictions = rng.integers(0, classes, (2, 3, 32, 32))
    names = synthetic_class_names(classes)
    figure = predictions_figure(images, masks, predictions, "unet, tf, synthetic", names)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == [f"0 {names[0]} (image untinted)"] + [
        f"{k} {names[k]}" for k in range(1, classes)]
    assert names[:3] == ["background", "disk", "rectangle"][:classes]
    top_row = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in top_row] == ["input", "ground truth", "prediction"]
    title_bottom = figure._suptitle.get_window_extent(renderer).y0
    panel_top = max(ax.title.get_window_extent(renderer).y1 for ax in top_row)
    assert 0 <= title_bottom - panel_top < 0.03 * figure.bbox.height, "a blank band under the title"
    lowest_panel = min(ax.get_window_extent(renderer).y0 for ax in figure.axes)
    assert legend.get_window_extent(renderer).y1 <= lowest_panel  # below the panels, covering none
    plot_predictions(images, masks, predictions, tmp_path / "p.png", "title", names)
    assert (tmp_path / "p.png").stat().st_size > 0
