"""The session master clock: display frames to times, and times to 2-photon frames and ephys samples."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def check_increasing(times: np.ndarray, what: str) -> None:
    """Raise ValueError when `times` are not finite and strictly increasing."""
    if not np.isfinite(times).all():
        raise ValueError(f"{what}: timestamps must be finite")
    if (np.diff(times) <= 0).any():
        index = int(np.flatnonzero(np.diff(times) <= 0)[0]) + 1
        raise ValueError(f"{what}: timestamps do not increase at index {index}")


def frame_times(vsync_times: np.ndarray, frames: ArrayLike, delay_s: float = 0.0) -> np.ndarray:
    """Master-clock time of display frames: their vsync edge plus `delay_s` (the monitor delay, for stimuli)."""
    frames = np.asarray(frames, dtype=np.int64)
    if frames.size and (frames.min() < 0 or frames.max() >= vsync_times.size):
        raise ValueError(f"display frame outside the {vsync_times.size} vsyncs of the sync record")
    return vsync_times[frames] + delay_s


def time_to_frame_index(times: ArrayLike, frame_starts: np.ndarray) -> np.ndarray:
    """Index of the frame whose start is the last at or before each time.

    -1 for a time before the first frame start or later than one median frame period after the last start.
    Works for 2-photon frame pulses as well as display vsyncs.
    """
    times = np.asarray(times, dtype=float)
    index = np.searchsorted(frame_starts, times, side="right") - 1
    period = float(np.median(np.diff(frame_starts))) if frame_starts.size > 1 else np.inf
    outside = (index < 0) | (times >= frame_starts[-1] + period) | ~np.isfinite(times)
    return np.where(outside, -1, index)


def ephys_sample_times(samples: ArrayLike, t_start_s: float, fs: float) -> np.ndarray:
    """Master-clock time of ephys samples of a recording that starts at `t_start_s` and samples at `fs` Hz."""
    if fs <= 0:
        raise ValueError(f"sampling rate must be positive, got {fs}")
    return t_start_s + np.asarray(samples, dtype=float) / fs


def time_to_ephys_sample(times: ArrayLike, t_start_s: float, fs: float) -> np.ndarray:
    """Index of the last ephys sample at or before each master-clock time (negative before the start)."""
    if fs <= 0:
        raise ValueError(f"sampling rate must be positive, got {fs}")
    offsets = (np.asarray(times, dtype=float) - t_start_s) * fs
    # a time that sits on a sample up to float rounding belongs to that sample
    return np.floor(offsets + 1e-6).astype(np.int64)
