"""ROI and neuropil traces from a motion-corrected movie (Allen trace extraction).

ROI trace = mean of the movie over the ROI's binary mask pixels, per frame. Neuropil mask = the ROI mask
dilated 13 times with a 3x3 structuring element, minus the union of ALL ROI masks, minus the motion border.

Exclusion labels added here: ``empty_roi_mask`` (the ROI has no pixels), ``empty_neuropil_mask`` (nothing
is left of its neuropil mask), ``zero_pixels`` (every pixel of the ROI is 0 in every frame, e.g. an ROI in
the blank margin of a registered movie). An excluded ROI -- one with any of these labels or with the
``motion_border`` label from post-processing -- gets all-NaN ROI and neuropil traces; with
``keep_motion_border`` (the ``enhanced`` preset's ``traces_keep_motion_border``) a ``motion_border`` ROI keeps
its traces, and its label.

The movie is read in chunks of frames (any (T, height, width) array-like that slices along frames: numpy
array, ``np.memmap``, h5py dataset), so memory stays bounded (about 128 MiB of float32 frames at a time).
Both trace sets come from one sparse (scipy CSR) averaging matrix, applied to each chunk frame by frame by a
parallel numba kernel: scipy's own product would first copy the chunk transposed, which costs more than the
product itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import scipy.sparse as sparse
from scipy.ndimage import binary_dilation

from brainobs.populate.ophys.rois import MotionBorder, RoiRecord

NEUROPIL_DILATIONS = 13
CHUNK_BYTES = 1 << 27
TRACE_EXCLUDING_LABELS = frozenset({"motion_border", "empty_roi_mask", "empty_neuropil_mask", "zero_pixels"})


@dataclass(frozen=True)
class ExtractionResult:
    """Traces of ``n_roi`` ROIs over T frames, in movie intensity units.

    roi_traces, neuropil_traces: (n_roi, T) float64; all-NaN rows for excluded ROIs.
    neuropil_pixels: per ROI, (ypix, xpix) int64 arrays of its neuropil mask.
    exclusion_labels: per ROI, the labels found here (sorted tuple; empty when none).
    excluded: (n_roi,) bool, True for the ROIs whose traces are NaN.
    """

    roi_traces: np.ndarray
    neuropil_traces: np.ndarray
    neuropil_pixels: list[tuple[np.ndarray, np.ndarray]]
    exclusion_labels: list[tuple[str, ...]]
    excluded: np.ndarray


def neuropil_masks(
    rois: Sequence[RoiRecord], frame_shape: tuple[int, int], motion_border: Any
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ypix, xpix) of each ROI's neuropil mask: 13 dilations (3x3) minus all ROIs minus the border."""
    height, width = frame_shape
    allowed = MotionBorder.coerce(motion_border).valid_mask(frame_shape)
    for roi in rois:
        allowed[roi.ypix, roi.xpix] = False
    structure = np.ones((3, 3), dtype=bool)
    pad = NEUROPIL_DILATIONS
    masks = []
    for roi in rois:
        if roi.npix == 0:
            masks.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
            continue
        row0, col0 = max(roi.y - pad, 0), max(roi.x - pad, 0)
        row1, col1 = min(roi.y + roi.height + pad, height), min(roi.x + roi.width + pad, width)
        crop = np.zeros((row1 - row0, col1 - col0), dtype=bool)
        crop[roi.ypix - row0, roi.xpix - col0] = True
        crop = binary_dilation(crop, structure=structure, iterations=NEUROPIL_DILATIONS)
        crop &= allowed[row0:row1, col0:col1]
        rows, cols = np.nonzero(crop)
        masks.append((rows.astype(np.int64) + row0, cols.astype(np.int64) + col0))
    return masks


def mean_weights(pixel_sets: Sequence[np.ndarray], n_pixels: int) -> sparse.csr_matrix:
    """(n_sets, n_pixels) float64 CSR matrix averaging each set of flat pixel indices (empty rows allowed)."""
    sizes = [p.size for p in pixel_sets]
    rows = np.repeat(np.arange(len(pixel_sets)), sizes)
    cols = np.concatenate([np.zeros(0, dtype=np.int64), *(np.asarray(p, dtype=np.int64) for p in pixel_sets)])
    values = np.repeat(np.array([1.0 / n if n else 0.0 for n in sizes]), sizes)
    return sparse.csr_matrix((values, (rows, cols)), shape=(len(pixel_sets), n_pixels))


@numba.njit(parallel=True, cache=True)
def _csr_times_frames(indptr, indices, data, block, out):
    """out[r, f] = sum_j data[j] * block[f, indices[j]] over row r of a CSR matrix, for every frame f."""
    n_rows = indptr.size - 1
    for f in numba.prange(block.shape[0]):
        frame = block[f]
        for r in range(n_rows):
            acc = 0.0
            for j in range(indptr[r], indptr[r + 1]):
                acc += data[j] * frame[indices[j]]
            out[r, f] = acc


def apply_to_frames(weights: sparse.csr_matrix, block: np.ndarray) -> np.ndarray:
    """(n_rows, k) float64 = weights @ block.T for a float64 CSR matrix and a (k, n_pixels) block, computed
    frame by frame (no transposed copy of the block)."""
    weights.sort_indices()
    out = np.empty((weights.shape[0], block.shape[0]))
    _csr_times_frames(weights.indptr, weights.indices, weights.data, np.ascontiguousarray(block), out)
    return out


def default_chunk_frames(frame_shape: tuple[int, int], max_bytes: int = CHUNK_BYTES) -> int:
    """Frames per chunk so that a float32 chunk stays under ``max_bytes``."""
    return max(1, max_bytes // (4 * frame_shape[0] * frame_shape[1]))


def iter_chunks(movie: Any, chunk_frames: int):
    """Yield (first_frame, float32 array (k, height * width)) chunks of the movie."""
    n_frames, height, width = movie.shape
    for start in range(0, n_frames, chunk_frames):
        block = np.asarray(movie[start : start + chunk_frames], dtype=np.float32)
        yield start, block.reshape(block.shape[0], height * width)


def extract_traces(
    movie: Any,
    rois: Sequence[RoiRecord],
    motion_border: Any,
    chunk_frames: int | None = None,
    keep_motion_border: bool = False,
) -> ExtractionResult:
    """ROI and neuropil traces of ``rois`` from a (T, height, width) motion-corrected movie.

    ``rois`` are post-processed ROI records (:func:`brainobs.populate.ophys.rois.postprocess_rois`) on
    the movie's frame shape; ``motion_border`` in px (a MotionBorder or equivalent). ``keep_motion_border``:
    ROIs labelled ``motion_border`` get traces too (module docstring).
    """
    if len(movie.shape) != 3:
        raise ValueError(f"movie must be (frames, height, width), got shape {movie.shape}")
    n_frames, height, width = (int(n) for n in movie.shape)
    frame_shape = (height, width)
    for roi in rois:
        if tuple(roi.frame_shape) != frame_shape:
            raise ValueError(
                f"ROI {roi.roi_index} was made for frames {roi.frame_shape}, movie frames are {frame_shape}"
            )
    neuropil = neuropil_masks(rois, frame_shape, motion_border)
    labels = [set() for _ in rois]
    for i, roi in enumerate(rois):
        if roi.npix == 0:
            labels[i].add("empty_roi_mask")
        if neuropil[i][0].size == 0:
            labels[i].add("empty_neuropil_mask")
    excluding = TRACE_EXCLUDING_LABELS - {"motion_border"} if keep_motion_border else TRACE_EXCLUDING_LABELS
    usable = [not (labels[i] | set(roi.exclusion_labels)) & excluding for i, roi in enumerate(rois)]
    empty = np.zeros(0, dtype=np.int64)
    roi_sets = [roi.linear_index if ok else empty for roi, ok in zip(rois, usable, strict=True)]
    neuropil_sets = [ys * width + xs if ok else empty for (ys, xs), ok in zip(neuropil, usable, strict=True)]
    weights = mean_weights(roi_sets + neuropil_sets, height * width)
    n_roi = len(rois)
    traces = np.zeros((2 * n_roi, n_frames))
    lit = np.zeros(n_roi, dtype=bool)
    for start, block in iter_chunks(movie, chunk_frames or default_chunk_frames(frame_shape)):
        chunk = apply_to_frames(weights, block)
        traces[:, start : start + block.shape[0]] = chunk
        lit |= (chunk[:n_roi] != 0).any(axis=1)
    for i in range(n_roi):
        if usable[i] and not lit[i]:
            labels[i].add("zero_pixels")
    excluded = np.array(
        [bool((labels[i] | set(roi.exclusion_labels)) & excluding) for i, roi in enumerate(rois)], dtype=bool
    )
    roi_traces, neuropil_traces = traces[:n_roi], traces[n_roi:]
    roi_traces[excluded] = np.nan
    neuropil_traces[excluded] = np.nan
    return ExtractionResult(roi_traces, neuropil_traces, neuropil, [tuple(sorted(s)) for s in labels], excluded)
