"""Quality control: named checks with a value, a threshold and an outcome; the worst outcome wins.

Outcomes order as NOT_SET < PASS < WARNING < FAIL < CRITICAL. Thresholds come from a parameter set
(:data:`DEFAULT_QC_THRESHOLDS`); every check states the rule it applied in its ``reason``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Outcome(IntEnum):
    """A QC outcome; comparisons follow severity."""

    NOT_SET = 0  # not evaluated (input missing)
    PASS = 1  # within limits
    WARNING = 2  # usable, but a reviewer should look
    FAIL = 3  # not released unless a reviewer overrides
    CRITICAL = 4  # broken data or processing; never released


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The most severe outcome; NOT_SET when there is none."""
    return max(outcomes, default=Outcome.NOT_SET)


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float
    outcome: Outcome
    reason: str


def limit_check(name: str, value: float, warn: float | None, fail: float, *, higher_is_worse: bool = True) -> Check:
    """PASS inside the limits, WARNING past ``warn``, FAIL past ``fail``; NaN values are NOT_SET."""
    if value is None or not np.isfinite(value):
        return Check(name, float("nan"), fail, Outcome.NOT_SET, f"{name} could not be computed")
    sign = 1.0 if higher_is_worse else -1.0
    word = ">" if higher_is_worse else "<"
    if sign * value > sign * fail:
        return Check(name, float(value), fail, Outcome.FAIL, f"{name} = {value:.4g} {word} {fail:.4g}")
    if warn is not None and sign * value > sign * warn:
        return Check(name, float(value), warn, Outcome.WARNING, f"{name} = {value:.4g} {word} {warn:.4g}")
    return Check(name, float(value), fail, Outcome.PASS, f"{name} = {value:.4g} within {fail:.4g}")


DEFAULT_QC_THRESHOLDS: dict[str, float] = {
    "max_shift_px_warn": 20.0,  # largest motion correction in any direction
    "max_shift_px_fail": 30.0,
    "shift_limit_px": 10.0,  # a frame moved further than this is a "large-motion" frame
    "large_motion_fraction_warn": 0.05,
    "large_motion_fraction_fail": 0.2,
    "intensity_drift_warn": 0.2,  # |relative change| of mean frame intensity over the session (linear fit)
    "intensity_drift_fail": 0.4,
    "bleaching_ratio_warn": 0.8,  # mean of the last 10 % of frames / mean of the first 10 %
    "bleaching_ratio_fail": 0.6,
    "saturation_fraction_warn": 0.001,  # fraction of max-projection pixels at the saturation level
    "saturation_fraction_fail": 0.01,
    "valid_roi_min_warn": 10,
    "valid_roi_min_fail": 1,
    "neuropil_r_median_max": 1.0,  # median r above this means neuropil dominates
    "neuropil_r_median_min": 0.1,
    "negative_baseline_fraction_warn": 0.05,
    "negative_baseline_fraction_fail": 0.2,
    "negative_transient_fraction_warn": 0.1,
    "negative_transient_fraction_fail": 0.3,
    "frame_count_mismatch_fail": 0,
    "dropped_frames_fraction_warn": 0.001,  # display frames that took over 1.5x the median interval
    "dropped_frames_fraction_fail": 0.01,  # movie frames vs. sync pulses: any difference fails
    "container_min_sessions": 3,
    "container_max_sessions": 11,
    "match_fraction_warn": 0.5,  # fraction of ROIs matched between each pair of sessions (lowest pair)
    "match_fraction_fail": 0.2,
}


def motion_checks(x_offset: np.ndarray, y_offset: np.ndarray, max_correction: float, t: dict) -> list[Check]:
    """Largest correction, and the fraction of frames moved further than ``shift_limit_px``."""
    distance = np.hypot(np.asarray(x_offset, float), np.asarray(y_offset, float))
    fraction = float(np.mean(distance > t["shift_limit_px"])) if distance.size else float("nan")
    return [
        limit_check("max_shift_px", max_correction, t["max_shift_px_warn"], t["max_shift_px_fail"]),
        limit_check(
            "large_motion_fraction", fraction, t["large_motion_fraction_warn"], t["large_motion_fraction_fail"]
        ),
    ]


def intensity_checks(frame_means: np.ndarray, t: dict) -> list[Check]:
    """Drift (relative change of a linear fit over the session) and bleaching (last/first 10 % of frames)."""
    means = np.asarray(frame_means, float)
    if means.size < 10 or not np.all(np.isfinite(means)) or means.mean() <= 0:
        nan = float("nan")
        return [limit_check("intensity_drift", nan, None, 0.0), limit_check("bleaching_ratio", nan, None, 0.0)]
    frames = np.arange(means.size)
    slope, intercept = np.polyfit(frames, means, 1)
    drift = float(slope * (means.size - 1) / max(intercept, 1e-12))
    tenth = max(1, means.size // 10)
    ratio = float(means[-tenth:].mean() / means[:tenth].mean())
    return [
        limit_check("intensity_drift", abs(drift), t["intensity_drift_warn"], t["intensity_drift_fail"]),
        limit_check(
            "bleaching_ratio", ratio, t["bleaching_ratio_warn"], t["bleaching_ratio_fail"], higher_is_worse=False
        ),
    ]


def saturation_check(max_image: np.ndarray, saturation_level: float, t: dict) -> Check:
    """Fraction of max-projection pixels at or above ``saturation_level``."""
    fraction = float(np.mean(np.asarray(max_image) >= saturation_level))
    return limit_check("saturation_fraction", fraction, t["saturation_fraction_warn"], t["saturation_fraction_fail"])


def roi_checks(
    n_valid: int,
    r_values: np.ndarray,
    negative_baseline: np.ndarray,
    negative_transient: np.ndarray,
    t: dict,
) -> list[Check]:
    """Valid ROI count, the neuropil r distribution, and the negative-baseline / transient fractions.

    No valid ROI at all always fails, saying so (an empty or constant movie, or no active cell)."""
    if n_valid == 0:
        reason = "no ROI: segmentation kept no valid ROI (an empty or constant movie, or no active cell)"
        checks = [Check("valid_roi_count", 0.0, t["valid_roi_min_fail"], Outcome.FAIL, reason)]
    else:
        checks = [
            limit_check(
                "valid_roi_count", n_valid, t["valid_roi_min_warn"], t["valid_roi_min_fail"], higher_is_worse=False
            )
        ]
    r = np.asarray(r_values, float)
    r = r[np.isfinite(r)]
    if r.size:
        median = float(np.median(r))
        low, high = t["neuropil_r_median_min"], t["neuropil_r_median_max"]
        outcome = Outcome.PASS if low <= median <= high else Outcome.WARNING
        reason = f"median r {median:.3g}, expected {low}-{high}"
        checks.append(Check("neuropil_r_median", median, high, outcome, reason))
    else:
        checks.append(Check("neuropil_r_median", float("nan"), t["neuropil_r_median_max"], Outcome.NOT_SET, "no r"))
    n = max(len(negative_baseline), 1)
    checks.append(
        limit_check(
            "negative_baseline_fraction",
            float(np.sum(negative_baseline)) / n,
            t["negative_baseline_fraction_warn"],
            t["negative_baseline_fraction_fail"],
        )
    )
    checks.append(
        limit_check(
            "negative_transient_fraction",
            float(np.sum(negative_transient)) / n,
            t["negative_transient_fraction_warn"],
            t["negative_transient_fraction_fail"],
        )
    )
    return checks


def alignment_check(n_movie_frames: int, n_sync_frames: int | None, t: dict) -> Check:
    """Temporal alignment: the movie must have exactly as many frames as the sync record has pulses."""
    if n_sync_frames is None:
        return Check("frame_count_mismatch", float("nan"), 0.0, Outcome.NOT_SET, "no sync record for this session")
    mismatch = abs(int(n_movie_frames) - int(n_sync_frames))
    outcome = Outcome.PASS if mismatch <= t["frame_count_mismatch_fail"] else Outcome.CRITICAL
    reason = f"movie has {n_movie_frames} frames, sync has {n_sync_frames} pulses"
    return Check("frame_count_mismatch", float(mismatch), float(t["frame_count_mismatch_fail"]), outcome, reason)


def container_checks(n_sessions: int, lowest_match_fraction: float, t: dict) -> list[Check]:
    """Session count within 3-11, and the lowest match fraction over session pairs."""
    low, high = t["container_min_sessions"], t["container_max_sessions"]
    outcome = Outcome.PASS if low <= n_sessions <= high else Outcome.FAIL
    return [
        Check("session_count", float(n_sessions), float(low), outcome, f"{n_sessions} sessions, expected {low}-{high}"),
        limit_check(
            "match_fraction",
            lowest_match_fraction,
            t["match_fraction_warn"],
            t["match_fraction_fail"],
            higher_is_worse=False,
        ),
    ]


def dropped_frames_check(vsync_times: np.ndarray, t: dict) -> Check:
    """Fraction of display frames whose interval exceeds 1.5 times the median (a dropped frame)."""
    intervals = np.diff(np.asarray(vsync_times, float))
    if intervals.size == 0:
        return Check("dropped_frames_fraction", float("nan"), 0.0, Outcome.NOT_SET, "no display frames")
    fraction = float(np.mean(intervals > 1.5 * np.median(intervals)))
    return limit_check(
        "dropped_frames_fraction", fraction, t["dropped_frames_fraction_warn"], t["dropped_frames_fraction_fail"]
    )
