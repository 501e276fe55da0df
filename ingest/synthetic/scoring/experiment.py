"""One 2-photon experiment's outputs scored against its synthetic truth: registration, ROIs, traces, events.

The truth lists only cells whose centre lies inside the field of view, so cells cut by the frame edge are
not scoreable: ROIs and true cells are both kept only when their centroid lies ``EDGE_MARGIN_PX`` or more
inside the frame. A registered frame shows FOV position p at p + c, with c = true shift - estimated offset
(a constant, the reference image's position), so ROIs are moved by -c into the truth's coordinates.

Registration is scored on whole-frame offsets (what every method stores: Allen's rigid shift, suite2p's rigid
shift plus its mean block shift, the enhanced sub-pixel offset) against the true displacement of the frame's
content averaged over the field of view (:func:`frame_displacement`): the rigid shift plus the mean of the
non-rigid field where the movie has one. The non-rigid field itself (how each block moves about that mean) is
not scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from brainobs.ingest.synthetic.ophys import NONRIGID_GRID, interpolation_matrix
from brainobs.ingest.synthetic.scoring.rois import RoiDetectionScore, registration_rmse, score_roi_detection
from brainobs.ingest.synthetic.scoring.traces import EventScore, event_f1, trace_correlations

EDGE_MARGIN_PX = 6  # about one cell radius


@dataclass(frozen=True)
class ExperimentScore:
    """registration_rmse_px; detection on the FOV interior; per matched ROI, the Pearson r of its corrected
    trace with the true calcium; events pooled over matched ROIs (+-2 frames; an ROI excluded upstream has NaN
    events and misses every event of its cell), and ``events_traced`` over the matched ROIs that have events
    (the detector alone); matches as (position of the ROI in the input order, index of the true cell)."""

    registration_rmse_px: float
    detection: RoiDetectionScore
    trace_correlations: np.ndarray
    events: EventScore
    events_traced: EventScore
    matches: list[tuple[int, int]]


def frame_displacement(truth) -> tuple[np.ndarray, np.ndarray]:
    """(T,) y and x displacement of each frame's content averaged over the field of view: the true rigid
    shift plus the mean over pixels of the non-rigid field (control points interpolated as the generator
    does; zero without a non-rigid field)."""
    height, width = truth.footprints.shape[1:]
    wy = interpolation_matrix(NONRIGID_GRID, height).mean(axis=0)
    wx = interpolation_matrix(NONRIGID_GRID, width).mean(axis=0)
    mean_y = np.einsum("i,tij,j->t", wy, np.asarray(truth.nonrigid_y, np.float64), wx)
    mean_x = np.einsum("i,tij,j->t", wy, np.asarray(truth.nonrigid_x, np.float64), wx)
    return np.asarray(truth.shifts_y, np.float64) + mean_y, np.asarray(truth.shifts_x, np.float64) + mean_x


def interior(centroids: np.ndarray, shape: tuple[int, int], margin: float = EDGE_MARGIN_PX) -> np.ndarray:
    """Boolean per (y, x) centroid: at least ``margin`` px inside a frame of ``shape``."""
    high = np.array(shape) - 1 - margin
    return np.all((centroids >= margin) & (centroids <= high), axis=1)


def interior_footprints(
    rois: Sequence[Mapping], truth, y_offset: np.ndarray, x_offset: np.ndarray, shape: tuple[int, int]
) -> tuple[list[int], list, np.ndarray]:
    """The scoreable ROIs and true cells, in the truth's FOV coordinates.

    ``rois``: Segmentation.ROI-like rows (``ypix``, ``xpix``, ``centroid_y``, ``centroid_x``); ``truth``: an
    `OphysTruth`. Returns (positions of the ROIs kept, their footprints, indices of the true cells kept)."""
    c = np.array([round(np.median(truth.shifts_y - y_offset)), round(np.median(truth.shifts_x - x_offset))])
    kept, footprints = [], []
    for position, roi in enumerate(rois):
        if not interior(np.array([[roi["centroid_y"], roi["centroid_x"]]]) - c, shape)[0]:
            continue
        ys, xs = np.asarray(roi["ypix"]) - c[0], np.asarray(roi["xpix"]) - c[1]
        inside = (ys >= 0) & (ys < shape[0]) & (xs >= 0) & (xs < shape[1])
        kept.append(position)
        footprints.append((ys[inside], xs[inside], np.ones(int(inside.sum()))))
    return kept, footprints, np.flatnonzero(interior(truth.centroids, shape))


def score_experiment(
    rois: Sequence[Mapping],
    y_offset: np.ndarray,
    x_offset: np.ndarray,
    corrected: np.ndarray,
    events: np.ndarray,
    truth,
    shape: tuple[int, int],
) -> ExperimentScore:
    """Score one experiment: ``rois`` as in `interior_footprints`, ``corrected`` and ``events`` (n_roi, T) in
    the same order, the whole-frame offsets (scored against :func:`frame_displacement`), its `OphysTruth` and
    frame ``shape``."""
    y_offset, x_offset = np.asarray(y_offset), np.asarray(x_offset)
    rmse = registration_rmse(y_offset, x_offset, *frame_displacement(truth))
    kept, footprints, cells = interior_footprints(rois, truth, y_offset, x_offset, shape)
    detection = score_roi_detection(footprints, truth.footprints[cells], shape)
    matches = [(kept[m.detected_index], int(cells[m.truth_index])) for m in detection.matches]
    correlations = trace_correlations(corrected, truth.calcium, matches)
    rows, true_cells = [r for r, _ in matches], [c for _, c in matches]
    matched_events, matched_spikes = np.asarray(events)[rows], truth.spikes[true_cells]
    traced = ~np.isnan(np.atleast_2d(matched_events)).all(axis=1)
    event_score = event_f1(matched_events, matched_spikes)
    traced_score = event_f1(matched_events[traced], matched_spikes[traced])
    return ExperimentScore(rmse, detection, correlations, event_score, traced_score, matches)
