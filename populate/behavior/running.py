"""Running speed from the running-wheel encoder: unwrap, glitch and outlier removal, low-pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage, signal

from brainobs.populate.behavior.clock import check_increasing


@dataclass(frozen=True)
class RunningParams:
    """Encoder geometry and cleaning parameters (defaults: Allen rig, 6.5 inch wheel, mouse at 2/3 radius)."""

    wheel_radius_cm: float = 6.5 * 2.54 / 2
    running_radius_fraction: float = 2.0 / 3.0
    wrap_low_fraction: float = 0.3  # a wrap goes from above (1 - this) * vin to below this * vin, or back
    max_voltage_step: float = 1.0  # V per frame; a larger unwrapped step is an encoder glitch
    median_window_frames: int = 7
    outlier_n_sigma: float = 10.0
    outlier_floor_cm_s: float = 10.0
    lowpass_hz: float = 10.0
    filter_order: int = 3

    @property
    def running_radius_cm(self) -> float:
        return self.wheel_radius_cm * self.running_radius_fraction


def unwrapped_voltage_steps(vsig: np.ndarray, vin: np.ndarray, params: RunningParams) -> np.ndarray:
    """Voltage change from the previous frame with encoder wraps undone; NaN for frame 0 and glitches."""
    previous = vsig[:-1]
    current = vsig[1:]
    low = params.wrap_low_fraction * vin[1:]
    high = (1.0 - params.wrap_low_fraction) * vin[1:]
    steps = current - previous
    forward_wrap = (previous > high) & (current < low)
    backward_wrap = (previous < low) & (current > high)
    steps = np.where(forward_wrap, steps + vin[1:], steps)
    steps = np.where(backward_wrap, steps - vin[1:], steps)
    steps = np.where(np.abs(steps) <= params.max_voltage_step, steps, np.nan)
    return np.concatenate([[np.nan], steps])


def remove_outliers(speed: np.ndarray, params: RunningParams) -> np.ndarray:
    """Mask (True = outlier) of samples far from a running median: > n robust SD and > the floor."""
    filled = _interpolate_nans(speed)
    deviation = filled - ndimage.median_filter(filled, size=params.median_window_frames, mode="nearest")
    valid = np.isfinite(speed)
    sigma = 1.4826 * np.median(np.abs(deviation[valid])) if valid.any() else 0.0
    threshold = max(params.outlier_n_sigma * sigma, params.outlier_floor_cm_s)
    return valid & (np.abs(deviation) > threshold)


def _interpolate_nans(values: np.ndarray) -> np.ndarray:
    good = np.isfinite(values)
    if good.all() or not good.any():
        return np.where(good, values, 0.0)
    index = np.arange(values.size)
    return np.interp(index, index[good], values[good])


def compute_running_speed(
    timestamps: np.ndarray, vsig: np.ndarray, vin: np.ndarray, params: RunningParams | None = None
) -> pd.DataFrame:
    """Running speed in cm/s at each encoder sample time (the display vsyncs; no monitor delay).

    Columns: timestamps, speed_raw (NaN at frame 0, glitches and outliers), speed (gaps interpolated,
    zero-phase Butterworth low-pass), outlier (glitch or outlier), dx (wheel rotation since the previous
    sample, degrees; NaN at frame 0 and at glitches), v_sig, v_in.
    """
    params = params or RunningParams()
    timestamps = np.asarray(timestamps, dtype=float)
    vsig = np.asarray(vsig, dtype=float)
    vin = np.asarray(vin, dtype=float)
    if not (timestamps.size == vsig.size == vin.size):
        raise ValueError(f"encoder has {vsig.size} vsig and {vin.size} vin samples for {timestamps.size} timestamps")
    if timestamps.size < 3 * (params.filter_order + 1) + 2:
        raise ValueError(f"encoder record of {timestamps.size} samples is too short to filter")
    check_increasing(timestamps, "encoder timestamps")
    angle_steps = unwrapped_voltage_steps(vsig, vin, params) / vin * 2 * np.pi
    dt = np.diff(timestamps, prepend=np.nan)
    speed_raw = angle_steps / dt * params.running_radius_cm
    outlier = remove_outliers(speed_raw, params)
    speed_raw[outlier] = np.nan
    rate = 1.0 / float(np.median(np.diff(timestamps)))
    if params.lowpass_hz >= rate / 2:
        raise ValueError(f"low-pass {params.lowpass_hz} Hz is not below the Nyquist rate of {rate:.2f} Hz samples")
    b, a = signal.butter(params.filter_order, params.lowpass_hz, btype="lowpass", fs=rate)
    speed = signal.filtfilt(b, a, _interpolate_nans(speed_raw))
    return pd.DataFrame(
        {
            "timestamps": timestamps,
            "speed_raw": speed_raw,
            "speed": speed,
            "outlier": outlier | (np.isnan(angle_steps) & (np.arange(vsig.size) > 0)),
            "dx": np.degrees(angle_steps),
            "v_sig": vsig,
            "v_in": vin,
        }
    )
