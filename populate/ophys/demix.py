"""Demixing of overlapping ROIs' traces (Allen method), before neuropil subtraction.

For each frame t, over a group of ROIs that share pixels, with M the (k x n_pixels) binary mask matrix,
F_t the frame and trace_t the ROI traces (means over the masks):

    (M diag(F_t) M^T) d = trace_t * npix,      demixed_t = trace_t * d

(least squares when the matrix is singular). This is Allen's time-dependent-mask model: each pixel's value
is shared among the ROIs covering it in proportion to their traces; an ROI overlapping no other keeps its
trace exactly (d = 1). Frames where a trace of the group is 0 are skipped and keep the raw traces.
ROIs labelled ``union``, ``duplicate`` or ``motion_border``, and ROIs whose trace holds NaN, are not
demixed: their demixed rows are NaN and they do not take part in other ROIs' systems.

QC (on demixed traces): negative-transient ROIs (>= 10 consecutive frames below rolling mean - 3 rolling
std over a trailing 500-frame window, the start padded with the mean of the first 500 frames) and
negative-baseline ROIs (mean + std < 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sparse
from scipy.sparse.csgraph import connected_components

from brainobs.populate.ophys.extraction import apply_to_frames, default_chunk_frames, iter_chunks
from brainobs.populate.ophys.rois import RoiRecord

NOT_DEMIXED_LABELS = frozenset({"union", "duplicate", "motion_border"})
TRANSIENT_WINDOW = 500
TRANSIENT_LENGTH = 10
TRANSIENT_SIGMAS = 3.0


@dataclass(frozen=True)
class DemixResult:
    """Demixed traces of ``n_roi`` ROIs over T frames (movie intensity units).

    demixed_traces: (n_roi, T) float64; NaN rows for ROIs not demixed.
    skipped_frames: (n_roi,) frames where the ROI's group had a zero trace (raw trace kept there).
    groups: tuples of ROI indices solved jointly (overlapping ROIs; isolated ROIs are not listed).
    negative_transient, negative_baseline: (n_roi,) bool QC flags (False for ROIs not demixed).
    """

    demixed_traces: np.ndarray
    skipped_frames: np.ndarray
    groups: list[tuple[int, ...]]
    negative_transient: np.ndarray
    negative_baseline: np.ndarray


def overlap_groups(masks: sparse.csr_matrix, members: np.ndarray) -> list[tuple[int, ...]]:
    """Connected groups (size >= 2) of the ROIs in ``members`` whose masks share pixels."""
    sub = masks[members]
    overlap = (sub @ sub.T).tocoo()
    graph = sparse.coo_matrix((np.ones(overlap.nnz), (overlap.row, overlap.col)), shape=overlap.shape)
    n_groups, label = connected_components(graph, directed=False)
    groups = [tuple(int(i) for i in members[label == g]) for g in range(n_groups)]
    return [g for g in groups if len(g) > 1]


def _pair_matrix(masks: sparse.csr_matrix, groups: list[tuple[int, ...]]) -> tuple[sparse.csr_matrix, list]:
    """Rows = pixel sets whose frame sums fill each group's matrix M diag(F) M^T (one per ROI pair i <= j)."""
    rows = []
    layout = []
    for group in groups:
        entries = []
        for a, i in enumerate(group):
            for b in range(a, len(group)):
                shared = masks[i].multiply(masks[group[b]])
                if shared.nnz:
                    entries.append((a, b, len(rows)))
                    rows.append(shared)
        layout.append(entries)
    return sparse.vstack(rows, format="csr").astype(np.float64), layout


def _solve_frames(matrices: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve a stack of small systems; a singular one falls back to least squares."""
    try:
        return np.linalg.solve(matrices, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.empty_like(rhs)
        for f in range(rhs.shape[0]):
            out[f] = np.linalg.lstsq(matrices[f], rhs[f], rcond=None)[0]
        return out


def rolling_negative_transient(
    trace: np.ndarray, window: int = TRANSIENT_WINDOW, length: int = TRANSIENT_LENGTH, sigmas: float = TRANSIENT_SIGMAS
) -> bool:
    """True when >= ``length`` consecutive frames lie below the trailing rolling mean - ``sigmas`` std."""
    trace = np.asarray(trace, dtype=np.float64)
    centred = trace - trace.mean()
    padded = np.concatenate((np.full(window - 1, centred[:window].mean()), centred))
    first = np.concatenate(([0.0], np.cumsum(padded)))
    second = np.concatenate(([0.0], np.cumsum(padded * padded)))
    mean = (first[window:] - first[:-window]) / window
    var = np.maximum((second[window:] - second[:-window]) / window - mean * mean, 0.0)
    below = (centred < mean - sigmas * np.sqrt(var)).astype(np.int64)
    return bool(below.size >= length and np.convolve(below, np.ones(length, dtype=np.int64), "valid").max() >= length)


def demix_traces(
    movie: Any,
    rois: Sequence[RoiRecord],
    roi_traces: np.ndarray,
    exclusion_labels: Sequence[Iterable[str]] | None = None,
    chunk_frames: int | None = None,
) -> DemixResult:
    """Demix (n_roi, T) ROI traces extracted from the (T, height, width) ``movie`` with masks ``rois``.

    ``exclusion_labels`` (one iterable per ROI) default to each record's labels; pass the labels of all
    stages (e.g. union/duplicate from a classifier) when they live elsewhere.
    """
    roi_traces = np.asarray(roi_traces, dtype=np.float64)
    n_roi = len(rois)
    if roi_traces.shape != (n_roi, movie.shape[0]):
        raise ValueError(f"roi_traces shape {roi_traces.shape} does not match {n_roi} ROIs x {movie.shape[0]} frames")
    labels = [set(r.exclusion_labels) for r in rois] if exclusion_labels is None else [set(x) for x in exclusion_labels]
    if len(labels) != n_roi:
        raise ValueError(f"{len(labels)} label sets for {n_roi} ROIs")
    demixable = np.array(
        [not (labels[i] & NOT_DEMIXED_LABELS) and not np.isnan(roi_traces[i]).any() for i in range(n_roi)], dtype=bool
    )
    frame_shape = (int(movie.shape[1]), int(movie.shape[2]))
    demixed = np.full_like(roi_traces, np.nan)
    demixed[demixable] = roi_traces[demixable]
    skipped = np.zeros(n_roi, dtype=np.int64)
    groups: list[tuple[int, ...]] = []
    if demixable.any():
        n_pixels = frame_shape[0] * frame_shape[1]
        indices = [r.linear_index for r in rois]
        masks = sparse.csr_matrix(
            (
                np.ones(sum(i.size for i in indices)),
                (np.repeat(np.arange(n_roi), [i.size for i in indices]), np.concatenate(indices)),
            ),
            shape=(n_roi, n_pixels),
        )
        groups = overlap_groups(masks, np.flatnonzero(demixable))
    if groups:
        pairs, layout = _pair_matrix(masks, groups)
        npix = np.array([r.npix for r in rois], dtype=np.float64)
        for start, block in iter_chunks(movie, chunk_frames or default_chunk_frames(frame_shape)):
            sums = apply_to_frames(pairs, block)
            frames = slice(start, start + block.shape[0])
            for group, entries in zip(groups, layout, strict=True):
                members = list(group)
                traces = roi_traces[members, frames].T
                system = np.zeros((traces.shape[0], len(members), len(members)))
                for a, b, row in entries:
                    system[:, a, b] = sums[row]
                    system[:, b, a] = sums[row]
                solvable = (traces != 0).all(axis=1)
                skipped[members] += int((~solvable).sum())
                if solvable.any():
                    scale = _solve_frames(system[solvable], traces[solvable] * npix[members])
                    out = traces.copy()
                    out[solvable] = traces[solvable] * scale
                    demixed[members, frames] = out.T
    negative_transient = np.array([demixable[i] and rolling_negative_transient(demixed[i]) for i in range(n_roi)])
    negative_baseline = np.array(
        [demixable[i] and demixed[i].mean() + demixed[i].std() < 0 for i in range(n_roi)], dtype=bool
    )
    return DemixResult(demixed, skipped, groups, negative_transient.astype(bool), negative_baseline)
