"""L0 event detection on dF/F traces (Allen Brain Observatory wrapper around the exact L0 solver).

Per trace (dF/F, T frames at ``fs`` Hz):

1. ``sigma = noise_std(trace, int(1.0 * fs))``;
2. detrend: ``trace -= min(median_filter(trace, int(3.2 * fs)), 2.5 * sigma)`` (edges padded with the
   nearest value);
3. the penalty lambda is searched for the smallest value (to 1e-4) whose smallest detected event is at
   least ``noise_multiplier * sigma``: bracket upwards from 0.1 (doubling), then bisect. When the events
   vanish before that condition holds, the last non-empty solution (just below that lambda) is kept, as
   Allen's search does;
4. events are the jumps of the L0 calcium (:func:`brainobs.populate.ophys.lzero.solve_l0`) with
   ``gamma = exp(-1 / (decay_time * fs))``.

``filtered_events`` = causal convolution of the events with a normalised half-normal kernel of scale
``(2 / 31 s) * fs`` frames and 20 taps.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter
from scipy.signal import lfilter

from brainobs.populate.ophys.dff import noise_std
from brainobs.populate.ophys.indicators import gamma as ar1_gamma
from brainobs.populate.ophys.lzero import solve_l0

NOISE_FILTER_S = 1.0
DETREND_FILTER_S = 3.2
DETREND_CLIP_SIGMAS = 2.5
PENALTY_START = 0.1
PENALTY_TOLERANCE = 1e-4
CALCIUM_FLOOR = 1e-4
FILTER_SCALE_S = 2.0 / 31.0
FILTER_TAPS = 20


@dataclass(frozen=True)
class EventResult:
    """L0 events of ``n_roi`` dF/F traces.

    events: (n_roi, T) event magnitude in dF/F units at each frame, 0 where none; NaN rows for NaN input.
    filtered_events: (n_roi, T) events convolved with the causal half-normal kernel.
    lambdas: (n_roi,) chosen L0 penalty (NaN for NaN rows).
    noise_std: (n_roi,) robust noise sigma of each dF/F trace (NaN for NaN rows).
    gamma: AR(1) decay factor per frame; noise_multiplier: minimum event size in units of noise_std.
    """

    events: np.ndarray
    filtered_events: np.ndarray
    lambdas: np.ndarray
    noise_std: np.ndarray
    gamma: float
    noise_multiplier: float


def default_noise_multiplier(fs: float) -> float:
    """2.0 near 31 Hz (``round(fs / 31) == 1``), 2.6 near 11 Hz (``round(fs / 11) == 1``); else an error."""
    if round(fs / 31.0) == 1:
        return 2.0
    if round(fs / 11.0) == 1:
        return 2.6
    raise ValueError(f"no default noise multiplier for a frame rate of {fs} Hz; pass noise_multiplier explicitly")


def search_penalty(
    trace: np.ndarray, gamma: float, min_size: float, eps: float = CALCIUM_FLOOR
) -> tuple[np.ndarray, float]:
    """Events and lambda: the smallest lambda (to 1e-4) whose smallest event is >= ``min_size``.

    Assumes, as Allen's search does, that the smallest event grows with lambda.
    """

    def run(penalty: float) -> tuple[np.ndarray, bool, bool]:
        events = solve_l0(trace, gamma, penalty, eps)[1]
        positive = events[events > 0]
        return events, positive.size > 0, positive.size > 0 and positive.min() < min_size

    low, low_run = 0.0, None
    high = PENALTY_START
    high_run = run(high)
    while high_run[2]:
        low, low_run = high, high_run
        high *= 2.0
        high_run = run(high)
    while high - low > PENALTY_TOLERANCE:
        middle = 0.5 * (low + high)
        middle_run = run(middle)
        if middle_run[2]:
            low, low_run = middle, middle_run
        else:
            high, high_run = middle, middle_run
    if not high_run[1] and low_run is not None:
        return low_run[0], low
    return high_run[0], high


def detect_events_trace(
    trace: np.ndarray, fs: float, gamma: float, noise_multiplier: float, eps: float = CALCIUM_FLOOR
) -> tuple[np.ndarray, float, float]:
    """(events (T,), lambda, noise_std) of one dF/F trace; NaN outputs when the trace holds a NaN."""
    trace = np.asarray(trace, dtype=np.float64)
    if np.isnan(trace).any():
        return np.full(trace.shape, np.nan), float("nan"), float("nan")
    sigma = noise_std(trace, int(NOISE_FILTER_S * fs), mode="nearest")
    trend = median_filter(trace, size=int(DETREND_FILTER_S * fs), mode="nearest")
    detrended = trace - np.minimum(trend, DETREND_CLIP_SIGMAS * sigma)
    events, penalty = search_penalty(detrended, gamma, noise_multiplier * sigma, eps)
    return events, penalty, sigma


def filter_events(events: np.ndarray, fs: float) -> np.ndarray:
    """Causal convolution of (n_roi, T) events with the normalised 20-tap half-normal kernel."""
    scale = FILTER_SCALE_S * fs
    kernel = np.exp(-0.5 * (np.arange(FILTER_TAPS) / scale) ** 2)
    return lfilter(kernel / kernel.sum(), [1.0], np.asarray(events, dtype=np.float64), axis=-1)


def detect_events(
    dff: np.ndarray,
    fs: float,
    decay_time: float,
    noise_multiplier: float | None = None,
    n_workers: int = 1,
) -> EventResult:
    """L0 events of (n_roi, T) dF/F traces imaged at ``fs`` Hz with an indicator decay time in seconds.

    ``noise_multiplier`` defaults by frame rate (:func:`default_noise_multiplier`). ``n_workers`` > 1
    runs ROIs in threads (the solver releases the GIL).
    """
    dff = np.atleast_2d(np.asarray(dff, dtype=np.float64))
    if dff.ndim != 2:
        raise ValueError(f"dF/F must be (n_roi, T), got shape {dff.shape}")
    multiplier = default_noise_multiplier(fs) if noise_multiplier is None else float(noise_multiplier)
    gamma = ar1_gamma(decay_time, fs)

    def one(row: np.ndarray) -> tuple[np.ndarray, float, float]:
        return detect_events_trace(row, fs, gamma, multiplier)

    if n_workers > 1:
        with ThreadPoolExecutor(n_workers) as pool:
            results = list(pool.map(one, dff))
    else:
        results = [one(row) for row in dff]
    events = np.array([r[0] for r in results]).reshape(dff.shape)
    lambdas = np.array([r[1] for r in results])
    sigmas = np.array([r[2] for r in results])
    return EventResult(events, filter_events(events, fs), lambdas, sigmas, gamma, multiplier)
