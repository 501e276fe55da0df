"""Image-based crosstalk estimate of a mesoscope pair (the `enhanced` preset's decrosstalk, docs/methods.md).

Plane A records ``a + c_ab * b`` and plane B ``b + c_ba * a``, where a and b are the light of each plane's
own tissue, pixel by pixel of the raw frames (both planes are scanned by the same beam at once, so a raw
pixel of A and the same raw pixel of B are the same scan point; registration, done per plane, need not keep
that). The pair's two coefficients are estimated once from both raw movies, not per ROI: each
pixel's trace is high-passed in time (minus its running mean over ``decrosstalk_image_highpass_frames``), which
leaves the cells' transients, sparse and independent between the planes; the pixels near the edges are left
out (on registered movies, registration fills or wraps them alike in both planes). The (dA, dB) samples of
every kept pixel and frame are whitened, and the rotation of the whitened pair that minimises the mutual
information of its two outputs is found by a grid search over the angle (for whitened data, minimising the
mutual information is maximising the summed negentropy, here its log-cosh approximation), from a 2 degree grid
down to 0.01 degree around the best angle. The mixing matrix that rotation implies, with each source scaled to unit
weight in its own plane, gives [[1, c_ab], [c_ba, 1]].
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter1d

from brainobs.populate.ophys.extraction import default_chunk_frames

IMAGE_PARAMS: dict[str, Any] = {
    "decrosstalk_image_highpass_frames": 33,  # running-mean window removed from each pixel's trace (3 s at 11 Hz)
    "decrosstalk_image_border_px": 4,  # px left out at each edge of the raw frames
    "decrosstalk_image_max_samples": 100_000,  # (pixel, frame) samples drawn for the estimate
}
_ANGLE_STEPS = np.deg2rad([2.0, 0.1, 0.01])  # the grid's step, coarse to fine; each spans +-1 step of the last


def pair_mixing(c_ab: float, c_ba: float) -> np.ndarray:
    """The mixing matrix [[1, c_ab], [c_ba, 1]]: [plane A, plane B] = mixing @ [own light of A, of B]."""
    return np.array([[1.0, c_ab], [c_ba, 1.0]])


def activity_samples(movie_a: Any, movie_b: Any, params: dict[str, Any], border: int, seed: int = 0) -> np.ndarray:
    """(n, 2) high-passed (dA, dB) values of the same pixel and frame of both (T, H, W) movies (same shape),
    pixels ``border`` px from the edges left out, at most ``decrosstalk_image_max_samples`` drawn at random."""
    n_frames, height, width = (int(n) for n in movie_a.shape)
    if min(height, width) <= 2 * border + 1:
        raise ValueError(f"a {height} x {width} px plane has no pixels left inside a {border} px border")
    window = int(params["decrosstalk_image_highpass_frames"])
    chunk = max(default_chunk_frames((height, width)) // 2, 4 * window)
    keep = max(1, int(params["decrosstalk_image_max_samples"]))
    per_frame = (height - 2 * border) * (width - 2 * border)
    fraction = min(1.0, keep / (per_frame * max(n_frames, 1)))
    rng = np.random.default_rng(seed)
    samples = []
    for start in range(0, n_frames, chunk):
        stop = min(start + chunk, n_frames)
        low, high = max(start - window, 0), min(stop + window, n_frames)  # context for the running mean
        pair = []
        for movie in (movie_a, movie_b):
            block = np.asarray(movie[low:high], dtype=np.float64)[:, border : height - border, border : width - border]
            block = block - uniform_filter1d(block, window, axis=0, mode="nearest")
            pair.append(block[start - low : stop - low].ravel())
        values = np.column_stack(pair)
        samples.append(values[rng.random(len(values)) < fraction])
    if not samples:
        return np.zeros((0, 2))
    return np.concatenate(samples)


def _negentropy(outputs: np.ndarray) -> np.ndarray:
    """Summed log-cosh negentropy approximation of unit-variance outputs (..., n, 2) -> (...)."""
    gaussian = 0.3745672075  # E[log cosh(v)] of a standard normal v
    return ((np.log(np.cosh(outputs)).mean(axis=-2) - gaussian) ** 2).sum(axis=-1)


def _best_angle(whitened: np.ndarray, angles: np.ndarray) -> float:
    scores = [_negentropy(whitened @ np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])) for t in angles]
    return float(angles[int(np.argmax(scores))])


def estimate_mixing(samples: np.ndarray) -> np.ndarray:
    """The pair's mixing matrix [[1, c_ab], [c_ba, 1]] from (n, 2) activity samples (see the module)."""
    samples = np.asarray(samples, dtype=float)
    if samples.ndim != 2 or samples.shape[1] != 2 or len(samples) < 10:
        raise ValueError(f"need (n >= 10, 2) activity samples, got shape {samples.shape}")
    centred = samples - samples.mean(axis=0)
    covariance = np.cov(centred, rowvar=False)
    values, vectors = np.linalg.eigh(covariance)
    if values.min() <= 0:
        raise ValueError("the activity samples of the two planes are degenerate (one plane is constant)")
    whitening = vectors / np.sqrt(values)  # whitened = centred @ whitening
    whitened = centred @ whitening
    best = _best_angle(whitened, np.arange(0.0, np.pi / 2, _ANGLE_STEPS[0]))
    for previous, step in zip(_ANGLE_STEPS[:-1], _ANGLE_STEPS[1:], strict=True):
        best = _best_angle(whitened, best + np.arange(-previous, previous + step / 2, step))
    rotation = np.array([[np.cos(best), -np.sin(best)], [np.sin(best), np.cos(best)]])
    # sources = centred @ whitening @ rotation, so centred = sources @ (whitening @ rotation)^-1
    mixing = np.linalg.inv(whitening @ rotation).T  # columns: the sources' weights in (A, B)
    own_a = int(np.argmax(np.abs(mixing[0]) / np.maximum(np.abs(mixing[1]), 1e-300)))
    column_a, column_b = mixing[:, own_a], mixing[:, 1 - own_a]
    return pair_mixing(column_b[0] / column_b[1], column_a[1] / column_a[0])


def estimate_pair_crosstalk(movie_a: Any, movie_b: Any, params: dict[str, Any]) -> np.ndarray:
    """The pair's mixing matrix [[1, c_ab], [c_ba, 1]] from both raw movies (T, H, W), leaving out
    ``decrosstalk_image_border_px`` px at each edge."""
    border = int(params["decrosstalk_image_border_px"])
    return estimate_mixing(activity_samples(movie_a, movie_b, params, border))
