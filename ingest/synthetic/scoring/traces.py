"""Scores of 2-photon traces and events against the synthetic ground truth.

- :func:`trace_correlations`: Pearson correlation of each matched ROI's trace with its cell's true calcium.
- :func:`event_f1`: detected events vs true spikes, one-to-one matches within +-``tolerance_frames``.

What counts as one event (:func:`event_onsets`), on both sides alike: a frame with activity (spikes, or an
event magnitude > 0) opens an event unless the frame before opened one. Spikes in neighbouring frames can be
a millisecond apart across the frame boundary, so they are one event, as several spikes in one frame are; a
detector that spreads one event over two neighbouring frames reports one event. Activity two frames apart
(at least one frame period) is two events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EVENT_TOLERANCE_FRAMES = 2


def trace_correlations(traces: np.ndarray, true_calcium: np.ndarray, match: Sequence[tuple[int, int]]) -> np.ndarray:
    """Pearson r of ``traces[roi]`` with ``true_calcium[cell]`` for each ``(roi, cell)`` pair in ``match``.

    traces: (n_roi, T) any trace stage (raw, demixed, corrected, dF/F); true_calcium: (n_cell, T) on the
    same frames. Returns (len(match),) float64; NaN where either trace holds NaN or is constant.
    """
    traces = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    true_calcium = np.atleast_2d(np.asarray(true_calcium, dtype=np.float64))
    if traces.shape[1] != true_calcium.shape[1]:
        raise ValueError(f"traces have {traces.shape[1]} frames, true calcium {true_calcium.shape[1]}")
    out = np.full(len(match), np.nan)
    for k, (roi, cell) in enumerate(match):
        a = traces[roi] - traces[roi].mean()
        b = true_calcium[cell] - true_calcium[cell].mean()
        norm = np.sqrt(np.dot(a, a) * np.dot(b, b))
        if np.isfinite(norm) and norm > 0:
            out[k] = float(np.dot(a, b) / norm)
    return out


@dataclass(frozen=True)
class EventScore:
    """Counts and rates of an event-detection comparison (NaN rates when undefined)."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else float("nan")

    @property
    def recall(self) -> float:
        real = self.true_positives + self.false_negatives
        return self.true_positives / real if real else float("nan")

    @property
    def f1(self) -> float:
        total = 2 * self.true_positives + self.false_positives + self.false_negatives
        return 2 * self.true_positives / total if total else float("nan")


def match_frames(detected: np.ndarray, true: np.ndarray, tolerance: int) -> int:
    """Largest number of one-to-one pairs |detected - true| <= tolerance between two frame lists
    (greedy over sorted frames, which is optimal for points on a line)."""
    detected, true = np.sort(detected), np.sort(true)
    i = j = matched = 0
    while i < detected.size and j < true.size:
        if abs(int(detected[i]) - int(true[j])) <= tolerance:
            matched += 1
            i += 1
            j += 1
        elif detected[i] < true[j]:
            i += 1
        else:
            j += 1
    return matched


def event_onsets(active: np.ndarray) -> np.ndarray:
    """Frames that open an event in a boolean (T,) row: active frames whose previous frame opened none."""
    onsets: list[int] = []
    for frame in np.flatnonzero(active):
        if not onsets or frame - onsets[-1] > 1:
            onsets.append(int(frame))
    return np.asarray(onsets, dtype=np.int64)


def event_f1(events: np.ndarray, true_spikes: np.ndarray, tolerance_frames: int = EVENT_TOLERANCE_FRAMES) -> EventScore:
    """Detected events vs true spikes, pooled over rows.

    events: (T,) or (n, T) event magnitudes (a frame with a value > 0 is a detection; NaN rows detect
    nothing). true_spikes: same shape, spike counts or booleans per frame. Events on both sides are
    :func:`event_onsets`; each detected event matches at most one true event within +-``tolerance_frames``.
    """
    events = np.atleast_2d(np.asarray(events, dtype=np.float64))
    true_spikes = np.atleast_2d(np.asarray(true_spikes, dtype=np.float64))
    if events.shape != true_spikes.shape:
        raise ValueError(f"events {events.shape} and true spikes {true_spikes.shape} differ in shape")
    tp = fp = fn = 0
    for detected_row, true_row in zip(events, true_spikes, strict=True):
        detected = event_onsets(np.nan_to_num(detected_row) > 0)
        true = event_onsets(true_row > 0)
        matched = match_frames(detected, true, tolerance_frames)
        tp += matched
        fp += detected.size - matched
        fn += true.size - matched
    return EventScore(tp, fp, fn)
