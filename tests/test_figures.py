"""QC figures: each renders to a PNG of figsize * dpi pixels with visible content; bad input is refused."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brainobs.export import figures
from brainobs.export.figures import FigureInputError

RNG = np.random.default_rng(7)
FRAME_RATE = 30.0


def pixels(fig) -> np.ndarray:
    """The rendered PNG as an (H, W, 3) uint8 array."""
    data = figures.render_png(fig)
    assert data.startswith(b"\x89PNG")
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_drawn(image: np.ndarray, figsize: tuple[float, float], dpi: float) -> None:
    assert image.shape[:2] == (round(figsize[1] * dpi), round(figsize[0] * dpi))
    assert image.std() > 20  # not a blank page


def count_colour(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    return int(np.all(np.abs(image.astype(int) - rgb) <= tolerance, axis=-1).sum())


def square(top: int, left: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[top : top + size, left : left + size]
    return rows.ravel(), cols.ravel()


def test_roi_masks_show_valid_green_and_excluded_red():
    average = RNG.normal(100, 5, (40, 40))
    excluded_mask = np.zeros((40, 40), bool)
    excluded_mask[25:35, 25:35] = True
    rois = [(*square(5, 5, 10), True), (excluded_mask, False)]
    fig = figures.roi_mask_figure(average, rois, figsize=(4, 4), dpi=100)
    image = pixels(fig)
    assert_drawn(image, (4, 4), 100)
    # 10 x 10 image px per ROI at ~8 screen px each: thousands of pixels of each colour
    green = np.sum((image[..., 1] > 150) & (image[..., 0] < 110) & (image[..., 2] < 110))
    red = np.sum((image[..., 0] > 150) & (image[..., 1] < 110) & (image[..., 2] < 110))
    assert green > 2000 and red > 2000
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert labels == ["valid (1)", "excluded (1)"]


def test_roi_masks_without_excluded_rois_show_red_only_in_the_legend():
    fig = figures.roi_mask_figure(RNG.normal(100, 5, (40, 40)), [(*square(5, 5, 10), True)], figsize=(4, 4))
    image = pixels(fig)
    red = np.sum((image[..., 0] > 150) & (image[..., 1] < 110) & (image[..., 2] < 110))
    assert red < 500  # the legend patch; a 10 x 10 px ROI would add ~6000


def test_roi_mask_errors_name_the_roi():
    average = np.zeros((20, 20))
    with pytest.raises(FigureInputError, match="ROI 1: pixels outside the 20x20 image"):
        figures.roi_mask_figure(average, [(*square(0, 0, 3), True), (np.array([5]), np.array([25]), False)])
    with pytest.raises(FigureInputError, match="ROI 0: mask shape"):
        figures.roi_mask_figure(average, [(np.ones((10, 10)), True)])
    with pytest.raises(FigureInputError, match="2-D"):
        figures.roi_mask_figure(np.zeros(5), [])


def dff_traces(n_rois: int = 12, n_frames: int = 900) -> tuple[np.ndarray, np.ndarray]:
    timestamps = 5.0 + np.arange(n_frames) / FRAME_RATE
    return RNG.gamma(1.0, 0.3, (n_rois, n_frames)), timestamps


def test_dff_heatmap_time_axis_and_change_lines():
    dff, timestamps = dff_traces()
    dff[3] = np.nan  # a ROI without a trace
    fig = figures.dff_heatmap_figure(dff, timestamps, change_times=[10.0, 20.0], omission_times=[15.0])
    image = pixels(fig)
    assert_drawn(image, (10, 5), 100)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (s)"
    assert ax.get_images()[0].get_extent()[:2] == pytest.approx([5.0, timestamps[-1]])
    plain = pixels(figures.dff_heatmap_figure(dff, timestamps))
    assert count_colour(image, (0, 255, 255)) > 300 > count_colour(plain, (0, 255, 255))  # cyan changes
    assert count_colour(image, (0, 255, 0)) > 100 > count_colour(plain, (0, 255, 0))  # lime omissions
    assert count_colour(image, (153, 153, 153), 3) > 1000  # the NaN row is grey


def test_long_recordings_are_binned_to_at_most_max_columns():
    dff, timestamps = dff_traces(n_rois=4, n_frames=10_001)
    fig = figures.dff_heatmap_figure(dff, timestamps)
    shown = np.asarray(fig.axes[0].get_images()[0].get_array())
    assert shown.shape[0] == 4 and shown.shape[1] <= figures.MAX_COLUMNS
    assert np.nanmean(shown) == pytest.approx(dff.mean(), rel=0.01)


def test_event_raster_marks_bins_with_events():
    _, timestamps = dff_traces(n_rois=6)
    events = np.zeros((6, timestamps.size))
    events[2, ::30] = 0.5  # one event per second in ROI 2
    fig = figures.event_raster_figure(events, timestamps, figsize=(8, 4), dpi=80)
    image = pixels(fig)
    assert_drawn(image, (8, 4), 80)
    shown = np.asarray(fig.axes[0].get_images()[0].get_array())
    assert shown[2].sum() == 30 and shown[[0, 1, 3, 4, 5]].sum() == 0
    assert "30 events in 6 ROIs" in fig.axes[0].get_title()
    empty = pixels(figures.event_raster_figure(np.zeros_like(events), timestamps, figsize=(8, 4), dpi=80))
    assert np.sum(image.sum(-1) < 100) > np.sum(empty.sum(-1) < 100) + 200  # black event ticks


def test_heatmap_and_raster_refuse_mismatched_timestamps():
    dff, timestamps = dff_traces()
    with pytest.raises(FigureInputError, match="899 timestamps for 900 dF/F samples"):
        figures.dff_heatmap_figure(dff, timestamps[:-1])
    with pytest.raises(FigureInputError, match="2-D"):
        figures.event_raster_figure(dff[0], timestamps)
    with pytest.raises(FigureInputError, match="3 ROI ids for 12 rows"):
        figures.dff_heatmap_figure(dff, timestamps, roi_ids=[1, 2, 3])


def test_motion_trace_draws_and_annotates_the_border():
    n = 600
    x = np.round(RNG.normal(0, 1.5, n))
    y = np.round(RNG.normal(0, 1.5, n))
    border = {"left": x.max(), "right": -x.min(), "up": y.max(), "down": -y.min()}
    fig = figures.motion_figure(x, y, timestamps=np.arange(n) / FRAME_RATE, motion_border=border)
    image = pixels(fig)
    assert_drawn(image, (10, 5), 100)
    notes = [text.get_text() for ax in fig.axes for text in ax.texts]
    assert notes == [
        f"left {border['left']:.3g} px",
        f"right {border['right']:.3g} px",
        f"up {border['up']:.3g} px",
        f"down {border['down']:.3g} px",
    ]
    plain = pixels(figures.motion_figure(x, y))
    assert count_colour(image, (214, 39, 40)) > 200 > count_colour(plain, (214, 39, 40))  # red border lines
    with pytest.raises(FigureInputError, match=r"\['down'\] missing"):
        figures.motion_figure(x, y, motion_border={"left": 1, "right": 1, "up": 1})


def test_spike_raster_draws_one_tick_per_spike_in_the_window():
    trains = [np.sort(RNG.uniform(0, 100, 50 * (unit + 1))) for unit in range(8)]
    fig = figures.spike_raster_figure(trains, unit_ids=[f"u{i}" for i in range(8)], figsize=(8, 4), dpi=100)
    assert_drawn(pixels(fig), (8, 4), 100)
    assert fig.axes[0].lines[0].get_xdata().size == sum(train.size for train in trains)
    windowed = figures.spike_raster_figure(trains, t_start=20.0, t_stop=40.0)
    kept = windowed.axes[0].lines[0].get_xdata()
    assert kept.size == sum(np.sum((t >= 20) & (t <= 40)) for t in trains)
    assert kept.min() >= 20 and kept.max() <= 40
    with pytest.raises(FigureInputError, match="2 unit ids for 8 spike trains"):
        figures.spike_raster_figure(trains, unit_ids=[1, 2])


def unit_metrics() -> pd.DataFrame:
    n = 40
    return pd.DataFrame(
        {
            "amplitude_cutoff": np.linspace(0.0, 0.39, n),  # 11 values <= 0.1
            "presence_ratio": np.linspace(0.6, 0.99, n),  # 9 values >= 0.95 (0.95 itself up to rounding)
            "isi_violations": np.r_[np.full(n - 1, 0.2), np.nan],  # NaN fails
            "firing_rate": RNG.gamma(2.0, 3.0, n),
            "quality": ["good"] * n,
            "in_brain": [True] * n,
        }
    )


def test_unit_metric_histograms_draw_preset_thresholds():
    metrics = unit_metrics()
    fig = figures.unit_metric_histograms(metrics, thresholds="visual_coding", dpi=80)
    image = pixels(fig)
    assert_drawn(image, (3 * 3.5, 2 * 2.6), 80)  # 4 numeric columns on a 3-wide grid
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    expected_presence = int(np.sum(metrics["presence_ratio"] >= 0.95))
    assert titles == [
        "amplitude_cutoff <= 0.1: 11/40",
        f"presence_ratio >= 0.95: {expected_presence}/40",
        "isi_violations <= 0.5: 39/40",
        "firing_rate",
    ]
    threshold_lines = [line.get_xdata()[0] for ax in fig.axes for line in ax.lines]
    assert threshold_lines == [0.1, 0.95, 0.5]


def test_unit_metric_histograms_with_chosen_columns_and_conditions():
    metrics = unit_metrics()
    fig = figures.unit_metric_histograms(
        metrics, columns=["firing_rate"], thresholds=[("firing_rate", ">", 0.1)], ncols=1, panel_size=(4, 3)
    )
    assert_drawn(pixels(fig), (4, 3), 100)
    assert fig.axes[0].get_title() == f"firing_rate > 0.1: {int(np.sum(metrics['firing_rate'] > 0.1))}/40"
    with pytest.raises(FigureInputError, match=r"no columns \['snr'\]"):
        figures.unit_metric_histograms(metrics, columns=["snr"])
    with pytest.raises(FigureInputError, match="unknown unit filter preset 'strict'"):
        figures.unit_metric_histograms(metrics, thresholds="strict")


def test_save_figure_png_and_svg(tmp_path):
    fig = figures.motion_figure(np.zeros(50), np.ones(50), figsize=(5, 3), dpi=60)
    png = figures.save_figure(fig, tmp_path / "out" / "motion.png")
    svg = figures.save_figure(fig, tmp_path / "out" / "motion.svg")
    assert Image.open(png).size == (300, 180)
    text = svg.read_text()
    assert "<svg" in text and "</svg>" in text
    first = svg.read_bytes()
    figures.save_figure(fig, svg)
    assert svg.read_bytes() == first  # no dates or random ids
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["motion.png", "motion.svg"]
    with pytest.raises(ValueError, match="motion.jpg: figures are saved as"):
        figures.save_figure(fig, tmp_path / "motion.jpg")
