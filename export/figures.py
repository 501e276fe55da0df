"""QC figures as pure functions: arrays and DataFrames in, a matplotlib Figure out (no database inside).

Every figure is drawn on its own ``Figure`` with an Agg canvas (no pyplot state), so figures can be made in
worker threads and freed by dropping the reference. :func:`save_figure` writes PNG or SVG atomically;
:func:`render_png` / :func:`render_svg` give the bytes for embedding in a report page.
"""

from __future__ import annotations

import io
import operator
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from brainobs.populate.ephys.presets import UNIT_FILTER_PRESETS

VALID_COLOUR = (0.0, 0.85, 0.0)
EXCLUDED_COLOUR = (0.95, 0.0, 0.0)
# Stimulus change and omission lines: bright on the dark heatmap, dark on the white raster.
HEATMAP_MARKS = ("cyan", "lime")
RASTER_MARKS = ("tab:blue", "tab:orange")
MAX_COLUMNS = 2000  # time bins drawn in a heatmap or raster; longer recordings are binned down
SAVE_FORMATS = {".png": "png", ".svg": "svg"}
COMPARISONS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
# No dates or software stamps in the files and fixed SVG ids, so the same figure gives the same bytes.
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}

Roi = tuple[np.ndarray, np.ndarray, bool] | tuple[np.ndarray, bool]
Condition = tuple[str, str, object]
Times = Sequence[float] | np.ndarray


class FigureInputError(ValueError):
    """The arrays given to a figure function do not fit together."""


def new_figure(figsize: tuple[float, float], dpi: float) -> Figure:
    """A Figure of ``figsize`` inches at ``dpi`` with an Agg canvas attached."""
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def roi_mask_figure(
    average_image: np.ndarray,
    rois: Sequence[Roi],
    *,
    title: str = "ROI masks",
    alpha: float = 0.5,
    figsize: tuple[float, float] = (6.0, 6.0),
    dpi: float = 100,
) -> Figure:
    """ROI masks over the average projection: valid ROIs green, excluded ROIs red, with a legend.

    Each ROI is ``(ypix, xpix, valid)`` (pixel rows and columns of the mask) or ``(mask, valid)`` with a
    (H, W) mask whose non-zero pixels belong to the ROI.
    """
    image = np.asarray(average_image, dtype=np.float64)
    if image.ndim != 2:
        raise FigureInputError(f"average image must be 2-D (H, W), got shape {image.shape}")
    overlay = np.zeros((*image.shape, 4))
    counts = {True: 0, False: 0}
    masks = [(_roi_mask(roi, image.shape, index), bool(roi[-1])) for index, roi in enumerate(rois)]
    for mask, valid in sorted(masks, key=lambda item: item[1]):  # valid ROIs drawn last, on top
        overlay[mask] = (*(VALID_COLOUR if valid else EXCLUDED_COLOUR), alpha)
        counts[valid] += 1
    fig = new_figure(figsize, dpi)
    ax = fig.add_subplot()
    low, high = _robust_limits(image, 1.0, 99.5)
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    ax.imshow(overlay, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
    handles = [
        Patch(color=VALID_COLOUR, label=f"valid ({counts[True]})"),
        Patch(color=EXCLUDED_COLOUR, label=f"excluded ({counts[False]})"),
    ]
    ax.legend(handles=handles, loc="upper right", framealpha=0.8, fontsize="small")
    fig.tight_layout()
    return fig


def dff_heatmap_figure(
    dff: np.ndarray,
    timestamps: np.ndarray,
    *,
    change_times: Times | None = None,
    omission_times: Times | None = None,
    roi_ids: Sequence[Any] | None = None,
    title: str = "dF/F",
    figsize: tuple[float, float] = (10.0, 5.0),
    dpi: float = 100,
) -> Figure:
    """dF/F heatmap, ROI x time (s), with stimulus changes (solid) and omissions (dashed) as vertical lines.

    Rows of NaN (ROIs without a trace) are drawn grey.
    """
    traces = _roi_by_time(dff, timestamps, "dF/F")
    binned = _bin_time(traces, np.nanmean)
    fig = new_figure(figsize, dpi)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.6")
    low, high = _robust_limits(traces, 1.0, 99.0)
    image = ax.imshow(
        binned,
        aspect="auto",
        cmap=cmap,
        vmin=low,
        vmax=high,
        interpolation="nearest",
        extent=_extent(timestamps, traces),
    )
    fig.colorbar(image, ax=ax, label="dF/F", fraction=0.04, pad=0.02)
    _mark_times(ax, change_times, omission_times, HEATMAP_MARKS)
    _label_rois(ax, roi_ids, traces.shape[0], "ROI")
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def event_raster_figure(
    events: np.ndarray,
    timestamps: np.ndarray,
    *,
    change_times: Times | None = None,
    omission_times: Times | None = None,
    roi_ids: Sequence[Any] | None = None,
    title: str = "Events",
    figsize: tuple[float, float] = (10.0, 5.0),
    dpi: float = 100,
) -> Figure:
    """Event raster, ROI x time (s): black where an ROI has an event (> 0) in that time bin."""
    amplitudes = _roi_by_time(events, timestamps, "events")
    has_event = np.nan_to_num(amplitudes, nan=0.0) > 0
    binned = _bin_time(has_event.astype(np.float32), np.nanmax)
    fig = new_figure(figsize, dpi)
    ax = fig.add_subplot()
    ax.imshow(
        binned,
        aspect="auto",
        cmap="Greys",
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=_extent(timestamps, binned),
    )
    _mark_times(ax, change_times, omission_times, RASTER_MARKS)
    _label_rois(ax, roi_ids, amplitudes.shape[0], "ROI")
    ax.set_xlabel("time (s)")
    ax.set_title(f"{title} ({int(has_event.sum())} events in {amplitudes.shape[0]} ROIs)")
    fig.tight_layout()
    return fig


def motion_figure(
    x_offset: np.ndarray,
    y_offset: np.ndarray,
    *,
    timestamps: np.ndarray | None = None,
    motion_border: Mapping[str, float] | Any | None = None,
    title: str = "Motion correction",
    figsize: tuple[float, float] = (10.0, 5.0),
    dpi: float = 100,
) -> Figure:
    """x and y offsets (px) over time, with the motion border (left/right, up/down) drawn and annotated.

    ``motion_border`` is a mapping or an object with ``left``, ``right``, ``up`` and ``down`` in px; left and
    up are the largest positive offsets, right and down the largest negative ones.
    """
    x = np.asarray(x_offset, dtype=np.float64)
    y = np.asarray(y_offset, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise FigureInputError(f"x and y offsets must be 1-D and equally long, got {x.shape}, {y.shape}")
    if timestamps is None:
        time, xlabel = np.arange(x.size), "frame"
    else:
        time, xlabel = np.asarray(timestamps, dtype=np.float64), "time (s)"
        if time.shape != x.shape:
            raise FigureInputError(f"{time.size} timestamps for {x.size} motion offsets")
    border = _border_values(motion_border) if motion_border is not None else None
    fig = new_figure(figsize, dpi)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, values, name, (positive, negative) in (
        (axes[0], x, "x", ("left", "right")),
        (axes[1], y, "y", ("up", "down")),
    ):
        ax.plot(time, values, lw=0.8, color="k")
        ax.set_ylabel(f"{name} offset (px)")
        if border is not None:
            for side, level in ((positive, border[positive]), (negative, -border[negative])):
                ax.axhline(level, color="tab:red", ls="--", lw=0.8)
                ax.annotate(
                    f"{side} {abs(level):.3g} px",
                    xy=(1.0, level),
                    xycoords=("axes fraction", "data"),
                    xytext=(-4, 2 if level >= 0 else -10),
                    textcoords="offset points",
                    ha="right",
                    color="tab:red",
                    fontsize="small",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
                )
    axes[1].set_xlabel(xlabel)
    axes[0].set_title(title)
    fig.tight_layout()
    return fig


def spike_raster_figure(
    spike_times: Sequence[np.ndarray],
    *,
    unit_ids: Sequence[Any] | None = None,
    t_start: float | None = None,
    t_stop: float | None = None,
    title: str = "Spike raster",
    figsize: tuple[float, float] = (10.0, 5.0),
    dpi: float = 100,
) -> Figure:
    """Spike raster, units x time (s): one tick per spike, optionally restricted to [t_start, t_stop]."""
    if unit_ids is not None and len(unit_ids) != len(spike_times):
        raise FigureInputError(f"{len(unit_ids)} unit ids for {len(spike_times)} spike trains")
    rows, times = [], []
    for row, train in enumerate(spike_times):
        train = np.asarray(train, dtype=np.float64).ravel()
        keep = np.ones(train.shape, dtype=bool)
        if t_start is not None:
            keep &= train >= t_start
        if t_stop is not None:
            keep &= train <= t_stop
        times.append(train[keep])
        rows.append(np.full(int(keep.sum()), row))
    all_times = np.concatenate(times) if times else np.empty(0)
    all_rows = np.concatenate(rows) if rows else np.empty(0)
    fig = new_figure(figsize, dpi)
    ax = fig.add_subplot()
    tick = max(1.0, min(8.0, 0.8 * figsize[1] * 72 / max(len(spike_times), 1)))
    ax.plot(all_times, all_rows, "|", color="k", markersize=tick, markeredgewidth=0.6)
    ax.set_ylim(len(spike_times) - 0.5, -0.5)
    if t_start is not None or t_stop is not None:
        ax.set_xlim(t_start, t_stop)
    _label_rois(ax, unit_ids, len(spike_times), "unit")
    ax.set_xlabel("time (s)")
    ax.set_title(f"{title} ({all_times.size} spikes, {len(spike_times)} units)")
    fig.tight_layout()
    return fig


def unit_metric_histograms(
    metrics: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    thresholds: str | Sequence[Condition] | None = None,
    bins: int = 30,
    ncols: int = 3,
    title: str = "Unit metrics",
    panel_size: tuple[float, float] = (3.5, 2.6),
    dpi: float = 100,
) -> Figure:
    """A grid of histograms, one per metric column (default: every numeric, non-boolean column).

    ``thresholds`` is a release filter preset name (e.g. ``"visual_coding"``) or a list of
    ``(column, operator, value)``; each numeric condition on a drawn column becomes a red dashed line and
    the panel title counts the units that meet it. The figure is ``ncols * panel_size`` wide.
    """
    names = list(columns) if columns is not None else _numeric_columns(metrics)
    missing = [name for name in names if name not in metrics.columns]
    if missing:
        raise FigureInputError(f"unit metrics have no columns {missing}")
    if not names:
        raise FigureInputError("unit metrics have no numeric column to draw")
    conditions = _threshold_conditions(thresholds)
    nrows = -(-len(names) // ncols)
    fig = new_figure((panel_size[0] * ncols, panel_size[1] * nrows), dpi)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, name in zip(axes, names, strict=False):
        values = pd.to_numeric(metrics[name], errors="coerce").to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        label = name
        if finite.size:
            ax.hist(finite, bins=bins, color="0.4")
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        for column, op, value in conditions:
            if column == name:
                ax.axvline(float(value), color="tab:red", ls="--", lw=1.2)
                passing = int(np.sum(COMPARISONS[op](finite, float(value))))
                label = f"{name} {op} {value:g}: {passing}/{values.size}"
        ax.set_title(label, fontsize="small")
        ax.tick_params(labelsize="x-small")
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    fig.suptitle(f"{title} ({len(metrics)} units)")
    fig.tight_layout()
    return fig


def render_png(fig: Figure) -> bytes:
    """The figure as PNG bytes at its own dpi (size = figsize * dpi pixels)."""
    return _render(fig, "png")


def render_svg(fig: Figure) -> str:
    """The figure as SVG text."""
    return _render(fig, "svg").decode("utf-8")


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write the figure to ``path`` (.png or .svg) through a temporary file and a rename; returns the path."""
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: figures are saved as {sorted(SAVE_FORMATS)}, not {path.suffix!r}")
    write_atomic(path, _render(fig, fmt))
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _render(fig: Figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "brainobs"}):
        fig.savefig(buffer, format=fmt, dpi=fig.dpi, metadata=_METADATA[fmt])
    return buffer.getvalue()


def _roi_mask(roi: Roi, shape: tuple[int, int], index: int) -> np.ndarray:
    if len(roi) == 2:
        mask = np.asarray(roi[0]) != 0
        if mask.shape != shape:
            raise FigureInputError(f"ROI {index}: mask shape {mask.shape} differs from the image {shape}")
        return mask
    if len(roi) != 3:
        expected = "(ypix, xpix, valid) or (mask, valid)"
        raise FigureInputError(f"ROI {index}: expected {expected}, got {len(roi)} items")
    ypix = np.asarray(roi[0], dtype=np.int64).ravel()
    xpix = np.asarray(roi[1], dtype=np.int64).ravel()
    if ypix.shape != xpix.shape:
        raise FigureInputError(f"ROI {index}: {ypix.size} ypix for {xpix.size} xpix")
    inside = (ypix >= 0) & (ypix < shape[0]) & (xpix >= 0) & (xpix < shape[1])
    if not inside.all():
        raise FigureInputError(f"ROI {index}: pixels outside the {shape[0]}x{shape[1]} image")
    mask = np.zeros(shape, dtype=bool)
    mask[ypix, xpix] = True
    return mask


def _robust_limits(values: np.ndarray, low_pct: float, high_pct: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [low_pct, high_pct])
    return float(low), float(high if high > low else low + 1.0)


def _roi_by_time(data: np.ndarray, timestamps: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(data, dtype=np.float64)
    if values.ndim != 2:
        raise FigureInputError(f"{what} must be 2-D (ROI, time), got shape {values.shape}")
    n_times = np.asarray(timestamps).size
    if n_times != values.shape[1]:
        raise FigureInputError(f"{n_times} timestamps for {values.shape[1]} {what} samples per ROI")
    if n_times < 2:
        raise FigureInputError(f"{what} needs at least 2 samples, got {n_times}")
    return values


def _bin_time(values: np.ndarray, reduce: Callable[..., np.ndarray]) -> np.ndarray:
    """Reduce columns in equal groups so that at most MAX_COLUMNS remain (the last group may be shorter)."""
    n_times = values.shape[1]
    if n_times <= MAX_COLUMNS:
        return values
    width = -(-n_times // MAX_COLUMNS)
    padded = np.full((values.shape[0], -(-n_times // width) * width), np.nan)
    padded[:, :n_times] = values
    groups = padded.reshape(values.shape[0], -1, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN bin stays NaN
        return reduce(groups, axis=2)


def _extent(timestamps: np.ndarray, values: np.ndarray) -> tuple[float, float, float, float]:
    time = np.asarray(timestamps, dtype=np.float64)
    return float(time[0]), float(time[-1]), values.shape[0] - 0.5, -0.5


def _mark_times(ax: Axes, changes: Times | None, omissions: Times | None, colours: tuple[str, str]) -> None:
    handles = []
    for times, colour, style, label in (
        (changes, colours[0], "-", "change"),
        (omissions, colours[1], "--", "omission"),
    ):
        if times is None or len(times) == 0:
            continue
        ax.vlines(
            np.asarray(times, dtype=np.float64),
            0,
            1,
            transform=ax.get_xaxis_transform(),
            colors=colour,
            linestyles=style,
            lw=1.0,
        )
        handles.append(Line2D([], [], color=colour, ls=style, label=f"{label} ({len(times)})"))
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)


def _label_rois(ax: Axes, ids: Sequence[Any] | None, n_rows: int, noun: str) -> None:
    if ids is not None and len(ids) != n_rows:
        raise FigureInputError(f"{len(ids)} {noun} ids for {n_rows} rows")
    if ids is not None and n_rows <= 30:
        ax.set_yticks(range(n_rows), [str(i) for i in ids], fontsize="x-small")
        ax.set_ylabel(noun)
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{noun} (row)")


def _border_values(border: Mapping[str, float] | Any) -> dict[str, float]:
    get = border.get if isinstance(border, Mapping) else lambda side: getattr(border, side, None)
    values = {side: get(side) for side in ("left", "right", "up", "down")}
    missing = [side for side, value in values.items() if value is None]
    if missing:
        raise FigureInputError(f"motion border needs left, right, up and down in px; {missing} missing")
    return {side: float(value) for side, value in values.items()}


def _numeric_columns(metrics: pd.DataFrame) -> list[str]:
    return [
        name
        for name, dtype in metrics.dtypes.items()
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    ]


def _threshold_conditions(thresholds: str | Sequence[Condition] | None) -> list[Condition]:
    if thresholds is None:
        return []
    if isinstance(thresholds, str):
        if thresholds not in UNIT_FILTER_PRESETS:
            known = sorted(UNIT_FILTER_PRESETS)
            raise FigureInputError(f"unknown unit filter preset {thresholds!r}; known: {known}")
        thresholds = UNIT_FILTER_PRESETS[thresholds]
    # equality conditions (quality == "good") have no line on a histogram
    return [(column, op, value) for column, op, value in thresholds if op in COMPARISONS]
