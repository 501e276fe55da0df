"""Segmentation: suite2p sparse detection on a registered movie, without classifier or extraction.

The movie is averaged in contiguous bins of ``nframes // nbinned`` frames, ``nbinned = int(nframes /
(3.7 s * fs))``; the binned movie is high-passed in time (running mean over
``segmentation_highpass_time_bins`` bins), normalised by the per-pixel standard deviation of its
temporal differences, and handed to suite2p ``sparsery`` (multi-scale when
``segmentation_spatial_scale`` is 0). suite2p ``roi_stats`` then drops ROIs that overlap others by more
than ``segmentation_max_overlap``; overlapping ROIs are otherwise kept. The Allen post-processing
(aspect ratio, binarisation, exclusion labels) happens downstream, in `brainobs.populate.ophys.rois`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from brainobs.populate.ophys.registration import open_registered_movie

logger = logging.getLogger(__name__)

MIN_BINNED_FRAMES = 2  # the fewest bins with a temporal-difference noise estimate; sparse detection wants ~20+
# fewer bins than this make detection unreliable: dim or slow cells are missed (Allen's 3.7 s bins leave 17 in a
# 2000-frame movie at 31 Hz, and ROI F1 drops, issue #19); the QC check ``detection_bins`` warns below it
RELIABLE_BINNED_FRAMES = 50
READ_BATCH_FRAMES = 500


class SegmentationError(ValueError):
    """A registered movie that cannot be segmented; the message names the file and the problem."""


class DetectedRoi(TypedDict):
    """One suite2p ROI as a suite2p-like ``stat`` dict, in full-frame pixel coordinates."""

    ypix: np.ndarray  # int32 row of each pixel
    xpix: np.ndarray  # int32 column of each pixel
    lam: np.ndarray  # float32 weight of each pixel
    med: tuple[int, int]  # suite2p's median pixel (row, column)
    centroid: tuple[float, float]  # weight-averaged (row, column)


def binning(n_frames: int, fs: float, bin_duration_s: float) -> tuple[int, int]:
    """``(nbinned, bin_size)`` for detection: ``nbinned = int(n_frames / (bin_duration_s * fs))``,
    ``bin_size = n_frames // nbinned``; nbinned is 0 when the movie is shorter than one bin."""
    nbinned = int(n_frames / (bin_duration_s * fs))
    return nbinned, (n_frames // nbinned if nbinned else 0)


def bins_warning(n_frames: int, fs: float, bin_duration_s: float) -> str:
    """Why detection on a movie of ``n_frames`` at ``fs`` Hz is unreliable ('' when it holds enough bins)."""
    nbinned, _ = binning(n_frames, fs, bin_duration_s)
    if nbinned >= RELIABLE_BINNED_FRAMES:
        return ""
    return (
        f"{n_frames} frames at {fs:g} Hz give {nbinned} detection bins of {bin_duration_s:g} s, fewer than the "
        f"{RELIABLE_BINNED_FRAMES} reliable detection needs: dim or slow cells may be missed (a longer movie, or "
        "the enhanced preset's shorter bins)"
    )


def bin_movie(movie: np.ndarray, bin_size: int, nbinned: int) -> np.ndarray:
    """Mean of consecutive ``bin_size``-frame bins, read in batches: (nbinned, height, width) float32."""
    _, height, width = movie.shape
    binned = np.empty((nbinned, height, width), np.float32)
    bins_per_batch = max(1, READ_BATCH_FRAMES // bin_size)
    for first in range(0, nbinned, bins_per_batch):
        last = min(first + bins_per_batch, nbinned)
        frames = np.asarray(movie[first * bin_size : last * bin_size], dtype=np.float32)
        binned[first:last] = frames.reshape(last - first, bin_size, height, width).mean(axis=1)
    return binned


def _to_roi(stat: dict[str, Any]) -> DetectedRoi:
    ypix, xpix = stat["ypix"].astype(np.int32), stat["xpix"].astype(np.int32)
    lam = stat["lam"].astype(np.float32)
    weights = lam / lam.sum() if lam.sum() > 0 else np.full(lam.size, 1.0 / lam.size)
    return DetectedRoi(
        ypix=ypix,
        xpix=xpix,
        lam=lam,
        med=(int(stat["med"][0]), int(stat["med"][1])),
        centroid=(float(weights @ ypix), float(weights @ xpix)),
    )


def segment_movie(
    registered_path: str | Path, shape: tuple[int, int, int], fs: float, params: dict[str, Any]
) -> list[DetectedRoi]:
    """Detect ROIs in a registered int16 movie (`register_movie`'s output) of ``shape`` at ``fs`` Hz.

    ``params`` holds the ``segmentation_*`` keys of `ALLEN_OPHYS_PARAMS`. Returns ROIs in suite2p's
    order (most active first); an empty list when nothing passes the detection threshold.
    Raises `SegmentationError` when the movie is too short for ``MIN_BINNED_FRAMES`` bins.
    """
    movie = open_registered_movie(registered_path, shape)
    n_frames, height, width = movie.shape
    nbinned, bin_size = binning(n_frames, fs, params["segmentation_bin_duration_s"])
    if nbinned < MIN_BINNED_FRAMES:
        raise SegmentationError(
            f"movie {registered_path}: {n_frames} frames at {fs} Hz give {nbinned} bins of "
            f"{params['segmentation_bin_duration_s']} s; at least {MIN_BINNED_FRAMES} are needed"
        )
    warning = bins_warning(n_frames, fs, params["segmentation_bin_duration_s"])
    if warning:
        logger.warning("%s: %s", registered_path, warning)
    from suite2p.detection.sparsedetect import sparsery
    from suite2p.detection.stats import roi_stats
    from suite2p.detection.utils import standard_deviation_over_time, temporal_high_pass_filter

    binned = bin_movie(movie, bin_size, nbinned)
    binned = temporal_high_pass_filter(binned, int(params["segmentation_highpass_time_bins"]))
    noise = standard_deviation_over_time(binned, batch_size=1000)
    detection, stats = sparsery(
        binned,
        noise,
        highpass_neuropil=int(params["segmentation_highpass_neuropil_px"]),
        spatial_scale=int(params["segmentation_spatial_scale"]),
        threshold_scaling=float(params["segmentation_threshold_scaling"]),
        max_ROIs=int(params["segmentation_max_rois"]),
    )
    logger.info(
        "%s: %d bins of %d frames, spatial scale %s px, %d ROIs before overlap removal",
        registered_path,
        nbinned,
        bin_size,
        detection["spatscale_pix"],
        len(stats),
    )
    if not stats:
        return []
    diameter = float(params["segmentation_diameter_px"])
    stats = roi_stats(
        np.array(stats),
        height,
        width,
        diameter=[diameter, diameter],
        max_overlap=float(params["segmentation_max_overlap"]),
        do_soma_crop=bool(params["segmentation_soma_crop"]),
        npix_norm_min=float(params["segmentation_npix_norm_min"]),
        npix_norm_max=float(params["segmentation_npix_norm_max"]),
    )
    return [_to_roi(stat) for stat in stats]
