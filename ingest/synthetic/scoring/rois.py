"""Score ROI detection and motion correction against a synthetic ground truth.

ROI detection: every footprint, true or detected, is binarised at ``MASK_FRACTION`` (0.2) of its own
peak weight. suite2p ROIs carry a wide, faint halo of correlated pixels; cut at the same relative level
as the truth, detected and true masks are compared like for like (a Gaussian footprint cut at 0.2 x peak
spans 1.8 sigma). Boolean masks (e.g. after the Allen post-processing) pass through unchanged. A
detected ROI and a true cell can match when the centroids of their binary masks lie within
``MAX_CENTROID_DISTANCE_PX`` and their intersection-over-union is at least ``MIN_IOU``; among the pairs
that can match, a one-to-one matching of largest total IoU is chosen (Hungarian algorithm).
recall = matched / true cells, precision = matched / detected ROIs, F1 their harmonic mean.

Registration: the estimated and the true per-frame shifts differ by a constant (the position of the
reference image), which is removed before the root-mean-square error is taken. The same constant moves
true footprints, drawn in the motion-free field of view, onto the registered movie
(`footprints_in_reference_frame`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.ndimage import shift as shift_image
from scipy.optimize import linear_sum_assignment

MASK_FRACTION = 0.2
MAX_CENTROID_DISTANCE_PX = 4.0
MIN_IOU = 0.5


@dataclass(frozen=True)
class RoiMatch:
    """A detected ROI paired with a true cell (indices into the two inputs)."""

    detected_index: int
    truth_index: int
    iou: float
    centroid_distance_px: float


@dataclass(frozen=True)
class RoiDetectionScore:
    """Recall, precision and F1 of a detection, with its one-to-one matching."""

    n_detected: int
    n_truth: int
    recall: float
    precision: float
    f1: float
    matches: list[RoiMatch]

    @property
    def unmatched_truth(self) -> list[int]:
        matched = {match.truth_index for match in self.matches}
        return [index for index in range(self.n_truth) if index not in matched]

    @property
    def unmatched_detected(self) -> list[int]:
        matched = {match.detected_index for match in self.matches}
        return [index for index in range(self.n_detected) if index not in matched]


Footprints = np.ndarray | Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]


def binarize_footprints(footprints: Footprints, frame_shape: tuple[int, int], fraction: float) -> sparse.csr_matrix:
    """Binary masks, one row per footprint over the flattened frame: ``weight > fraction * peak``.

    ``footprints`` is a dense (n, height, width) stack or a sequence of ``(ypix, xpix, weights)``.
    """
    height, width = frame_shape
    if isinstance(footprints, np.ndarray):
        if footprints.ndim != 3 or footprints.shape[1:] != (height, width):
            raise ValueError(f"footprint stack {footprints.shape} is not (n, {height}, {width})")
        flat = footprints.reshape(len(footprints), height * width).astype(np.float64)
        peaks = flat.max(axis=1, initial=0.0)
        return sparse.csr_matrix((flat > fraction * peaks[:, None]) & (flat > 0), dtype=np.float64)
    rows, cols = [], []
    for index, (ypix, xpix, weights) in enumerate(footprints):
        weights = np.asarray(weights, np.float64)
        keep = (weights > fraction * weights.max(initial=0.0)) & (weights > 0)
        if np.any((ypix < 0) | (ypix >= height) | (xpix < 0) | (xpix >= width)):
            raise ValueError(f"footprint {index} has pixels outside the {height}x{width} frame")
        cols.append(np.asarray(ypix)[keep] * width + np.asarray(xpix)[keep])
        rows.append(np.full(int(keep.sum()), index))
    n = len(rows)
    if n == 0:
        return sparse.csr_matrix((0, height * width))
    row, col = np.concatenate(rows), np.concatenate(cols)
    return sparse.csr_matrix((np.ones(row.size), (row, col)), shape=(n, height * width))


def _centroids(masks: sparse.csr_matrix, width: int) -> np.ndarray:
    counts = np.maximum(np.asarray(masks.sum(axis=1)).ravel(), 1)
    flat = np.arange(masks.shape[1])
    rows = np.asarray(masks @ (flat // width)).ravel() / counts
    cols = np.asarray(masks @ (flat % width)).ravel() / counts
    return np.column_stack([rows, cols])


def score_roi_detection(
    detected: Footprints,
    truth: Footprints,
    frame_shape: tuple[int, int],
    fraction: float = MASK_FRACTION,
    max_centroid_distance_px: float = MAX_CENTROID_DISTANCE_PX,
    min_iou: float = MIN_IOU,
) -> RoiDetectionScore:
    """Match detected ROIs to true cells; both given as footprints (see `binarize_footprints`).

    Both sides are binarised the same way, at ``fraction`` of each footprint's peak weight; a boolean
    or 0/1 mask passes through unchanged.
    """
    a = binarize_footprints(detected, frame_shape, fraction)
    b = binarize_footprints(truth, frame_shape, fraction)
    n_detected, n_truth, width = a.shape[0], b.shape[0], frame_shape[1]
    matches: list[RoiMatch] = []
    if n_detected and n_truth:
        intersection = (a @ b.T).toarray()
        union = np.asarray(a.sum(axis=1)) + np.asarray(b.sum(axis=1)).T - intersection
        iou = intersection / np.maximum(union, 1)
        distance = np.linalg.norm(_centroids(a, width)[:, None] - _centroids(b, width)[None], axis=2)
        eligible = (iou >= min_iou) & (distance <= max_centroid_distance_px)
        rows, cols = linear_sum_assignment(np.where(eligible, -iou, 0.0))
        matches = [
            RoiMatch(int(r), int(c), float(iou[r, c]), float(distance[r, c]))
            for r, c in zip(rows, cols, strict=True)
            if eligible[r, c]
        ]
    recall = len(matches) / n_truth if n_truth else 0.0
    precision = len(matches) / n_detected if n_detected else 0.0
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    return RoiDetectionScore(n_detected, n_truth, recall, precision, f1, matches)


def registration_rmse(
    estimated_y: np.ndarray,
    estimated_x: np.ndarray,
    true_y: np.ndarray,
    true_x: np.ndarray,
    sign: int = 1,
    valid: np.ndarray | None = None,
) -> float:
    """Root-mean-square 2-D error (px) of estimated shifts after removing their constant offset.

    Estimated shifts use suite2p's convention (`brainobs.populate.ophys.registration`: +x = the frame's
    content sits further right than in the reference). ``sign=1`` when the truth gives the
    displacement of the content in the same sense, ``sign=-1`` when it gives the correction instead.
    The constant is the median residual per axis; ``valid`` (bool per frame) restricts the frames scored.
    """
    residual = np.stack(
        [
            np.asarray(estimated_y, np.float64) - sign * np.asarray(true_y, np.float64),
            np.asarray(estimated_x, np.float64) - sign * np.asarray(true_x, np.float64),
        ]
    )
    if valid is not None:
        residual = residual[:, np.asarray(valid, bool)]
    if residual.shape[1] == 0:
        raise ValueError("no frames to score")
    residual -= np.median(residual, axis=1, keepdims=True)
    return float(np.sqrt(np.mean(np.sum(residual**2, axis=0))))


def _reference_offset(
    estimated_y: np.ndarray, estimated_x: np.ndarray, true_y: np.ndarray, true_x: np.ndarray, sign: int
) -> tuple[float, float]:
    """Median of ``estimated - sign * true`` per axis: where the registration reference sits."""
    return (
        float(np.median(np.asarray(estimated_y, np.float64) - sign * np.asarray(true_y, np.float64))),
        float(np.median(np.asarray(estimated_x, np.float64) - sign * np.asarray(true_x, np.float64))),
    )


def footprints_in_reference_frame(
    footprints: np.ndarray,
    estimated_y: np.ndarray,
    estimated_x: np.ndarray,
    true_y: np.ndarray,
    true_x: np.ndarray,
    sign: int = 1,
) -> np.ndarray:
    """True (n, height, width) footprints moved onto the registered movie (bilinear, sub-pixel).

    A registered frame is the raw frame rolled by minus the estimated shift, so the motion-free scene
    appears displaced by minus the constant between estimated and true shifts (see `registration_rmse`
    for ``sign``).
    """
    offset_y, offset_x = _reference_offset(estimated_y, estimated_x, true_y, true_x, sign)
    return np.stack([shift_image(f, (-offset_y, -offset_x), order=1) for f in np.asarray(footprints, np.float64)])
