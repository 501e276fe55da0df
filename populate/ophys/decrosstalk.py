"""Decrosstalk of paired mesoscope planes (Allen's ophys_etl decrosstalk method, docs/methods.md).

Two planes of a pair are imaged simultaneously and light of each leaks into the other. For every ROI of the
signal plane, its mask gives two raw traces: one from the signal plane's movie, one from the paired plane's
movie. A 2x2 independent component analysis (FastICA on the whitened pair) unmixes them into the signal
source and the crosstalk source; the mixing matrix is scaled so each row sums to 1, so ``mixing[0, 1]`` is
the fraction of the signal plane's trace that comes from the paired plane. An ROI whose ICA does not give
off-diagonal terms in [0, max] within the allowed tries takes the mean mixing matrix of the converged ROIs.
The unmixed signal is clipped from below at the rolling mean - 2 sigma of its inactive frames.

Activity is found as Allen does: the half-sample mode and the spread below it give a noise model; a frame
is an event when the summed log tail probability of 5 frames passes a threshold; the active frames are the
event bouts widened by ``padding`` frames each side. The ghost test: an ROI is a cell only when some of its
active frames in the signal channel lie more than ``window`` frames from every active frame of the
crosstalk channel; otherwise it is a ghost of a cell of the paired plane.

Labels (Allen's names): ``decrosstalk_invalid_raw`` (NaN or empty raw trace), ``decrosstalk_invalid_raw_active``
(no activity in the raw signal), ``decrosstalk_invalid_unmixed`` (NaN unmixed trace, or no ROI converged),
``decrosstalk_invalid_unmixed_active`` (no activity in the unmixed signal), ``decrosstalk_ghost``.

The `enhanced` preset's alternative (``decrosstalk_method`` "image", `decrosstalk_image`) replaces the per-ROI ICA
by one mixing matrix estimated for the pair from both raw movies, and reads each ROI's partner trace at the same
scan points as its own; clipping and activity stay Allen's. Its ghost test adds the leak test
(``decrosstalk_leak_ratio``): an unmixed ROI is also a ghost when the partner's light in its signal trace varies
more than ``decrosstalk_leak_ratio`` times its own plane's (variances less the frame-to-frame noise), which
finds ghosts that also cover a cell of their own plane and ghosts whose unmixed trace keeps events of its own.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import linregress, norm
from sklearn.decomposition import FastICA

from brainobs.populate.ophys.decrosstalk_image import estimate_pair_crosstalk
from brainobs.populate.ophys.extraction import apply_to_frames, default_chunk_frames, iter_chunks, mean_weights
from brainobs.populate.ophys.rois import RoiRecord

GHOST = "decrosstalk_ghost"
INVALID_RAW = "decrosstalk_invalid_raw"
INVALID_RAW_ACTIVE = "decrosstalk_invalid_raw_active"
INVALID_UNMIXED = "decrosstalk_invalid_unmixed"
INVALID_UNMIXED_ACTIVE = "decrosstalk_invalid_unmixed_active"
LABELS = (GHOST, INVALID_RAW, INVALID_RAW_ACTIVE, INVALID_UNMIXED, INVALID_UNMIXED_ACTIVE)

DECROSSTALK_PARAMS: dict[str, Any] = {
    "decrosstalk_event_kernel": 5,  # frames whose log tail probabilities are summed
    "decrosstalk_event_threshold": 14.0,  # summed -log tail probability that makes an event (Allen th_ag)
    "decrosstalk_event_padding": 20,  # frames added each side of an event bout (Allen len_ne)
    "decrosstalk_ica_tries": 11,  # FastICA runs before an ROI is declared not converged (the last never counts)
    "decrosstalk_max_offdiagonal": 0.3,  # converged: both off-diagonal mixing terms in [0, this]
    "decrosstalk_clip_window": 1980,  # frames, rolling window of the clipping threshold
    "decrosstalk_clip_sigmas": 2.0,  # clip below rolling mean - this many rolling std of inactive frames
    "decrosstalk_ghost_window": 2,  # frames: a signal event this close to a crosstalk event is not independent
}


@dataclass(frozen=True)
class DecrosstalkResult:
    """Per ROI of the signal plane (n_roi rows, position i = ROI i).

    mixing: (n_roi, 2, 2), rows sum to 1: [signal, crosstalk] raw = mixing @ sources (NaN when invalid raw).
    converged: (n_roi,) bool, the ROI's own ICA converged (False: the mean matrix was used).
    unmixed: (n_roi, T) clipped unmixed signal trace (NaN where the ROI was dropped before unmixing).
    labels: per ROI, the decrosstalk labels (sorted tuple; empty for a cell).
    raw_ratio, unmixed_ratio: (n_roi,) 100 x slope of crosstalk on signal over the signal's active frames.
    crosstalk: median over converged ROIs of mixing[0, 1], the paired plane's share of this plane's light
    (NaN when none converged).
    """

    mixing: np.ndarray
    converged: np.ndarray
    unmixed: np.ndarray
    labels: list[tuple[str, ...]]
    raw_ratio: np.ndarray
    unmixed_ratio: np.ndarray
    crosstalk: float


# ------------------------------------------------------------------------------------ activity


def half_sample_mode(values: np.ndarray) -> float:
    """Robust mode: repeatedly keep the densest half of the sorted values (the half-sample mode)."""
    data = np.sort(np.asarray(values, dtype=float).ravel())
    while data.size > 3:
        half = (data.size + 1) // 2
        widths = data[half - 1 :] - data[: data.size - half + 1]
        start = int(np.argmin(widths))
        data = data[start : start + half]
    if data.size == 3:
        low, high = data[1] - data[0], data[2] - data[1]
        return float(data[:2].mean() if low < high else data[1:].mean() if high < low else data[1])
    return float(data.mean())


def event_evidence(trace: np.ndarray, kernel: int) -> np.ndarray:
    """Per frame, -sum of the log tail probabilities of ``kernel`` frames ending there, under a normal noise
    model centred on the half-sample mode with the spread of the values below it (3 x that sigma)."""
    mode = half_sample_mode(trace)
    below = trace[trace < mode] - mode
    sigma = np.sqrt(np.mean(below**2)) if below.size else 0.0
    if sigma == 0 or not np.isfinite(sigma):
        return np.zeros(trace.shape)
    log_tail = norm.logsf((trace - mode) / (3.0 * sigma))
    return -np.convolve(log_tail, np.ones(kernel))[: trace.size]


def active_frames(trace: np.ndarray, kernel: int, threshold: float, padding: int) -> np.ndarray:
    """Sorted frame indices of the active part of ``trace``: event bouts widened by ``padding`` frames."""
    events = event_evidence(trace, kernel) >= threshold
    if not events.any():
        return np.zeros(0, dtype=np.int64)
    edges = np.diff(np.concatenate([[0], events.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    active = np.zeros(trace.size, dtype=bool)
    for start, stop in zip(starts, stops, strict=True):
        active[max(start - padding, 0) : stop + padding + 1] = True
    return np.flatnonzero(active)


def independent_frames(signal: np.ndarray, crosstalk: np.ndarray, window: int) -> np.ndarray:
    """The signal's active frames farther than ``window`` frames from every active frame of the crosstalk."""
    if crosstalk.size == 0:
        return signal
    blurred = np.unique((crosstalk[:, None] + np.arange(-window, window + 1)[None, :]).ravel())
    return signal[~np.isin(signal, blurred)]


def is_cell(signal: np.ndarray, crosstalk: np.ndarray, window: int) -> bool:
    """The ghost test: a cell has at least one active frame of its own, away from the crosstalk's."""
    return independent_frames(signal, crosstalk, window).size > 0


def slow_variance(trace: np.ndarray) -> float:
    """The variance of ``trace`` less its frame-to-frame noise: half the variance of successive differences,
    from their median absolute deviation (transients, slow against the frame rate, barely move it); >= 0."""
    steps = np.diff(trace)
    noise = (1.4826 * np.median(np.abs(steps - np.median(steps)))) ** 2 / 2.0
    return max(float(np.var(trace)) - noise, 0.0)


def leak_ratio(mixing: np.ndarray, sources: np.ndarray) -> float:
    """How much more the partner's light in an ROI's signal trace varies than its own plane's: the slow
    variance of mixing[0, 1] x crosstalk source over that of mixing[0, 0] x signal source (inf when only the
    partner's varies, 0 when neither does)."""
    leaked = slow_variance(mixing[0, 1] * sources[1])
    own = slow_variance(mixing[0, 0] * sources[0])
    if own > 0:
        return leaked / own
    return np.inf if leaked > 0 else 0.0


# ------------------------------------------------------------------------------------ unmixing


def _whiten(pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) data -> (whitened data with identity covariance, whitening matrix W: (x - mean) @ W)."""
    centred = pair - pair.mean(axis=0)
    n = np.sqrt(centred.shape[0])
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    return u @ vt * n, (vt.T / s) @ vt * n


def ica_unmix(signal: np.ndarray, crosstalk: np.ndarray, seed: int, tries: int, max_offdiagonal: float):
    """Unmix one ROI's raw pair with FastICA; returns (mixing (2, 2), sources (2, T), converged).

    The mixing matrix maps the sources to the raw traces with rows summing to 1; the ICA is run again with
    the same random stream until both off-diagonal terms lie in [0, max_offdiagonal], at most ``tries``
    times; as in Allen's loop (which checks a run before it starts the next), the last run is never accepted.
    The first source is the signal: the ICA's first output when it correlates more with the raw
    signal than with the raw crosstalk trace, else the second (Allen's source assignment)."""
    pair = np.column_stack([signal, crosstalk])
    whitened, whitening = _whiten(pair)
    rng = np.random.RandomState(seed)
    mixing = np.eye(2)
    converged = False
    for run in range(tries):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ica = FastICA(whiten=False, max_iter=10000, random_state=rng).fit(whitened)
        estimate = np.linalg.solve(whitening, ica.mixing_)
        mixing = rows_summing_to_one(estimate)
        if run < tries - 1 and 0 <= mixing[0, 1] <= max_offdiagonal and 0 <= mixing[1, 0] <= max_offdiagonal:
            converged = True
            break
    sources = np.linalg.solve(mixing, pair.T)
    like_signal, like_crosstalk = (abs(np.corrcoef(sources[0], raw)[0, 1]) for raw in (signal, crosstalk))
    if not like_signal > like_crosstalk:
        sources, mixing = sources[::-1], mixing[:, ::-1]
    return mixing, sources, converged


def _rolling_inactive(trace: np.ndarray, inactive: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred rolling mean and std (ddof 1) over the inactive frames; the window is shifted inside the trace
    at its ends and is the whole trace when shorter; NaN where the window holds too few inactive frames."""
    n = trace.size
    window = min(window, n)
    values = np.where(inactive, trace, 0.0)
    sums = np.concatenate([[0.0], np.cumsum(values)])
    squares = np.concatenate([[0.0], np.cumsum(values**2)])
    counts = np.concatenate([[0], np.cumsum(inactive)])
    start = np.clip(np.arange(n) - window // 2, 0, n - window)
    stop = start + window
    count = (counts[stop] - counts[start]).astype(float)
    mean = np.where(count > 0, sums[stop] - sums[start], np.nan) / np.maximum(count, 1)
    variance = ((squares[stop] - squares[start]) / np.maximum(count, 1) - mean**2) * count / np.maximum(count - 1, 1)
    return mean, np.where(count > 1, np.sqrt(np.maximum(variance, 0.0)), np.nan)


def clip_dips(trace: np.ndarray, active: np.ndarray, window: int, sigmas: float) -> np.ndarray:
    """Clip the unmixed trace from below at the rolling mean - ``sigmas`` std of its inactive frames, as Allen
    does: a negative threshold is kept, and frames whose window holds fewer than two inactive frames are not
    clipped (Allen's threshold there is NaN, replaced by -999)."""
    inactive = np.ones(trace.size, dtype=bool)
    inactive[active] = False
    if not inactive.any():
        inactive[:] = True
    mean, std = _rolling_inactive(trace, inactive, window)
    threshold = mean - sigmas * std
    return np.where(np.isfinite(threshold), np.maximum(trace, threshold), trace)


def _ratio(signal: np.ndarray, crosstalk: np.ndarray, active: np.ndarray) -> float:
    """100 x the slope of crosstalk on signal over the signal's active frames (NaN without any)."""
    if active.size < 2 or np.ptp(signal[active]) == 0:
        return float("nan")
    return 100.0 * float(linregress(signal[active], crosstalk[active]).slope)


def _seed(trace: np.ndarray, active: np.ndarray) -> int:
    """A seed for the ROI's ICA from its own data: the summed flux of its inactive frames (Allen's rule)."""
    inactive = np.ones(trace.size, dtype=bool)
    inactive[active] = False
    return int(np.round(np.abs(trace[inactive]).sum())) % 2**32


def decrosstalk_traces(
    signal: np.ndarray, crosstalk: np.ndarray, params: dict[str, Any], pair_mixing: np.ndarray | None = None
) -> DecrosstalkResult:
    """Decrosstalk (n_roi, T) raw traces of the signal plane's ROIs: ``signal`` from its own movie,
    ``crosstalk`` from the paired plane's movie, with the same masks. Without ``pair_mixing`` each ROI is
    unmixed by its own ICA (Allen); with it (2 x 2, [signal, crosstalk] = pair_mixing @ own light of each
    plane, the image-based estimate) every ROI is unmixed by that one matrix, and the result's crosstalk is
    ``pair_mixing[0, 1]``. Clipping and the ghost test are Allen's either way."""
    signal, crosstalk = np.asarray(signal, dtype=float), np.asarray(crosstalk, dtype=float)
    if signal.shape != crosstalk.shape or signal.ndim != 2:
        raise ValueError(f"signal {signal.shape} and crosstalk {crosstalk.shape} traces must both be (n_roi, T)")
    n_roi, n_frames = signal.shape
    kernel, threshold = params["decrosstalk_event_kernel"], params["decrosstalk_event_threshold"]
    padding, window = params["decrosstalk_event_padding"], params["decrosstalk_ghost_window"]
    leak = params.get("decrosstalk_leak_ratio")  # None: Allen's ghost test alone

    def active(trace: np.ndarray) -> np.ndarray:
        return active_frames(trace, kernel, threshold, padding)

    labels: list[set[str]] = [set() for _ in range(n_roi)]
    mixing = np.full((n_roi, 2, 2), np.nan)
    converged = np.zeros(n_roi, dtype=bool)
    sources = np.full((n_roi, 2, n_frames), np.nan)
    raw_ratio = np.full(n_roi, np.nan)
    unmixed_ratio = np.full(n_roi, np.nan)
    kept = []
    pair = None if pair_mixing is None else rows_summing_to_one(np.asarray(pair_mixing, dtype=float))
    for i in range(n_roi):
        if n_frames == 0 or not (np.isfinite(signal[i]).all() and np.isfinite(crosstalk[i]).all()):
            labels[i].add(INVALID_RAW)
            continue
        raw_active = active(signal[i])
        raw_ratio[i] = _ratio(signal[i], crosstalk[i], raw_active)
        if raw_active.size == 0:
            labels[i].add(INVALID_RAW_ACTIVE)
            continue
        if pair is None:
            mixing[i], sources[i], converged[i] = ica_unmix(
                signal[i],
                crosstalk[i],
                _seed(signal[i], raw_active),
                params["decrosstalk_ica_tries"],
                params["decrosstalk_max_offdiagonal"],
            )
        else:
            mixing[i] = pair
            sources[i] = np.linalg.solve(pair, np.vstack([signal[i], crosstalk[i]]))
            converged[i] = True
        kept.append(i)
    if not converged.any():
        for i in kept:
            labels[i].add(INVALID_UNMIXED)
        unmixed = np.full((n_roi, n_frames), np.nan)
        return DecrosstalkResult(mixing, converged, unmixed, _sorted(labels), raw_ratio, unmixed_ratio, np.nan)
    alpha = np.mean([min(mixing[i, 0, 0], mixing[i, 0, 1]) for i in np.flatnonzero(converged)])
    beta = np.mean([min(mixing[i, 1, 0], mixing[i, 1, 1]) for i in np.flatnonzero(converged)])
    mean_mixing = np.array([[1.0 - alpha, alpha], [beta, 1.0 - beta]])
    unmixed = np.full((n_roi, n_frames), np.nan)
    for i in kept:
        if not converged[i]:
            mixing[i] = mean_mixing
            sources[i] = np.linalg.solve(mean_mixing, np.vstack([signal[i], crosstalk[i]]))
        if not np.isfinite(sources[i]).all():
            labels[i].add(INVALID_UNMIXED)
            continue
        unmixed[i] = clip_dips(
            sources[i, 0], active(sources[i, 0]), params["decrosstalk_clip_window"], params["decrosstalk_clip_sigmas"]
        )
        own, other = active(unmixed[i]), active(sources[i, 1])
        if own.size == 0:
            labels[i].add(INVALID_UNMIXED_ACTIVE)
            continue
        unmixed_ratio[i] = _ratio(unmixed[i], sources[i, 1], own)
        if not is_cell(own, other, window) or (leak is not None and leak_ratio(mixing[i], sources[i]) > leak):
            labels[i].add(GHOST)
    share = np.median(mixing[converged, 0, 1]) if pair_mixing is None else pair_mixing[0, 1]
    return DecrosstalkResult(mixing, converged, unmixed, _sorted(labels), raw_ratio, unmixed_ratio, float(share))


def rows_summing_to_one(mixing: np.ndarray) -> np.ndarray:
    """The same mixing with its sources rescaled so each row sums to 1 (Allen's normalisation)."""
    return mixing * np.linalg.solve(mixing, np.ones(2))


def _sorted(labels: list[set[str]]) -> list[tuple[str, ...]]:
    return [tuple(sorted(s)) for s in labels]


def mask_traces(movie: Any, rois: Sequence[RoiRecord], chunk_frames: int | None = None) -> np.ndarray:
    """(n_roi, T) mean of a (T, height, width) movie over each ROI's mask; NaN rows for empty masks."""
    n_frames, height, width = (int(n) for n in movie.shape)
    weights = mean_weights([roi.linear_index for roi in rois], height * width)
    traces = np.zeros((len(rois), n_frames))
    for start, block in iter_chunks(movie, chunk_frames or default_chunk_frames((height, width))):
        traces[:, start : start + block.shape[0]] = apply_to_frames(weights, block)
    traces[[roi.npix == 0 for roi in rois]] = np.nan
    return traces


def mask_traces_registered_by(
    movie: Any, rois: Sequence[RoiRecord], y_offset: np.ndarray, x_offset: np.ndarray, chunk_frames: int | None = None
) -> np.ndarray:
    """(n_roi, T) mask traces of a raw (T, H, W) movie with each frame moved by another plane's registration
    offsets (rounded; frame t at p shows raw p + offset[t], edges repeated): the scan points that plane's
    registered movie shows under the masks."""
    n_frames, height, width = (int(n) for n in movie.shape)
    if len(y_offset) != n_frames or len(x_offset) != n_frames:
        raise ValueError(f"{len(y_offset)} y and {len(x_offset)} x offsets for a movie of {n_frames} frames")
    dy, dx = np.rint(np.asarray(y_offset)).astype(np.int64), np.rint(np.asarray(x_offset)).astype(np.int64)
    weights = mean_weights([roi.linear_index for roi in rois], height * width)
    traces = np.zeros((len(rois), n_frames))
    rows, cols = np.arange(height), np.arange(width)
    for start, block in iter_chunks(movie, chunk_frames or default_chunk_frames((height, width))):
        frames = block.reshape(-1, height, width)
        moved = np.stack(
            [
                frame[np.ix_(np.clip(rows + dy[start + k], 0, height - 1), np.clip(cols + dx[start + k], 0, width - 1))]
                for k, frame in enumerate(frames)
            ]
        )
        traces[:, start : start + len(frames)] = apply_to_frames(weights, moved.reshape(len(frames), -1))
    traces[[roi.npix == 0 for roi in rois]] = np.nan
    return traces


def decrosstalk_plane(
    signal_movie: Any,
    paired_movie: Any,
    rois: Sequence[RoiRecord],
    params: dict[str, Any],
    raw_pair: tuple[Any, Any] | None = None,
    offsets: tuple[np.ndarray, np.ndarray] | None = None,
) -> DecrosstalkResult:
    """Decrosstalk the ROIs of the signal plane against its paired plane (both registered movies, same shape).

    ``decrosstalk_method``: "ica" (Allen's per-ROI ICA on the masks' traces in both movies, the default) or
    "image": the pair's mixing estimated from ``raw_pair``, the two planes' raw movies (a raw pixel of both is
    the same scan point). ``decrosstalk_paired_movie`` says which movie of the partner the masks read:
    "registered", its own registered movie (ophys_etl's production decrosstalk; the ICA default), or
    "signal_offsets", its raw movie moved by this plane's registration ``offsets`` (y, x per frame), as Allen's
    later paired-plane registration does, so both traces of an ROI see the same scan points whatever the
    partner's own registration did (always so for "image")."""
    if tuple(signal_movie.shape) != tuple(paired_movie.shape):
        raise ValueError(
            f"the paired planes' movies differ in shape: {tuple(signal_movie.shape)} and {tuple(paired_movie.shape)}"
        )
    method = params.get("decrosstalk_method", "ica")
    if method not in ("ica", "image"):
        raise ValueError(f"decrosstalk_method must be 'ica' or 'image', got {method!r}")
    signal = mask_traces(signal_movie, rois)
    if not reads_raw_pair(params):
        return decrosstalk_traces(signal, mask_traces(paired_movie, rois), params)
    if raw_pair is None or offsets is None:
        raise ValueError(
            f"decrosstalk_method {method!r} with decrosstalk_paired_movie {paired_movie_source(params)!r} needs both "
            "planes' raw movies and this plane's registration offsets"
        )
    crosstalk = mask_traces_registered_by(raw_pair[1], rois, *offsets)
    pair = estimate_pair_crosstalk(*raw_pair, params) if method == "image" else None
    return decrosstalk_traces(signal, crosstalk, params, pair)


def paired_movie_source(params: dict[str, Any]) -> str:
    """Which movie of the partner the masks read: "registered" or "signal_offsets" (module docstring)."""
    image = params.get("decrosstalk_method", "ica") == "image"
    source = params.get("decrosstalk_paired_movie", "signal_offsets" if image else "registered")
    if source not in ("registered", "signal_offsets"):
        raise ValueError(f"decrosstalk_paired_movie must be 'registered' or 'signal_offsets', got {source!r}")
    if source == "registered" and image:
        raise ValueError(
            "the image-based decrosstalk reads the partner's raw movie: decrosstalk_paired_movie "
            "'registered' does not apply to it"
        )
    return source


def reads_raw_pair(params: dict[str, Any]) -> bool:
    """Whether decrosstalk with ``params`` reads both planes' raw movies and this plane's offsets."""
    return paired_movie_source(params) == "signal_offsets"
