"""Unit metrics whose released Allen definition differs from SpikeInterface's (docs/methods.md).

Spike times are in seconds. `min_time` and `max_time` are the first and last spike of ALL units in the
epoch (Allen's bounds), not the recording edges and not the unit's own first and last spike.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import silhouette_score as pair_silhouette

from brainobs.populate.ephys.presets import ALLEN_METRIC_PARAMS as P


def firing_rate(spike_times: np.ndarray, min_time: float, max_time: float) -> float:
    """Spikes per second between the epoch's first and last spike."""
    duration = max_time - min_time
    return float(len(spike_times) / duration) if duration > 0 else float("nan")


def presence_ratio(
    spike_times: np.ndarray, min_time: float, max_time: float, num_bin_edges: int = P["presence_num_bin_edges"]
) -> float:
    """Fraction of the num_bin_edges - 1 (99) equal bins between min and max time that hold a spike, divided
    by num_bin_edges (100), so a unit present throughout scores 0.99."""
    counts, _ = np.histogram(spike_times, np.linspace(min_time, max_time, num_bin_edges))
    return float(np.count_nonzero(counts) / num_bin_edges)


def isi_violations(
    spike_times: np.ndarray,
    min_time: float,
    max_time: float,
    isi_threshold_s: float = P["isi_threshold_s"],
    min_isi_s: float = P["min_isi_s"],
) -> tuple[float, int]:
    """Hill et al. (2011) contamination rate and the violation count.

    Spikes within min_isi_s of the previous one are dropped first. rate = (v / (2 N (threshold - min_isi)))
    / (N / (max_time - min_time)), with v the ISIs below threshold; it can exceed 1.
    """
    train = np.sort(np.asarray(spike_times, dtype=float))
    train = np.delete(train, np.flatnonzero(np.diff(train) <= min_isi_s) + 1)
    n = train.size
    violations = int(np.count_nonzero(np.diff(train) < isi_threshold_s))
    if n == 0 or max_time <= min_time:
        return float("nan"), violations
    violation_rate = violations / (2 * n * (isi_threshold_s - min_isi_s))
    return float(violation_rate / firing_rate(train, min_time, max_time)), violations


def amplitude_cutoff(
    amplitudes: np.ndarray,
    num_bins: int = P["amplitude_cutoff_num_bins"],
    smoothing_bins: float = P["amplitude_cutoff_smoothing_bins"],
    cap: float = P["amplitude_cutoff_max"],
) -> float:
    """Estimated fraction of spikes missed below the detection threshold (Hill et al. 2011).

    Density histogram of the (positive) amplitudes in num_bins bins, Gaussian-smoothed (sigma in bins);
    from the peak upwards, the first bin whose density is closest to the lowest-amplitude bin's marks the
    mirror of the cut; the mass from it upwards (times bin width) is the missing fraction, capped at `cap`.
    """
    amplitudes = np.asarray(amplitudes, dtype=float)
    if amplitudes.size == 0 or np.ptp(amplitudes) == 0:
        return float("nan")
    density, edges = np.histogram(amplitudes, num_bins, density=True)
    pdf = gaussian_filter1d(density, smoothing_bins)
    peak = int(np.argmax(pdf))
    mirror = peak + int(np.argmin(np.abs(pdf[peak:] - pdf[0])))
    bin_width = float(np.mean(np.diff(edges[:-1])))
    return float(min(pdf[mirror:].sum() * bin_width, cap))


def snr(waveforms: np.ndarray) -> float:
    """(max - min of the mean waveform) / (2 x std of the residuals), on one channel; waveforms (spikes, samples)."""
    waveforms = np.asarray(waveforms, dtype=float)
    mean = np.nanmean(waveforms, axis=0)
    noise = np.nanstd(waveforms - mean)
    return float((mean.max() - mean.min()) / (2 * noise)) if noise > 0 else float("nan")


def drift_metrics(
    spike_times: np.ndarray,
    depths: np.ndarray,
    min_time: float,
    max_time: float,
    interval_s: float = P["drift_interval_s"],
    min_spikes: int = P["drift_min_spikes_per_interval"],
) -> tuple[float, float]:
    """(max_drift, cumulative_drift) in the units of `depths` (um), rounded to 0.01.

    Median depth in consecutive interval_s bins starting at min_time (spikes strictly inside a bin), bins
    with fewer than min_spikes spikes skipped; max_drift = range of the medians, cumulative_drift = sum of
    the absolute changes between adjacent bins (a change next to a skipped bin is not counted).
    """
    spike_times, depths = np.asarray(spike_times, dtype=float), np.asarray(depths, dtype=float)
    medians = []
    for start in np.arange(min_time, max_time, interval_s):
        inside = (spike_times > start) & (spike_times < start + interval_s)
        medians.append(np.median(depths[inside]) if inside.sum() >= min_spikes else np.nan)
    medians = np.asarray(medians)
    if not np.isfinite(medians).any():
        return float("nan"), float("nan")
    max_drift = np.nanmax(medians) - np.nanmin(medians)
    cumulative = np.nansum(np.abs(np.diff(medians)))
    return float(np.round(max_drift, 2)), float(np.round(cumulative, 2))


def silhouette_scores(
    features: np.ndarray, labels: np.ndarray, max_spikes: int = P["nn_max_spikes"], seed: int = P["seed"]
) -> dict:
    """Unit label -> its worst (lowest) silhouette score against any other unit.

    Up to max_spikes spikes are drawn at random (fixed seed); for each pair of units the silhouette score
    of their spikes alone is computed in the feature space; a unit scores the minimum over its pairs (NaN
    when no pair has more than two spikes of two units).
    """
    features, labels = np.asarray(features, dtype=float), np.asarray(labels)
    keep = np.random.default_rng(seed).permutation(labels.size)[:max_spikes]
    features, labels = features[keep].reshape(len(keep), -1), labels[keep]
    units = np.unique(labels)
    best = {u: np.nan for u in units}
    for i, u1 in enumerate(units):
        for u2 in units[i + 1 :]:
            pair = (labels == u1) | (labels == u2)
            if pair.sum() <= 2 or np.count_nonzero(labels == u1) < 2 or np.count_nonzero(labels == u2) < 2:
                continue
            score = pair_silhouette(features[pair], labels[pair])
            best[u1] = np.nanmin([best[u1], score])
            best[u2] = np.nanmin([best[u2], score])
    return {u: float(v) for u, v in best.items()}
