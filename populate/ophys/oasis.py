"""Thresholded non-negative deconvolution (OASIS, AR(1)) of a calcium trace: the ``enhanced`` events.

Friedrich, Zhou & Paninski (2017), "Fast online deconvolution of calcium imaging data", PLoS Comput Biol
13(3): e1005423, Algorithm 1 with the minimum-spike-size constraint of its section "Hard shrinkage and L0
penalty": the calcium ``c`` minimises ``||y - c||^2`` subject to ``s_t = c_t - gamma c_{t-1}`` being 0 or
at least ``s_min``. The pool-adjacent-violators pass keeps pools (value, weight, start, length); a new
frame opens a pool, and while the last pool's value falls below ``gamma^len * previous + s_min`` the two
merge into their weighted least-squares value. Each pool start but the first is an event of magnitude
``v_i - gamma^len_{i-1} v_{i-1}``. Values are clipped at 0 (calcium is non-negative).

The indicator's rise is removed first (:func:`remove_rise`): with a spike response ``exp(-t/decay) -
exp(-t/rise)``, ``u_t = y_t - rho y_{t-1}`` (``rho = exp(-1 / (rise * fs))``) decays as a pure AR(1) with
``gamma``, so one spike is one jump of ``u`` instead of several along the rise. Jumps in neighbouring
frames are one event (:func:`merge_adjacent`), which the caller then keeps when it is large enough.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def deconvolve(y: np.ndarray, gamma: float, s_min: float) -> np.ndarray:
    """(T,) event magnitudes of one trace: thresholded OASIS AR(1) (module docstring), 0 where none."""
    n_frames = y.size
    value = np.empty(n_frames)
    weight = np.empty(n_frames)
    start = np.empty(n_frames, np.int64)
    length = np.empty(n_frames, np.int64)
    n = 0
    for t in range(n_frames):
        value[n], weight[n], start[n], length[n] = y[t], 1.0, t, 1
        n += 1
        while n > 1 and value[n - 1] < gamma ** length[n - 2] * value[n - 2] + s_min:
            decay = gamma ** length[n - 2]
            total = weight[n - 2] + decay * decay * weight[n - 1]
            value[n - 2] = (weight[n - 2] * value[n - 2] + decay * weight[n - 1] * value[n - 1]) / total
            weight[n - 2] = total
            length[n - 2] += length[n - 1]
            n -= 1
    events = np.zeros(n_frames)
    for i in range(1, n):
        jump = max(value[i], 0.0) - gamma ** length[i - 1] * max(value[i - 1], 0.0)
        if jump > 0:
            events[start[i]] = jump
    return events


def rise_factor(rise_time: float, fs: float) -> float:
    """Per-frame factor ``exp(-1 / (rise_time * fs))`` of the indicator's rise; 0 for an instantaneous rise."""
    if rise_time < 0 or fs <= 0:
        raise ValueError(f"rise time {rise_time} s and frame rate {fs} Hz must be >= 0 and > 0")
    return float(np.exp(-1.0 / (rise_time * fs))) if rise_time > 0 else 0.0


def remove_rise(trace: np.ndarray, rho: float) -> np.ndarray:
    """``u_t = y_t - rho y_{t-1}`` (``u_0 = y_0``): the trace with the indicator's rise deconvolved."""
    out = np.array(trace, dtype=np.float64)
    out[1:] -= rho * np.asarray(trace, dtype=np.float64)[:-1]
    return out


def merge_adjacent(events: np.ndarray) -> np.ndarray:
    """Events in neighbouring frames as one: a frame with an event opens one unless the frame before opened one,
    in which case its magnitude is added to that event (the rule of ``brainobs.ingest.synthetic.scoring.traces``)."""
    events = np.asarray(events, dtype=np.float64)
    out = np.zeros_like(events)
    opened = -2
    for frame in np.flatnonzero(events > 0):
        if frame - opened > 1:
            opened = frame
        out[opened] += events[frame]
    return out
