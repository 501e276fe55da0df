"""dF/F of neuropil-corrected fluorescence traces (Allen ophys_etl ``dff``; docs/methods.md).

Per trace F (one ROI, T frames, arbitrary fluorescence units):

1. ``sigma_F = noise_std(F, short)``;
2. ``low`` = 10th-percentile filter of F over the long window; frames with ``F > low + 3 sigma_F`` are
   active and set to NaN;
3. ``baseline`` = NaN-aware median filter of that inactive trace over the long window (reflect padding,
   NaN runs interpolated);
4. ``dff = (F - baseline) / max(baseline, sigma_F)``; ``num_small_baseline_frames = #(baseline <= sigma_F)``;
5. ``sigma_dff = noise_std(dff, short)``.

Windows are given in seconds and converted with :func:`window_frames` (odd frame counts): 600 s long,
3.333 s short; each must be shorter than the trace. As in Allen, an all-NaN trace is returned unchanged, and
a trace with some NaNs, or a constant one, has a NaN noise sigma and so an all-NaN dF/F. The NaN-aware
running median is exact (no subsampling): a Fenwick tree over the value ranks answers each window's order
statistic in O(log T), so an 18601-frame window over a 140k-frame trace takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy.ndimage import median_filter, percentile_filter

LONG_WINDOW_S = 600.0
SHORT_WINDOW_S = 3.333
INACTIVE_PERCENTILE = 10.0
ACTIVE_SIGMAS = 3.0
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class DffResult:
    """dF/F of ``n_roi`` traces.

    dff: (n_roi, T) float64, unitless; an all-NaN input row stays all NaN.
    sigma_dff: (n_roi,) robust noise standard deviation of each dF/F row (NaN for NaN rows).
    num_small_baseline_frames: (n_roi,) frames whose baseline was <= the noise sigma of F.
    long_window, short_window: the window lengths used, in frames (odd).
    """

    dff: np.ndarray
    sigma_dff: np.ndarray
    num_small_baseline_frames: np.ndarray
    long_window: int
    short_window: int


def window_frames(fs: float, seconds: float) -> int:
    """Window length in frames: ``round(fs * seconds)``, plus 1 when that is even."""
    if fs <= 0 or seconds <= 0:
        raise ValueError(f"frame rate ({fs} Hz) and window ({seconds} s) must be positive")
    frames = int(round(fs * seconds))
    return frames + 1 if frames % 2 == 0 else frames


def check_window(window: int, n_frames: int, name: str = "window") -> None:
    """Raise ValueError unless ``window`` is odd, positive and shorter than the trace (Allen's rule)."""
    if window <= 0 or window % 2 == 0 or window >= n_frames:
        raise ValueError(
            f"invalid {name} of {window} frames for a trace of {n_frames} frames: it must be odd, positive "
            "and shorter than the trace (use shorter window seconds for short recordings)"
        )


def noise_std(x: np.ndarray, filter_length: int, mode: str = "reflect") -> float:
    """Robust standard deviation of the noise of ``x`` (Allen ``noise_std``).

    residual = x - median_filter(x, filter_length, mode); keep residuals below 1.5 * |min(residual)| (drops
    positive transients); robust sigma = 1.4826 * MAD of those; keep |residual| < 2.5 * that sigma; return
    1.4826 * MAD of what is left. NaN when ``x`` holds a NaN, and NaN when no residual survives a cut (a
    noiseless, e.g. constant, trace), as in Allen. dF/F uses scipy's default edge mode ``reflect``; event
    detection passes ``nearest``. ``filter_length`` may be even (as int(1.0 * fs) can be).
    """
    x = np.asarray(x, dtype=np.float64)
    if np.isnan(x).any():
        return float("nan")
    residual = x - median_filter(x, size=filter_length, mode=mode)
    kept = residual[residual < 1.5 * abs(residual.min())]
    robust_sigma = _mad_sigma(kept)
    return _mad_sigma(kept[np.abs(kept) < 2.5 * robust_sigma])


def _mad_sigma(x: np.ndarray) -> float:
    """1.4826 * MAD; NaN for an empty array."""
    if x.size == 0:
        return float("nan")
    return MAD_TO_SIGMA * float(np.median(np.abs(x - np.median(x))))


def nanmedian_filter(x: np.ndarray, window: int) -> np.ndarray:
    """Running median of ``x`` ignoring NaNs, centred windows of odd length ``window``.

    Edges use reflect padding (``x[h-1], ..., x[0] | x | x[-1], ..., x[-h]``, h = window // 2). A window
    holding only NaNs gives NaN; such runs are then filled by linear interpolation between the nearest
    finite outputs (constant beyond the ends). Exact: equals ``np.nanmedian`` of every window.
    """
    x = np.asarray(x, dtype=np.float64)
    check_window(window, x.size)
    half = window // 2
    padded = np.concatenate((x[:half][::-1], x, x[x.size - half :][::-1]))
    order = np.argsort(padded, kind="stable")
    n_finite = int(np.count_nonzero(~np.isnan(padded)))
    ranks = np.empty(padded.size, dtype=np.int64)
    ranks[order] = np.arange(padded.size)
    ranks[np.isnan(padded)] = -1
    out = _window_nanmedian(ranks, padded[order[:n_finite]], window, x.size)
    missing = np.isnan(out)
    if missing.all():
        return out
    if missing.any():
        frames = np.arange(out.size)
        out[missing] = np.interp(frames[missing], frames[~missing], out[~missing])
    return out


@numba.njit(cache=True)
def _fenwick_add(tree: np.ndarray, index: int, delta: int) -> None:
    i = index + 1
    while i < tree.size:
        tree[i] += delta
        i += i & (-i)


@numba.njit(cache=True)
def _fenwick_kth(tree: np.ndarray, k: int, top_bit: int) -> int:
    """0-based rank of the k-th (0-based) smallest element present in the tree."""
    pos = 0
    remaining = k + 1
    step = top_bit
    while step > 0:
        nxt = pos + step
        if nxt < tree.size and tree[nxt] < remaining:
            pos = nxt
            remaining -= tree[nxt]
        step >>= 1
    return pos


@numba.njit(cache=True)
def _window_nanmedian(ranks: np.ndarray, sorted_values: np.ndarray, window: int, n_out: int) -> np.ndarray:
    """Median of the finite values in ``padded[i:i+window]`` for i < n_out, from their global ranks."""
    tree = np.zeros(ranks.size + 1, dtype=np.int64)
    top_bit = 1
    while top_bit * 2 < tree.size:
        top_bit *= 2
    out = np.empty(n_out)
    count = 0
    for j in range(window - 1):
        if ranks[j] >= 0:
            _fenwick_add(tree, ranks[j], 1)
            count += 1
    for i in range(n_out):
        entering = ranks[i + window - 1]
        if entering >= 0:
            _fenwick_add(tree, entering, 1)
            count += 1
        if count == 0:
            out[i] = np.nan
        elif count % 2 == 1:
            out[i] = sorted_values[_fenwick_kth(tree, count // 2, top_bit)]
        else:
            low = sorted_values[_fenwick_kth(tree, count // 2 - 1, top_bit)]
            high = sorted_values[_fenwick_kth(tree, count // 2, top_bit)]
            out[i] = 0.5 * (low + high)
        leaving = ranks[i]
        if leaving >= 0:
            _fenwick_add(tree, leaving, -1)
            count -= 1
    return out


@dataclass(frozen=True)
class DffTrace:
    """dF/F of one trace and the intermediates Allen's code computes on the way (all float64 unless noted).

    dff (T,); sigma_dff; num_small_baseline_frames (int); sigma_f = noise_std(F); low_baseline (T,), the
    10th-percentile filter; active_mask (T,) bool, frames above low_baseline + 3 sigma_f; baseline (T,).
    For an all-NaN trace only dff (the input), sigma_dff (NaN) and num_small_baseline_frames (0) are set.
    """

    dff: np.ndarray
    sigma_dff: float
    num_small_baseline_frames: int
    sigma_f: float = float("nan")
    low_baseline: np.ndarray | None = None
    active_mask: np.ndarray | None = None
    baseline: np.ndarray | None = None


def dff_trace(trace: np.ndarray, long_window: int, short_window: int) -> DffTrace:
    """dF/F of one trace with windows in frames (Allen ``compute_dff_trace``, inactive percentile 10).

    An all-NaN trace is returned unchanged with sigma NaN and 0 small-baseline frames (no window check). A
    trace with some NaNs has a NaN noise sigma, so its dF/F and sigma_dff are all NaN. A noiseless
    (constant) trace has a NaN noise sigma too, giving an all-NaN dF/F. Windows must be odd, positive and
    shorter than the trace (ValueError otherwise).
    """
    trace = np.asarray(trace, dtype=np.float64)
    if trace.ndim != 1:
        raise ValueError(f"a trace must be 1-D, got shape {trace.shape}")
    if np.isnan(trace).all():
        return DffTrace(trace.copy(), float("nan"), 0)
    check_window(long_window, trace.size, "long baseline window")
    check_window(short_window, trace.size, "short noise window")
    sigma_f = noise_std(trace, short_window)
    low = percentile_filter(trace, INACTIVE_PERCENTILE, size=long_window)
    active = trace > low + ACTIVE_SIGMAS * sigma_f
    baseline = nanmedian_filter(np.where(active, np.nan, trace), long_window)
    dff = (trace - baseline) / np.maximum(baseline, sigma_f)
    num_small = int(np.count_nonzero(baseline <= sigma_f))
    return DffTrace(dff, noise_std(dff, short_window), num_small, sigma_f, low, active, baseline)


def compute_dff_trace(trace: np.ndarray, long_window: int, short_window: int) -> tuple[np.ndarray, float, int]:
    """(dff, sigma_dff, num_small_baseline_frames) of one trace; see :func:`dff_trace`."""
    result = dff_trace(trace, long_window, short_window)
    return result.dff, result.sigma_dff, result.num_small_baseline_frames


def compute_dff(
    traces: np.ndarray,
    fs: float,
    long_window_s: float = LONG_WINDOW_S,
    short_window_s: float = SHORT_WINDOW_S,
) -> DffResult:
    """dF/F of neuropil-corrected traces.

    traces: (n_roi, T) fluorescence, one row per ROI (all-NaN rows for excluded ROIs).
    fs: imaging frame rate in Hz. Windows: ``window_frames(fs, long_window_s)`` and
    ``window_frames(fs, short_window_s)``; a window not shorter than the trace raises ValueError.
    """
    traces = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    if traces.ndim != 2:
        raise ValueError(f"traces must be (n_roi, T), got shape {traces.shape}")
    long_window = window_frames(fs, long_window_s)
    short_window = window_frames(fs, short_window_s)
    dff = np.empty_like(traces)
    sigma = np.empty(traces.shape[0])
    small = np.zeros(traces.shape[0], dtype=np.int64)
    for i, trace in enumerate(traces):
        try:
            dff[i], sigma[i], small[i] = compute_dff_trace(trace, long_window, short_window)
        except ValueError as err:
            raise ValueError(f"ROI row {i}: {err}") from err
    return DffResult(dff, sigma, small, long_window, short_window)


def clamped_long_window_s(long_window_s: float, n_frames: int, fs: float, clamp: bool) -> tuple[float, bool]:
    """(the baseline window in s, whether it was shortened): ``long_window_s`` when the movie holds it; else the
    longest window a movie of ``n_frames`` holds when ``clamp`` is set (not Allen), or a ValueError (Allen's
    dF/F refuses such a movie)."""
    if window_frames(fs, long_window_s) < n_frames:
        return long_window_s, False
    if not clamp:
        raise ValueError(
            f"the movie's {n_frames} frames at {fs} Hz are shorter than the {long_window_s} s dF/F baseline "
            f"window ({window_frames(fs, long_window_s)} frames), which Allen's dF/F refuses; process short "
            "movies with the allen_short_movies preset (BRAINOBS_OPHYS_PARAMSET=allen_short_movies), which "
            "clamps the window (docs/methods.md)"
        )
    return (n_frames - 2) / fs, True


def compute_dff_clamped(
    traces: np.ndarray, fs: float, long_window_s: float, short_window_s: float, clamp_long_window: bool
) -> tuple[DffResult, bool]:
    """``compute_dff`` with the baseline window of ``clamped_long_window_s``; returns (result, clamped)."""
    traces = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    long_s, clamped = clamped_long_window_s(long_window_s, traces.shape[-1], fs, clamp_long_window)
    return compute_dff(traces, fs, long_s, short_window_s), clamped
