"""Allen's mean-waveform metrics (ecephys_spike_sorting mean_waveforms, Jia et al. 2019;
docs/methods.md).

The input is a unit's mean waveform on every channel of the probe (channels x samples, uV). 1D features
are measured on the peak channel after Fourier upsampling (scipy.signal.resample) by `upsampling_factor`;
2D features on the sites peak + arange(-site_range, site_range + 1, 2) inside (0, n_channels): Allen never
uses channel 0, and only the site spacing (not the probe geometry) enters the velocities.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import resample
from scipy.stats import linregress

from brainobs.populate.ephys.presets import WAVEFORM_METRIC_PARAMS as W

WAVEFORM_COLUMNS = (
    "waveform_duration",
    "halfwidth",
    "PT_ratio",
    "repolarization_slope",
    "recovery_slope",
    "amplitude",
    "spread",
    "velocity_above",
    "velocity_below",
)


def snr(waveforms: np.ndarray) -> float:
    """(max - min of the mean) / (2 x std of the residuals), single-spike waveforms (spikes, samples) on one
    channel (Allen's calculate_snr; NaN when the residuals are all zero)."""
    waveforms = np.asarray(waveforms, dtype=float)
    mean = np.nanmean(waveforms, axis=0)
    noise = np.nanstd((waveforms - mean).ravel())
    return float((mean.max() - mean.min()) / (2 * noise)) if noise > 0 else float("nan")


def waveform_metrics(
    mean_waveform: np.ndarray, peak_channel: int, sampling_rate: float, params: dict = W
) -> dict[str, float]:
    """WAVEFORM_COLUMNS of one unit: mean_waveform (channels x samples, uV; every channel of the probe, by
    channel index), peak_channel (its row). Durations in ms, slopes in V/s (x1e-6 of uV/s), amplitude in uV,
    spread in um, velocities in s/m (signed: trough delay per metre above / below the peak site)."""
    waveform = np.asarray(mean_waveform, dtype=float)
    if waveform.ndim != 2 or not 0 <= peak_channel < waveform.shape[0]:
        raise ValueError(f"waveform metrics: mean waveform {waveform.shape} (channels x samples), peak {peak_channel}")
    n_samples = waveform.shape[1]
    n_new = int(n_samples * params["upsampling_factor"])
    trace = resample(waveform[peak_channel], n_new)
    times = np.linspace(0, n_samples / sampling_rate, n_new)
    amplitude, spread, above, below = _2d_features(
        waveform, times, peak_channel, params["spread_threshold"], params["site_range"], params["site_spacing_m"]
    )
    return {
        "waveform_duration": _duration(trace, times),
        "halfwidth": _halfwidth(trace, times),
        "PT_ratio": float(np.abs(trace.max() / trace.min())),
        "repolarization_slope": _repolarization_slope(trace, times, params["slope_window"]),
        "recovery_slope": _recovery_slope(trace, times, params["slope_window"]),
        "amplitude": amplitude,
        "spread": spread,
        "velocity_above": above,
        "velocity_below": below,
    }


def _positive_peak(trace: np.ndarray) -> bool:
    return bool(trace[np.argmax(trace)] > np.abs(trace[np.argmin(trace)]))


def _duration(trace: np.ndarray, times: np.ndarray) -> float:
    """ms from the trough to the following maximum (from the peak to the following minimum when the peak is
    the larger deflection)."""
    start = int(np.argmax(trace)) if _positive_peak(trace) else int(np.argmin(trace))
    after = trace[start:]
    end = np.flatnonzero(after == (after.min() if _positive_peak(trace) else after.max()))[0]
    return float((times[start + end] - times[start]) * 1e3)


def _halfwidth(trace: np.ndarray, times: np.ndarray) -> float:
    """ms between the crossings of half the larger deflection before and after it (NaN if one is missing)."""
    if _positive_peak(trace):
        extreme, sign = int(np.argmax(trace)), 1.0
    else:
        extreme, sign = int(np.argmin(trace)), -1.0
    threshold = trace[extreme] * 0.5
    before = np.flatnonzero(sign * trace[:extreme] > sign * threshold)
    after = np.flatnonzero(sign * trace[extreme:] < sign * threshold)
    if before.size == 0 or after.size == 0:
        return float("nan")
    return float((times[after[0] + extreme] - times[before[0]]) * 1e3)


def _flipped(trace: np.ndarray) -> tuple[np.ndarray, int]:
    """The trace turned so its largest deflection points down, and that deflection's index."""
    extreme = int(np.argmax(np.abs(trace)))
    return -trace * np.sign(trace[extreme]), extreme


def _repolarization_slope(trace: np.ndarray, times: np.ndarray, window: int) -> float:
    flipped, extreme = _flipped(trace)
    return float(linregress(times[extreme : extreme + window], flipped[extreme : extreme + window])[0] * 1e-6)


def _recovery_slope(trace: np.ndarray, times: np.ndarray, window: int) -> float:
    flipped, extreme = _flipped(trace)
    peak = int(np.argmax(flipped[extreme:])) + extreme
    return float(linregress(times[peak : peak + window], flipped[peak : peak + window])[0] * 1e-6)


def _2d_features(
    waveform: np.ndarray, times: np.ndarray, peak: int, threshold: float, site_range: int, spacing_m: float
) -> tuple[float, float, float, float]:
    """(amplitude, spread, velocity_above, velocity_below) on every second site within site_range of the peak.

    As Allen, the trough times index `times`, the upsampled clock, with the original sample indices."""
    if site_range % 2:
        raise ValueError(f"waveform metrics: site_range must be even, got {site_range}")
    sites = np.arange(-site_range, site_range + 1, 2) + peak
    sites = sites[(sites > 0) & (sites < waveform.shape[0])]
    wv = waveform[sites]
    troughs = np.argmin(wv, 1)
    peak_to_trough = wv.max(1) - wv.min(1)
    amplitude = float(np.max(peak_to_trough))
    largest = int(np.argmax(peak_to_trough))
    above_threshold = np.flatnonzero(peak_to_trough > amplitude * threshold)
    if len(above_threshold) > 1:
        above_threshold = above_threshold[_not_outlier(above_threshold)]
    spread = len(above_threshold) * spacing_m * 1e6
    offsets = (sites - peak)[above_threshold]
    delays = (times[troughs] - times[troughs[largest]])[above_threshold]
    return amplitude, float(spread), *_velocities(offsets, delays, spacing_m)


def _velocities(offsets: np.ndarray, delays: np.ndarray, spacing_m: float) -> tuple[float, float]:
    """Slopes (s/m) of trough delay against site offset at and above (>= 0) / at and below (<= 0) the peak
    site; NaN with fewer than two sites."""
    result = []
    for side in (offsets >= 0, offsets <= 0):
        result.append(float(linregress(offsets[side], delays[side])[0] / spacing_m) if side.sum() > 1 else np.nan)
    return result[0], result[1]


def _not_outlier(points: np.ndarray, threshold: float = 1.5) -> np.ndarray:
    """Modified z-score (Iglewicz and Hoaglin 1993) <= threshold."""
    distance = np.abs(points - np.median(points))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.6745 * distance / np.median(distance) <= threshold
