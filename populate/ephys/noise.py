"""Noise clusters from the mean waveform: the rule-based checks of ecephys_spike_sorting's noise_templates
module (Jia et al. 2019; Siegle et al. 2021), docs/methods.md.

A unit is noise when its waveform
- spreads over too few or too many channels (spread check; a mid-size spread must pass the shape check),
- has its largest spatial deflection far from the alignment sample (temporal-peak check), or
- (mid-size spread only) lacks a spike-like trough in the mean of its channels' normalised differences to
  the peak channel, found with a Ricker wavelet (shape check), or
- has scattered spatial peaks: at the sample of largest deflection, the waveform interpolated (cubic) from
  Neuropixels 1.0 electrode positions onto a virtual 7-column, 10 um grid shows peaks along the probe whose
  positions spread by more than peak_locs_std_thresh rows (spatial-peaks check). As in Allen's code, the
  electrode positions are Neuropixels 1.0's whatever the probe, and a peak's grid row is compared with the
  peak channel's index.
Allen's random-forest classifier is not run.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.interpolate import griddata
from scipy.ndimage import gaussian_filter1d
from scipy.signal import convolve, find_peaks

from brainobs.populate.ephys.presets import NOISE_TEMPLATE_PARAMS as N


def is_noise(waveform: np.ndarray, params: dict = N) -> bool:
    """True when the mean waveform (samples x channels, every channel of the probe) fails a rule."""
    waveform = np.asarray(waveform, dtype=float)
    if waveform.ndim != 2 or waveform.shape[0] < 2 or waveform.shape[1] < 1:
        raise ValueError(f"noise check: the mean waveform must be samples x channels, got {waveform.shape}")
    if not np.isfinite(waveform).all() or not np.abs(waveform).max() > 0:
        return True  # no spike at all
    return bad_temporal_peak(waveform, params) or bad_spread(waveform, params) or bad_spatial_peaks(waveform, params)


def bad_temporal_peak(waveform: np.ndarray, params: dict = N) -> bool:
    """The sample where the across-channel range is largest lies outside the allowed window."""
    peak = int(np.argmax(waveform.max(1) - waveform.min(1)))
    return peak < params["min_temporal_peak_location"] or peak > params["max_temporal_peak_location"]


def bad_spread(waveform: np.ndarray, params: dict = N) -> bool:
    """Channel count above a fraction of the largest channel: too few (single-channel artefact), too many
    (probe-wide noise), or in between and failing the shape check."""
    largest = np.abs(waveform).max(0)
    largest = largest / largest.max()
    smoothed = gaussian_filter1d(largest, params["smoothed_template_filter_width"])
    wide = int(np.sum(smoothed > params["smoothed_template_amplitude_threshold"]))
    narrow = int(np.sum(largest > params["template_amplitude_threshold"]))
    if wide <= params["mid_spread_threshold"]:
        return narrow < params["min_spread_threshold"]
    if wide <= params["max_spread_threshold"]:
        return bad_shape(waveform, params)
    return True


def bad_shape(waveform: np.ndarray, params: dict = N) -> bool:
    """Every 4th channel within template_shape_channel_range of the peak, each normalised to its largest
    magnitude, minus the peak channel's; their mean filtered with a Ricker wavelet must peak above
    min_wavelet_peak_height strictly between min_ and max_wavelet_peak_loc. Channels beyond the probe ends
    are left out (Allen's indexing wraps a negative index to the other end of the probe)."""
    peak = int(np.argmax(waveform.max(0) - waveform.min(0)))
    reach = params["template_shape_channel_range"]
    offsets = np.arange(-reach, reach + 1, 4)
    columns = np.full((waveform.shape[0], offsets.size), np.nan)
    for i, offset in enumerate(offsets):
        channel = peak + offset
        if 0 <= channel < waveform.shape[1] and np.abs(waveform[:, channel]).max() > 0:
            columns[:, i] = waveform[:, channel] / np.abs(waveform[:, channel]).max()
    relative = columns - columns[:, [offsets.size // 2]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row with every channel missing is NaN
        mean = np.nanmean(relative, 1)
    filtered = ricker_filter(mean, params["wavelet_width"])
    location, height = int(np.argmax(filtered)), float(np.max(filtered))
    good = (
        height > params["min_wavelet_peak_height"]
        and params["min_wavelet_peak_loc"] < location < params["max_wavelet_peak_loc"]
    )
    return not good


NP1_COLUMNS_UM = (16.0, 48.0, 0.0, 32.0)  # x of channel i is NP1_COLUMNS_UM[i % 4]; y is (i // 2) * 20 um
GRID_COLUMNS_UM = np.arange(7) * 8.0  # the virtual grid: 7 columns 8 um apart, rows 10 um apart


def bad_spatial_peaks(waveform: np.ndarray, params: dict = N) -> bool:
    """Peaks of the waveform along the probe, on the virtual grid at the sample of largest deflection, in
    each of the 5 inner columns large enough (channel_amplitude_thresh of the largest value), near the peak
    channel (peak_channel_range rows), have a standard deviation above peak_locs_std_thresh rows."""
    n_channels = waveform.shape[1]
    peak_channel = int(np.argmax(waveform.max(0) - waveform.min(0)))
    peak_sample = int(np.argmax(waveform.max(1) - waveform.min(1)))
    channels = np.arange(n_channels)
    electrodes = np.column_stack([np.take(NP1_COLUMNS_UM, channels % 4), (channels // 2) * 20.0])
    rows = np.arange(n_channels) * 10.0
    grid = np.column_stack([np.tile(GRID_COLUMNS_UM, n_channels), np.repeat(rows, GRID_COLUMNS_UM.size)])
    values = griddata(electrodes, waveform[peak_sample], grid, method="cubic", fill_value=0.0, rescale=False)
    inner = values.reshape(n_channels, GRID_COLUMNS_UM.size)[:, 1:6]
    flat = inner.ravel()
    sign = np.sign(flat[np.argmax(np.abs(flat))])
    largest = np.abs(inner).max()
    locations: list[int] = []
    for column in inner.T:
        if np.abs(column).max() < largest * params["channel_amplitude_thresh"]:
            continue
        profile = column * sign
        profile = profile / np.abs(profile).max()
        found, _ = find_peaks(profile, height=params["peak_height_thresh"], prominence=params["peak_prominence_thresh"])
        reach = params["peak_channel_range"]
        locations.extend(found[(found > peak_channel - reach) & (found < peak_channel + reach)])
    return len(locations) > 0 and float(np.std(locations)) > params["peak_locs_std_thresh"]


def ricker_filter(signal: np.ndarray, width: float) -> np.ndarray:
    """The signal convolved ('same' length) with a Ricker (Mexican hat) wavelet of the given width, on
    min(10 x width, len(signal)) points: one row of a continuous wavelet transform."""
    points = int(min(10 * width, len(signal)))
    t = np.arange(points) - (points - 1) / 2
    amplitude = 2 / (np.sqrt(3 * width) * np.pi**0.25)
    wavelet = amplitude * (1 - t**2 / width**2) * np.exp(-(t**2) / (2 * width**2))
    return convolve(signal, wavelet[::-1], mode="same")


def quality_labels(waveforms: list[np.ndarray], params: dict = N) -> list[str]:
    """'noise' or 'good' for each mean waveform (samples x channels)."""
    return ["noise" if is_noise(w, params) else "good" for w in waveforms]
