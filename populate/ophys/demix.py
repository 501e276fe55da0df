"""Demixing of overlapping ROIs' traces, before neuropil subtraction (Allen ophys_etl ``demix``;
docs/methods.md).

For each frame t, over the ROIs taking part (all ROIs except those labelled ``union``, ``duplicate`` or
``motion_border`` (unless ``keep_motion_border``) and those whose trace holds NaN), with M the (k x n_pixels)
binary mask matrix, F_t the frame and trace_t the ROI traces (means over the masks):

    (M diag(F_t) M^T) d = trace_t * npix,      demixed_t = trace_t * d

(least squares when the matrix is singular). Each pixel's value is shared among the ROIs covering it in
proportion to their traces. The system is block diagonal, so it is solved per group of overlapping ROIs
(an isolated ROI is a group of one); that is the same solution as Allen's one system per frame. A frame
where any taking-part ROI's trace is 0 is dropped for all of them: their demixed value there is 0.

Then, on the demixed traces (Allen's rules):
- negative baseline: ``mean + std < 0``; such a ROI, every ROI whose mask overlaps it, and every ROI
  overlapping those (two hops) are set to NaN (when the last ROI's mask covers the whole frame it is left
  out of that overlap search, as in Allen);
- zero baseline: ``mean < std``; such a ROI is set to NaN;
- negative transient: >= 10 consecutive frames below the trailing 500-frame rolling mean - 3 rolling std
  (the start padded with the mean of the first 500 frames); reported, the trace is kept.
The ROIs set to NaN get the exclusion label ``demix_error``, those with a negative transient
``negative_transient``; their rows stay (NaN) so downstream stages keep one row per ROI.
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
NAN_LABEL = "demix_error"
TRANSIENT_LABEL = "negative_transient"
TRANSIENT_WINDOW = 500
TRANSIENT_LENGTH = 10
TRANSIENT_SIGMAS = 3.0


@dataclass(frozen=True)
class DemixResult:
    """Demixed traces of ``n_roi`` ROIs over T frames (movie intensity units).

    demixed_traces: (n_roi, T) float64; NaN rows for ROIs not demixed and for ``made_nan`` ROIs.
    demixed_before_nan: (n_roi, T) the solver's output (NaN rows only for ROIs not demixed).
    dropped_frames: (T,) bool, frames where a taking-part trace is 0 (demixed value 0 for every ROI).
    groups: tuples of ROI indices solved jointly (overlapping ROIs; isolated ROIs are not listed).
    Per ROI, (n_roi,) bool, False for ROIs not demixed: negative_transient; negative_baseline
    (``mean + std < 0``); zero_baseline (``mean < std``); made_nan (set to NaN: negative baseline with
    its two-hop overlap neighbours, and zero baseline).
    """

    demixed_traces: np.ndarray
    demixed_before_nan: np.ndarray
    dropped_frames: np.ndarray
    groups: list[tuple[int, ...]]
    negative_transient: np.ndarray
    negative_baseline: np.ndarray
    zero_baseline: np.ndarray
    made_nan: np.ndarray

    @property
    def exclusion_labels(self) -> list[tuple[str, ...]]:
        """Per ROI, the labels demixing gives it (``demix_error``, ``negative_transient``)."""
        return [
            tuple(label for label, flag in ((NAN_LABEL, nan), (TRANSIENT_LABEL, transient)) if flag)
            for nan, transient in zip(self.made_nan, self.negative_transient, strict=True)
        ]


def overlap_groups(masks: sparse.csr_matrix, members: np.ndarray) -> list[tuple[int, ...]]:
    """Connected groups of the ROIs in ``members`` whose masks share pixels (isolated ROIs as groups of one)."""
    sub = masks[members]
    overlap = (sub @ sub.T).tocoo()
    graph = sparse.coo_matrix((np.ones(overlap.nnz), (overlap.row, overlap.col)), shape=overlap.shape)
    n_groups, label = connected_components(graph, directed=False)
    return [tuple(int(i) for i in members[label == g]) for g in range(n_groups)]


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


def two_hop_neighbours(masks: sparse.csr_matrix, seeds: np.ndarray) -> np.ndarray:
    """Bool (n,): the seed ROIs, the ROIs whose masks overlap a seed, and the ROIs overlapping those.

    As Allen's ``plot_overlap_masks_lengthOne``, a last mask covering the whole frame is left out of the
    overlap search (it is still a seed, and reached only as one)."""
    n = masks.shape[0]
    reached = np.zeros(n, dtype=bool)
    if not seeds.any():
        return reached
    searched = n - 1 if n and masks[n - 1].nnz == masks.shape[1] else n
    overlap = (masks[:searched] @ masks[:searched].T).toarray() > 0
    for seed in np.flatnonzero(seeds):
        reached[seed] = True
        if seed >= searched:
            continue
        first = overlap[seed]
        reached[:searched] |= first | overlap[first].any(axis=0)
    return reached


def demix_traces(
    movie: Any,
    rois: Sequence[RoiRecord],
    roi_traces: np.ndarray,
    exclusion_labels: Sequence[Iterable[str]] | None = None,
    chunk_frames: int | None = None,
    keep_motion_border: bool = False,
) -> DemixResult:
    """Demix (n_roi, T) ROI traces extracted from the (T, height, width) ``movie`` with masks ``rois``.

    ``exclusion_labels`` (one iterable per ROI) default to each record's labels; pass the labels of all
    stages (e.g. union/duplicate from a classifier) when they live elsewhere. ``keep_motion_border``: ROIs
    labelled ``motion_border`` take part (the ``enhanced`` preset's ``traces_keep_motion_border``).
    """
    roi_traces = np.asarray(roi_traces, dtype=np.float64)
    n_roi, n_frames = len(rois), int(movie.shape[0])
    if roi_traces.shape != (n_roi, n_frames):
        raise ValueError(f"roi_traces shape {roi_traces.shape} does not match {n_roi} ROIs x {n_frames} frames")
    labels = [set(r.exclusion_labels) for r in rois] if exclusion_labels is None else [set(x) for x in exclusion_labels]
    if len(labels) != n_roi:
        raise ValueError(f"{len(labels)} label sets for {n_roi} ROIs")
    not_demixed = NOT_DEMIXED_LABELS - {"motion_border"} if keep_motion_border else NOT_DEMIXED_LABELS
    demixable = np.array(
        [not (labels[i] & not_demixed) and not np.isnan(roi_traces[i]).any() for i in range(n_roi)], dtype=bool
    )
    frame_shape = (int(movie.shape[1]), int(movie.shape[2]))
    n_pixels = frame_shape[0] * frame_shape[1]
    indices = [r.linear_index for r in rois]
    masks = sparse.csr_matrix(
        (
            np.ones(sum(i.size for i in indices)),
            (np.repeat(np.arange(n_roi), [i.size for i in indices]), np.concatenate(indices) if indices else []),
        ),
        shape=(n_roi, n_pixels),
    )
    dropped = (roi_traces[demixable] == 0).any(axis=0)
    demixed = np.full_like(roi_traces, np.nan)
    demixed[demixable] = 0.0
    groups = overlap_groups(masks, np.flatnonzero(demixable)) if demixable.any() else []
    if groups and not dropped.all():
        pairs, layout = _pair_matrix(masks, groups)
        npix = np.array([r.npix for r in rois], dtype=np.float64)
        for start, block in iter_chunks(movie, chunk_frames or default_chunk_frames(frame_shape)):
            frames = np.arange(start, start + block.shape[0])
            solved = frames[~dropped[frames]]
            if solved.size == 0:
                continue
            sums = apply_to_frames(pairs, block[solved - start])
            for group, entries in zip(groups, layout, strict=True):
                members = list(group)
                traces = roi_traces[members][:, solved].T
                system = np.zeros((solved.size, len(members), len(members)))
                for a, b, row in entries:
                    system[:, a, b] = sums[row]
                    system[:, b, a] = sums[row]
                scale = _solve_frames(system, traces * npix[members])
                demixed[np.ix_(members, solved)] = (traces * scale).T
    before_nan = demixed.copy()
    rows = np.flatnonzero(demixable)
    mean = np.zeros(n_roi)
    std = np.zeros(n_roi)
    mean[rows], std[rows] = demixed[rows].mean(axis=1), demixed[rows].std(axis=1)
    negative_baseline = demixable & (mean + std < 0)
    zero_baseline = demixable & (mean < std)
    made_nan = np.zeros(n_roi, dtype=bool)
    made_nan[rows] = two_hop_neighbours(masks[rows], negative_baseline[rows])
    made_nan |= zero_baseline
    demixed[made_nan] = np.nan
    negative_transient = np.array([demixable[i] and rolling_negative_transient(before_nan[i]) for i in range(n_roi)])
    return DemixResult(
        demixed,
        before_nan,
        dropped,
        [g for g in groups if len(g) > 1],
        negative_transient.astype(bool),
        negative_baseline,
        zero_baseline,
        made_nan,
    )
