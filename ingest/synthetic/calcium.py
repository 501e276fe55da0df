"""Spikes and calcium of synthetic cells: modulated Poisson spiking and indicator kinetics."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter
from scipy.special import ndtr

MAX_RATE_HZ = 100.0


def ornstein_uhlenbeck(
    rng: np.random.Generator, shape: tuple[int, ...], n_frames: int, tau_frames: float
) -> np.ndarray:
    """Unit-variance Ornstein-Uhlenbeck processes along a last axis of n_frames, stationary from frame 0."""
    a = np.exp(-1.0 / max(tau_frames, 1e-6))
    noise = rng.standard_normal((*shape, n_frames))
    noise[..., 1:] *= np.sqrt(1 - a * a)
    return lfilter([1.0], [1.0, -a], noise, axis=-1)


def simulate_spikes(
    rates_hz: np.ndarray,
    n_frames: int,
    frame_rate: float,
    modulation: float,
    timescale_s: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Spikes per frame (n_cells, n_frames) uint8: Poisson with a slowly modulated rate (bursts).

    The rate of cell i is min(b_i * exp(modulation * z_i(t) - modulation**2 / 2), MAX_RATE_HZ), z_i an
    Ornstein-Uhlenbeck process of unit variance and time constant timescale_s, with b_i chosen so that
    the mean rate is rates_hz[i] despite the cap.
    """
    z = ornstein_uhlenbeck(rng, (len(rates_hz),), n_frames, timescale_s * frame_rate)
    base = _uncapped_rate(np.asarray(rates_hz, float), modulation)
    rate = np.minimum(base[:, None] * np.exp(modulation * z - modulation**2 / 2), MAX_RATE_HZ)
    return rng.poisson(rate / frame_rate).astype(np.uint8)


def _capped_mean(base: np.ndarray, modulation: float) -> np.ndarray:
    """E[min(base * g, MAX_RATE_HZ)] for g log-normal with mean 1 and log-sd modulation."""
    if modulation == 0:
        return np.minimum(base, MAX_RATE_HZ)
    cut = (np.log(MAX_RATE_HZ / base) + modulation**2 / 2) / modulation  # z above which the cap binds
    return base * ndtr(cut - modulation) + MAX_RATE_HZ * ndtr(-cut)


def _uncapped_rate(rates_hz: np.ndarray, modulation: float) -> np.ndarray:
    """The base rates whose capped modulated rate has mean rates_hz (bisection on a log scale)."""
    if (rates_hz >= MAX_RATE_HZ).any():
        raise ValueError(f"mean rates must be below {MAX_RATE_HZ} Hz")
    low, high = np.log(rates_hz), np.log(rates_hz) + 8.0
    for _ in range(60):
        middle = (low + high) / 2
        too_low = _capped_mean(np.exp(middle), modulation) < rates_hz
        low, high = np.where(too_low, middle, low), np.where(too_low, high, middle)
    return np.exp((low + high) / 2)


def _peak(rise_s: float, decay_s: float) -> float:
    """Maximum over time of exp(-t / decay) - exp(-t / rise)."""
    t_peak = np.log(decay_s / rise_s) * decay_s * rise_s / (decay_s - rise_s)
    return float(np.exp(-t_peak / decay_s) - np.exp(-t_peak / rise_s))


def indicator_kernel(frame_rate: float, rise_s: float, decay_s: float, n: int) -> np.ndarray:
    """dF/F after one spike (unit amplitude) in the n frames from the spike's frame on.

    A difference of exponentials (rise, decay) scaled to peak 1 in continuous time, sampled half a
    frame after the spike (a spike falls, on average, mid-frame).
    """
    t = (np.arange(n) + 0.5) / frame_rate
    return (np.exp(-t / decay_s) - np.exp(-t / rise_s)) / _peak(rise_s, decay_s)


def spikes_to_calcium(
    spikes: np.ndarray,
    dff_per_spike: np.ndarray,
    frame_rate: float,
    rise_s: float,
    decay_s: float,
    saturation_dff: float | None = None,
) -> np.ndarray:
    """dF/F of each cell: spikes per frame convolved with indicator_kernel times dff_per_spike.

    With saturation_dff, the linear dF/F x becomes x / (1 + x / saturation_dff).
    """
    dt = 1.0 / frame_rate
    counts = spikes.astype(float)
    decay = lfilter([np.exp(-0.5 * dt / decay_s)], [1.0, -np.exp(-dt / decay_s)], counts, axis=-1)
    rise = lfilter([np.exp(-0.5 * dt / rise_s)], [1.0, -np.exp(-dt / rise_s)], counts, axis=-1)
    linear = dff_per_spike[:, None] * (decay - rise) / _peak(rise_s, decay_s)
    return linear if saturation_dff is None else linear / (1.0 + linear / saturation_dff)
