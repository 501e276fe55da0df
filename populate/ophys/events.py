"""L0 event detection on dF/F traces, as Allen's ophys_etl ``event_detection`` module runs it.

Per trace (dF/F, T frames at ``fs`` Hz), with gamma from the indicator's decay time
(:mod:`brainobs.populate.ophys.indicators`):

1. noise: ``r = x - median_filter(x, int(1.0 * fs), mode='nearest')``; keep ``r < 1.5 |min r|``;
   ``s = MAD(r, scale='normal')``; keep ``|r| < 2.5 s``; sigma = MAD again (scipy's normal scale);
2. detrend: ``x - min(median_filter(x, int(3.2 * fs), mode='nearest'), 2.5 * sigma)``;
3. penalty: Allen's "bracket" search (:func:`search_penalty`) for the L0 penalty whose smallest event is
   at least ``noise_multiplier * sigma`` (2.6 near 11 Hz, 2.0 near 31 Hz);
4. events: the L0 solver's positive jumps ``max(c[s] - gamma c[s-1], 0)``. The ``fastlzero`` solver
   (:mod:`~brainobs.populate.ophys.lzero_fast`, Allen's) is the default; ``exact`` is the globally optimal
   solver of :mod:`~brainobs.populate.ophys.lzero`, which finds cheaper event sets on some traces and so
   departs from Allen's events (docs/methods.md);
5. ``filtered_events``: AllenSDK's causal half-normal filter of the events (:func:`filter_events`).

:func:`detect_events_oasis` is the ``enhanced`` preset's alternative (thresholded OASIS deconvolution after the
indicator's rise, :mod:`~brainobs.populate.ophys.oasis`); :func:`detect_events_with` runs the method a
parameter set names.

Departures, for input Allen's code cannot take: a row holding a NaN, or whose noise cannot be estimated
(a constant trace), gives NaN outputs; a trace without an event at any penalty of the search (Allen's
search recurses without end) gives no events and a NaN lambda.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter
from scipy.stats import halfnorm, median_abs_deviation

from brainobs.populate.ophys import lzero, lzero_fast, oasis
from brainobs.populate.ophys.indicators import gamma as ar1_gamma
from brainobs.populate.ophys.indicators import halflife_s

NOISE_FILTER_S = 1.0
DETREND_FILTER_S = 3.2
DETREND_CLIP_SIGMAS = 2.5
CALCIUM_FLOOR = 1e-4  # FastLZero's EPS
PENALTY_BASE = 0.0
PENALTY_STEP = 0.1
PENALTY_STEP_MIN = 0.0001
FILTER_SCALE_S = 2.0 / 31.0
FILTER_TAPS = 20
SOLVERS = ("fastlzero", "exact")
METHODS = ("l0", "oasis")
OASIS_KEYS = ("events_rise_time_s", "events_min_jump")
_MAX_SEARCH_STEPS = 100_000


@dataclass(frozen=True)
class EventResult:
    """L0 events of ``n_roi`` dF/F traces.

    events: (n_roi, T) event magnitude in dF/F units at each frame, 0 where none; NaN rows for NaN input.
    filtered_events: (n_roi, T) events convolved with the causal half-normal kernel.
    lambdas: (n_roi,) chosen L0 penalty. noise_std: (n_roi,) noise sigma of each dF/F trace (before the
    multiplier). detrended: (n_roi, T) the traces handed to the solver.
    gamma: AR(1) decay factor per frame; halflife: s; noise_multiplier: smallest event in noise sigmas.
    """

    events: np.ndarray
    filtered_events: np.ndarray
    lambdas: np.ndarray
    noise_std: np.ndarray
    detrended: np.ndarray
    gamma: float
    halflife: float
    noise_multiplier: float


def default_noise_multiplier(fs: float) -> float:
    """Allen's rule: 2.6 if ``round(fs / 11) == 1``, else 2.0 if ``round(fs / 31) == 1``, else an error."""
    if round(fs / 11) == 1:
        return 2.6
    if round(fs / 31) == 1:
        return 2.0
    raise ValueError(
        f"no default noise multiplier for a frame rate of {fs} Hz (Allen's rule covers ~11 Hz and ~31 Hz); "
        "set events_noise_multiplier explicitly"
    )


def trace_noise_estimate(x: np.ndarray, filter_length: int) -> float:
    """Robust noise sigma of a trace (step 1 of the module docstring); NaN when it cannot be estimated."""
    residual = x - median_filter(x, filter_length, mode="nearest")
    residual = residual[residual < 1.5 * np.abs(residual.min())]
    if residual.size == 0:
        return float("nan")
    rstd = median_abs_deviation(residual, scale="normal")
    residual = residual[np.abs(residual) < 2.5 * rstd]
    if residual.size == 0:
        return float("nan")
    return float(median_abs_deviation(residual, scale="normal"))


def detrend(trace: np.ndarray, fs: float) -> tuple[np.ndarray, float]:
    """(detrended trace, noise sigma) of one dF/F trace (steps 1-2 of the module docstring)."""
    sigma = trace_noise_estimate(trace, int(NOISE_FILTER_S * fs))
    trend = median_filter(trace, int(DETREND_FILTER_S * fs), mode="nearest")
    return trace - np.minimum(trend, DETREND_CLIP_SIGMAS * sigma), sigma


def l0_events(trace: np.ndarray, gamma: float, penalty: float, solver: str = "fastlzero") -> np.ndarray:
    """(T,) positive event magnitudes of one trace at one penalty, by the named solver."""
    if solver == "fastlzero":
        return lzero_fast.event_magnitudes(trace, gamma, penalty, CALCIUM_FLOOR)
    if solver == "exact":
        return np.maximum(lzero.solve_l0(trace, gamma, penalty, CALCIUM_FLOOR)[1], 0.0)
    raise ValueError(f"unknown L0 solver {solver!r}; choose one of {', '.join(SOLVERS)}")


def _count_and_smallest(events: np.ndarray) -> tuple[int, float]:
    positive = events[events > 0]
    return positive.size, float(positive.min()) if positive.size else 0.0


def search_penalty(
    trace: np.ndarray, min_size: float, solve: Callable[[float], np.ndarray]
) -> tuple[np.ndarray, float]:
    """Allen's "bracket" penalty search: (events, lambda) with the smallest event >= ``min_size``.

    ``solve(penalty)`` returns the events at a penalty. From 0.1 the penalty steps up by 0.1 while the
    smallest event is below ``min_size``; past it (or when the events vanish) the search moves back and
    refines the step tenfold, alternating with ``-5 * step`` back-offs, down to a step of 1e-4, where it
    walks up until the smallest event reaches ``min_size``; if the events vanish there, the last non-empty
    solution and its penalty are kept. The arithmetic (penalties accumulated in float64) is Allen's, so the
    penalty lands on the same grid value.
    """
    base, step, bisect = PENALTY_BASE, PENALTY_STEP, False
    for _ in range(_MAX_SEARCH_STEPS):
        penalty = base + step
        clamped = penalty < step
        if clamped:
            penalty = step
            base += step
        events = solve(penalty)
        n_events, smallest = _count_and_smallest(events)
        if n_events == 0 and bisect:
            if clamped:  # no event even at the smallest penalty of this step: Allen recurses forever
                return np.zeros_like(trace), float("nan")
            base -= 5 * step
            bisect = False
            continue
        if step == PENALTY_STEP_MIN:
            if smallest > min_size and bisect:
                base -= 5 * step
                bisect = False
                continue
            last = None
            while n_events > 0 and smallest < min_size:
                last = events
                penalty += step
                events = solve(penalty)
                n_events, smallest = _count_and_smallest(events)
            if n_events > 0:
                return events, penalty
            if last is None:
                return np.zeros_like(trace), float("nan")
            return last, penalty - step
        if n_events == 0:
            base += 0.5 * step - step / 10
            step /= 10
            bisect = True
        elif smallest < min_size:
            base, bisect = penalty, False
        elif smallest > min_size:
            if bisect:
                base -= 5 * step
            else:
                base += 0.5 * step - step / 10
                step /= 10
            bisect = not bisect
        else:
            raise ValueError(f"smallest event equals the minimum size {min_size} exactly; Allen's search stops")
    raise RuntimeError(f"L0 penalty search did not converge in {_MAX_SEARCH_STEPS} steps")


def detect_events_trace(
    trace: np.ndarray, fs: float, gamma: float, noise_multiplier: float, solver: str = "fastlzero"
) -> tuple[np.ndarray, float, float, np.ndarray]:
    """(events (T,), lambda, noise_std, detrended (T,)) of one dF/F trace; NaN outputs for a NaN trace."""
    trace = np.asarray(trace, dtype=np.float64)
    nan = np.full(trace.shape, np.nan)
    if np.isnan(trace).any():
        return nan, float("nan"), float("nan"), nan
    detrended, sigma = detrend(trace, fs)
    if not np.isfinite(sigma):
        return nan, float("nan"), sigma, nan
    events, penalty = search_penalty(
        detrended, noise_multiplier * sigma, lambda p: l0_events(detrended, gamma, p, solver)
    )
    return events, penalty, sigma, detrended


def filter_events(events: np.ndarray, fs: float) -> np.ndarray:
    """AllenSDK's ``filtered_events``: each row convolved with a normalised 20-tap half-normal kernel.

    Kernel: ``halfnorm(scale=(2/31 s) * fs).pdf(arange(20))`` divided by its sum; causal
    (``np.convolve(row, kernel)[:T]``).
    """
    events = np.atleast_2d(np.asarray(events, dtype=np.float64))
    kernel = halfnorm(loc=0, scale=FILTER_SCALE_S * fs).pdf(np.arange(FILTER_TAPS))
    kernel = kernel / np.sum(kernel)
    out = np.zeros(events.shape)
    for i, row in enumerate(events):
        out[i] = np.convolve(row, kernel)[: row.size]
    return out


def detect_events(
    dff: np.ndarray,
    fs: float,
    decay_time: float,
    noise_multiplier: float | None = None,
    n_workers: int = 1,
    solver: str = "fastlzero",
) -> EventResult:
    """L0 events of (n_roi, T) dF/F traces imaged at ``fs`` Hz with an indicator decay time in seconds.

    ``noise_multiplier`` defaults by frame rate (:func:`default_noise_multiplier`); ``solver`` is one of
    :data:`SOLVERS`. ``n_workers`` > 1 runs ROIs in threads (the solvers release the GIL).
    """
    dff = np.atleast_2d(np.asarray(dff, dtype=np.float64))
    if dff.ndim != 2:
        raise ValueError(f"dF/F must be (n_roi, T), got shape {dff.shape}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown L0 solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    multiplier = default_noise_multiplier(fs) if noise_multiplier is None else float(noise_multiplier)
    gamma = ar1_gamma(decay_time, fs)

    def one(row: np.ndarray) -> tuple[np.ndarray, float, float, np.ndarray]:
        return detect_events_trace(row, fs, gamma, multiplier, solver)

    if n_workers > 1:
        with ThreadPoolExecutor(n_workers) as pool:
            results = list(pool.map(one, dff))
    else:
        results = [one(row) for row in dff]
    events = np.array([r[0] for r in results]).reshape(dff.shape)
    lambdas = np.array([r[1] for r in results])
    sigmas = np.array([r[2] for r in results])
    detrended = np.array([r[3] for r in results]).reshape(dff.shape)
    return EventResult(
        events, filter_events(events, fs), lambdas, sigmas, detrended, gamma, halflife_s(decay_time), multiplier
    )


def oasis_events_trace(
    trace: np.ndarray, fs: float, gamma: float, rho: float, noise_multiplier: float, min_jump: float
) -> tuple[np.ndarray, float, np.ndarray]:
    """(events (T,), noise_std, detrended (T,)) of one dF/F trace by thresholded OASIS; NaN for a NaN trace.

    Allen's detrending and noise sigma (steps 1-2 of the module docstring); the rise removed
    (:func:`oasis.remove_rise`, ``rho``); OASIS with jumps of at least ``min_jump`` sigma; jumps in
    neighbouring frames summed into one event; events below ``noise_multiplier`` sigma dropped. Magnitudes
    are in dF/F units: the jump of the decaying calcium, ``jump(u) * gamma / (gamma - rho)``.
    """
    trace = np.asarray(trace, dtype=np.float64)
    nan = np.full(trace.shape, np.nan)
    if np.isnan(trace).any():
        return nan, float("nan"), nan
    detrended, sigma = detrend(trace, fs)
    if not np.isfinite(sigma):
        return nan, sigma, nan
    to_dff = gamma / (gamma - rho)
    jumps = oasis.deconvolve(oasis.remove_rise(detrended, rho), gamma, min_jump * sigma / to_dff)
    events = oasis.merge_adjacent(jumps) * to_dff
    events[events < noise_multiplier * sigma] = 0.0
    return events, sigma, detrended


def detect_events_oasis(
    dff: np.ndarray,
    fs: float,
    decay_time: float,
    rise_time: float,
    noise_multiplier: float,
    min_jump: float,
) -> EventResult:
    """Events of (n_roi, T) dF/F traces by thresholded OASIS (:func:`oasis_events_trace`); lambdas are NaN."""
    dff = np.atleast_2d(np.asarray(dff, dtype=np.float64))
    if dff.ndim != 2:
        raise ValueError(f"dF/F must be (n_roi, T), got shape {dff.shape}")
    gamma = ar1_gamma(decay_time, fs)
    rho = oasis.rise_factor(rise_time, fs)
    if rho >= gamma:
        raise ValueError(f"events_rise_time_s {rise_time} s must be shorter than the decay time {decay_time} s")
    if not (noise_multiplier > 0 and min_jump >= 0):
        raise ValueError(f"events_noise_multiplier {noise_multiplier} must be > 0, events_min_jump {min_jump} >= 0")
    results = [oasis_events_trace(row, fs, gamma, rho, noise_multiplier, min_jump) for row in dff]
    events = np.array([r[0] for r in results]).reshape(dff.shape)
    sigmas = np.array([r[1] for r in results])
    detrended = np.array([r[2] for r in results]).reshape(dff.shape)
    lambdas = np.full(dff.shape[0], np.nan)
    return EventResult(
        events, filter_events(events, fs), lambdas, sigmas, detrended, gamma, halflife_s(decay_time), noise_multiplier
    )


def detect_events_with(dff: np.ndarray, fs: float, decay_time: float, params: dict) -> EventResult:
    """Events of (n_roi, T) dF/F traces by the method an ophys parameter set names (``events_*`` keys).

    ``events_method`` "l0" (absent: Allen's) runs :func:`detect_events` with ``events_noise_multiplier`` (None:
    Allen's rule) and ``events_solver``; "oasis" runs :func:`detect_events_oasis` with
    ``events_noise_multiplier``, ``events_rise_time_s`` and ``events_min_jump``.
    """
    method = params.get("events_method", "l0")
    multiplier = params.get("events_noise_multiplier")
    if method == "l0":
        return detect_events(dff, fs, decay_time, multiplier, solver=params.get("events_solver", "fastlzero"))
    if method == "oasis":
        needed = {"events_noise_multiplier": multiplier, **{k: params.get(k) for k in OASIS_KEYS}}
        missing = [key for key, value in needed.items() if value is None]
        if missing:
            raise ValueError(f"events_method 'oasis' needs {', '.join(missing)} in the ophys parameter set")
        return detect_events_oasis(dff, fs, decay_time, needed[OASIS_KEYS[0]], multiplier, needed[OASIS_KEYS[1]])
    raise ValueError(f"unknown events_method {method!r}; choose one of {', '.join(METHODS)}")
