"""Quality control: named checks with a value, a threshold and an outcome; the worst outcome wins.

Outcomes order as NOT_SET < PASS < WARNING < FAIL < CRITICAL. Thresholds come from a parameter set
(:data:`DEFAULT_QC_THRESHOLDS`); :data:`CHECK_DEFINITIONS` says what each check measures, in which unit,
after which source, and which thresholds it reads (README "What each QC check means"). Every check states
the rule it applied in its ``reason``; a check whose input is missing is NOT_SET and says what is missing.
ROI-level findings (negative transients, negative baselines) label ROIs and are reported as counts; they
never decide an experiment's outcome. :func:`release_verdict` is the release policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy.ndimage import gaussian_filter


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


def limit_check(
    name: str,
    value: float,
    warn: float | None,
    fail: float,
    *,
    higher_is_worse: bool = True,
    missing: str = "its input is missing",
) -> Check:
    """PASS inside the limits, WARNING past ``warn``, FAIL past ``fail``; a NaN value is NOT_SET (``missing``)."""
    if value is None or not np.isfinite(value):
        return not_set(name, missing)
    sign = 1.0 if higher_is_worse else -1.0
    word = ">" if higher_is_worse else "<"
    if sign * value > sign * fail:
        return Check(name, float(value), fail, Outcome.FAIL, f"{name} = {value:.4g} {word} {fail:.4g}")
    if warn is not None and sign * value > sign * warn:
        return Check(name, float(value), warn, Outcome.WARNING, f"{name} = {value:.4g} {word} {warn:.4g}")
    return Check(name, float(value), fail, Outcome.PASS, f"{name} = {value:.4g} within {fail:.4g}")


DEFAULT_QC_THRESHOLDS: dict[str, float] = {
    "max_shift_px_warn": 20.0,
    "max_shift_px_fail": 30.0,
    "shift_limit_px": 10.0,
    "large_motion_fraction_warn": 0.05,
    "large_motion_fraction_fail": 0.2,
    "intensity_drift_warn": 0.2,
    "intensity_drift_fail": 0.4,
    "bleaching_ratio_warn": 0.8,
    "bleaching_ratio_fail": 0.6,
    "saturation_fraction_warn": 0.001,
    "saturation_fraction_fail": 0.01,
    "valid_roi_min_warn": 10,
    "valid_roi_min_fail": 1,
    "neuropil_r_median_max": 1.0,
    "neuropil_r_median_min": 0.1,
    "frame_count_mismatch_fail": 0,
    "dropped_frames_fraction_warn": 0.001,
    "dropped_frames_fraction_fail": 0.01,
    "container_min_sessions": 3,
    "container_max_sessions": 11,
    "match_fraction_warn": 0.5,
    "match_fraction_fail": 0.2,
    "z_drift_warn": 0.1,
    "z_drift_fail": 0.2,
    "z_drift_highpass_px": 8.0,
    "dead_channel_noise_fraction": 0.1,
    "dead_channel_run_warn": 1,
    "dead_channel_run_fail": 4,
    "residual_crosstalk_warn": 0.1,
    "residual_crosstalk_fail": 0.2,
}


@dataclass(frozen=True)
class CheckDefinition:
    """What a named check measures: its definition, unit, source, the thresholds it reads, and whether it
    gates (a reported count never changes an item's outcome: it is always PASS)."""

    level: str  # experiment, container, session
    definition: str
    unit: str
    source: str
    thresholds: tuple[str, ...]
    gates: bool = True


ALLEN_VB = "Allen Visual Behavior 2P QC (technical whitepaper, 'Quality control')"
CHECK_DEFINITIONS: dict[str, CheckDefinition] = {
    "max_shift_px": CheckDefinition(
        "experiment",
        "largest motion-correction shift in any direction (the registration border)",
        "pixels",
        f"{ALLEN_VB}: motion correction; the border is Allen's motion_border",
        ("max_shift_px_warn", "max_shift_px_fail"),
    ),
    "large_motion_fraction": CheckDefinition(
        "experiment",
        "fraction of frames whose rigid shift (hypot of x and y offsets) exceeds shift_limit_px",
        "fraction of frames",
        f"{ALLEN_VB}: motion correction",
        ("shift_limit_px", "large_motion_fraction_warn", "large_motion_fraction_fail"),
    ),
    "intensity_drift": CheckDefinition(
        "experiment",
        "rise of a straight-line fit to the mean frame intensity over the session / the fit's start value "
        "(a fall is bleaching_ratio's)",
        "fraction of the start intensity",
        f"{ALLEN_VB}: FOV intensity over the session; AIND ophys QC 'intensity drift'",
        ("intensity_drift_warn", "intensity_drift_fail"),
    ),
    "bleaching_ratio": CheckDefinition(
        "experiment",
        "mean intensity of the last tenth of the frames / that of the first tenth (lower is worse)",
        "ratio",
        "AIND ophys QC: photobleaching",
        ("bleaching_ratio_warn", "bleaching_ratio_fail"),
    ),
    "saturation_fraction": CheckDefinition(
        "experiment",
        "fraction of maximum-projection pixels at or above the movie's saturation level",
        "fraction of pixels",
        f"{ALLEN_VB}: saturated pixels",
        ("saturation_fraction_warn", "saturation_fraction_fail"),
    ),
    "z_drift": CheckDefinition(
        "experiment",
        "decorrelation of the registered field of view over the session: the mean Pearson r between the resting "
        "images (per-pixel 10th percentile of up to 256 frames) of the two halves of the first tenth of the "
        "frames and of the two halves of the last tenth "
        "(within an epoch), minus the mean r between an early and a late half-epoch image (across the "
        "session); images high-passed (minus a Gaussian blur of z_drift_highpass_px) and cropped to the "
        "motion border. A plane that moves in depth fades some somata and brings in others, so the early "
        "and late images decorrelate; intensity changes (a scale) and lateral motion (registered) do not",
        "r (within epochs - across the session)",
        f"{ALLEN_VB}: z-drift is measured there against a z-stack taken with the session (the depth of the "
        "best-matching stack plane, early against late). Our raw data hold no z-stack, so brainobs measures "
        "the decorrelation that such a drift causes in the registered movie instead",
        ("z_drift_highpass_px", "z_drift_warn", "z_drift_fail"),
    ),
    "residual_crosstalk": CheckDefinition(
        "experiment",
        "for a mesoscope plane: the median over its ROIs that decrosstalk kept as cells with a converged "
        "unmixing of |unmixed_ratio| / 100 (the slope of the paired plane's unmixed trace on the ROI's unmixed "
        "trace over its active frames: the share of its activity the unmixing left in the partner); a plane "
        "whose ROIs all failed to unmix (crosstalk outside Allen's [0, 0.3] constraint) FAILs; a single plane "
        "has no partner and passes with 0",
        "fraction of the ROI's activity",
        f"{ALLEN_VB}: 'uncorrectable crosstalk between simultaneously recorded multiscope planes'; the ratio is "
        "Allen's decrosstalk unmixed ratio; the thresholds are brainobs's (after unmixing, clean pairs of 0.05-0.25 "
        "crosstalk leave 0.03-0.04)",
        ("residual_crosstalk_warn", "residual_crosstalk_fail"),
    ),
    "valid_roi_count": CheckDefinition(
        "experiment",
        "valid ROIs of the segmentation whose demixed trace was kept (not labelled demix_error); lower is worse",
        "ROIs",
        "brainobs (Allen releases only experiments with cells)",
        ("valid_roi_min_warn", "valid_roi_min_fail"),
    ),
    "neuropil_r_median": CheckDefinition(
        "experiment",
        "median neuropil contamination ratio r over ROIs; outside [min, max] is a WARNING",
        "ratio",
        "Allen neuropil subtraction (r is expected near 0.7)",
        ("neuropil_r_median_min", "neuropil_r_median_max"),
    ),
    "negative_transient_rois": CheckDefinition(
        "experiment",
        "ROIs labelled negative_transient by demixing (Allen's rolling test); a ROI label, counted here",
        "ROIs",
        "Allen demixing find_negative_transients_threshold",
        (),
        gates=False,
    ),
    "negative_baseline_rois": CheckDefinition(
        "experiment",
        "ROIs whose demixed trace has mean + std < 0 (they and their two-hop overlap neighbours are labelled "
        "demix_error and left out of valid_roi_count); counted here",
        "ROIs",
        "Allen demixing find_negative_baselines",
        (),
        gates=False,
    ),
    "frame_count_mismatch": CheckDefinition(
        "experiment",
        "|movie frames - 2-photon frame pulses on the sync line|; any difference is CRITICAL",
        "frames",
        f"{ALLEN_VB}: temporal alignment",
        ("frame_count_mismatch_fail",),
    ),
    "dropped_frames_fraction": CheckDefinition(
        "session",
        "fraction of display (vsync) intervals longer than 1.5 x the median interval",
        "fraction of display frames",
        "Allen stimulus sync: dropped frames",
        ("dropped_frames_fraction_warn", "dropped_frames_fraction_fail"),
    ),
    "dead_channels": CheckDefinition(
        "session",
        "longest run of adjacent channels (ordered along the probe by y then x) whose noise (std of the raw "
        "signal over sampled chunks) is at most dead_channel_noise_fraction x the 90th percentile of the "
        "probe's channels (a live channel's noise): a dead or flat channel block (check name "
        "dead_channels:<probe>); NOT_SET without channel noise",
        "channels",
        "brainobs, after the per-channel 'dead' label of IBL's detect_bad_channels (also in SpikeInterface); "
        "a run, so that one flat channel passes (a Neuropixels 1.0 reference site is flat by design)",
        ("dead_channel_noise_fraction", "dead_channel_run_warn", "dead_channel_run_fail"),
    ),
    "unit_count": CheckDefinition(
        "session",
        "units the sorter found on one probe (check name unit_count:<probe>); none FAILs; the reason gives how "
        "many meet the Visual Coding preset",
        "units",
        "brainobs (Allen Visual Coding Neuropixels releases every unit, with quality metrics)",
        (),
    ),
    "lick_count": CheckDefinition(
        "session",
        "licks recorded in an active (not passive) behavior session; none FAILs (dead sensor or no engagement); "
        "NOT_SET for passive sessions",
        "licks",
        "brainobs (Allen Visual Behavior sessions are active change-detection tasks)",
        (),
    ),
    "detection_bins": CheckDefinition(
        "experiment",
        "temporal bins the movie gives ROI detection (frames / (bin duration * frame rate)); fewer than "
        "the reliable count WARNs that dim or slow cells may be missed (threshold: the segmentation module's "
        "RELIABLE_BINNED_FRAMES)",
        "bins",
        "brainobs (issue #19: ROI F1 drops on 2000-frame movies with Allen's 3.7 s bins)",
        (),
    ),
    "session_count": CheckDefinition(
        "container",
        "sessions in the container; outside [min, max] fails, except 1 (a single-session experiment passes)",
        "sessions",
        "Allen Visual Coding containers hold 3 sessions, Visual Behavior up to 11",
        ("container_min_sessions", "container_max_sessions"),
    ),
    "match_fraction": CheckDefinition(
        "container",
        "lowest fraction of ROIs matched between any pair of the container's sessions (lower is worse)",
        "fraction of ROIs",
        f"{ALLEN_VB}: FOV matching across sessions",
        ("match_fraction_warn", "match_fraction_fail"),
    ),
    "cell_matching": CheckDefinition(
        "container",
        "cell matching ran and matched the container (a failed matching is CRITICAL, with its reason)",
        "-",
        "brainobs",
        (),
    ),
}


def not_set(name: str, why: str) -> Check:
    """A check that could not be evaluated; ``why`` names the missing input."""
    return Check(name, float("nan"), float("nan"), Outcome.NOT_SET, f"not evaluated: {why}")


def release_verdict(outcome: Outcome, allowed: Outcome) -> str:
    """The release policy: '' when an item with this effective outcome is released, else why not.

    An item is released when its effective outcome (the worst of its evaluated checks, or a reviewer's
    override) is at most ``allowed``. A NOT_SET check ranks below PASS, so it never blocks an item whose
    other checks were evaluated; an item of which no check could be evaluated (outcome NOT_SET) is withheld.
    """
    if outcome is Outcome.NOT_SET:
        return "no QC check could be evaluated (NOT_SET)"
    if outcome > allowed:
        return f"{outcome.name} is worse than the policy's {allowed.name}"
    return ""


def motion_checks(x_offset: np.ndarray, y_offset: np.ndarray, max_correction: float, t: dict) -> list[Check]:
    """Largest correction, and the fraction of frames moved further than ``shift_limit_px``."""
    distance = np.hypot(np.asarray(x_offset, float), np.asarray(y_offset, float))
    fraction = float(np.mean(distance > t["shift_limit_px"])) if distance.size else float("nan")
    return [
        limit_check("max_shift_px", max_correction, t["max_shift_px_warn"], t["max_shift_px_fail"]),
        limit_check(
            "large_motion_fraction",
            fraction,
            t["large_motion_fraction_warn"],
            t["large_motion_fraction_fail"],
            missing="no motion offsets",
        ),
    ]


def intensity_checks(frame_means: np.ndarray, t: dict) -> list[Check]:
    """Bleaching (a loss of intensity) and drift (a rise of intensity), kept apart so each names one problem.

    bleaching_ratio = mean of the last tenth of the frames / mean of the first tenth.
    intensity_drift = the rise of a straight-line fit to the frame means over the session, relative to the
    fit's start (0 when the fit falls: a loss of intensity, whatever its cause, is what bleaching_ratio measures).
    A fit over every frame, not window means, so that slow activity and neuropil fluctuations average out.
    """
    means = np.asarray(frame_means, float)
    if means.size < 10 or not np.all(np.isfinite(means)) or means.mean() <= 0:
        why = f"{means.size} frame means; needs at least 10, all finite, with a positive mean"
        return [not_set("intensity_drift", why), not_set("bleaching_ratio", why)]
    slope, intercept = np.polyfit(np.arange(means.size), means, 1)
    tenth = max(1, means.size // 10)
    first, last = means[:tenth].mean(), means[-tenth:].mean()
    if intercept <= 0 or first <= 0:
        why = "the start of the session has no light"
        return [not_set("intensity_drift", why), not_set("bleaching_ratio", why)]
    rise = float(max(0.0, slope * (means.size - 1)) / intercept)
    return [
        limit_check("intensity_drift", rise, t["intensity_drift_warn"], t["intensity_drift_fail"]),
        limit_check(
            "bleaching_ratio",
            float(last / first),
            t["bleaching_ratio_warn"],
            t["bleaching_ratio_fail"],
            higher_is_worse=False,
        ),
    ]


def saturation_check(max_image: np.ndarray, saturation_level: float | None, t: dict) -> Check:
    """Fraction of max-projection pixels at or above ``saturation_level``."""
    image = np.asarray(max_image)
    if saturation_level is None or not np.isfinite(saturation_level) or image.size == 0:
        return not_set("saturation_fraction", "no maximum projection or saturation level")
    fraction = float(np.mean(image >= saturation_level))
    return limit_check("saturation_fraction", fraction, t["saturation_fraction_warn"], t["saturation_fraction_fail"])


EPOCH_SAMPLE_FRAMES = 256  # frames per half-epoch that its resting image is taken over
RESTING_PERCENTILE = 10.0


def epoch_images(movie, max_frames: int = EPOCH_SAMPLE_FRAMES) -> np.ndarray | None:
    """(4, height, width) resting images (per-pixel 10th percentile) of the two halves of the first tenth and of
    the last tenth of a registered movie (any array-like of frames indexed by a 1-D index array), each over up to
    ``max_frames`` frames evenly spaced in the half; None when the movie has fewer than 40 frames.

    A low percentile, not the mean: a mean image follows which cells happened to fire (bursts of activity last
    seconds), a resting image the field of view at rest, which is what a drift in depth changes."""
    n_frames = len(movie)
    tenth = n_frames // 10
    if tenth < 4:
        return None
    half = tenth // 2
    starts = (0, half, n_frames - tenth, n_frames - tenth + half)
    images = []
    for start in starts:
        index = np.unique(np.linspace(start, start + half - 1, min(half, max_frames)).astype(int))
        images.append(np.percentile(np.asarray(movie[index]), RESTING_PERCENTILE, axis=0))
    return np.stack(images)


def z_drift_check(epochs: np.ndarray | None, border_px: float, t: dict) -> Check:
    """Decorrelation of the field of view between the start and the end of the session (CHECK_DEFINITIONS).

    ``epochs``: :func:`epoch_images` of the registered movie; ``border_px``: the largest motion correction,
    cropped from every side. NOT_SET without epochs or when the crop leaves less than a quarter of the frame.
    """
    if epochs is None:
        return not_set("z_drift", "the movie has fewer than 40 frames")
    height, width = epochs.shape[1:]
    crop = int(np.ceil(max(float(border_px), 0.0)))
    if (height - 2 * crop) * (width - 2 * crop) < height * width / 4 or min(height, width) <= 2 * crop:
        return not_set("z_drift", f"the {crop} px motion border leaves less than a quarter of the frame")
    sigma = t["z_drift_highpass_px"]
    flat = [
        (image - gaussian_filter(image, sigma))[crop : height - crop, crop : width - crop].ravel() for image in epochs
    ]
    flat = [f - f.mean() for f in flat]
    if any(not np.any(f) for f in flat):
        return not_set("z_drift", "an epoch's resting image is flat")

    def r(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / np.sqrt((a @ a) * (b @ b)))

    within = (r(flat[0], flat[1]) + r(flat[2], flat[3])) / 2
    across = float(np.mean([r(flat[i], flat[j]) for i in (0, 1) for j in (2, 3)]))
    return limit_check("z_drift", within - across, t["z_drift_warn"], t["z_drift_fail"])


def residual_crosstalk_check(
    unmixed_ratio: np.ndarray | None, converged: np.ndarray | None, is_cell: np.ndarray | None, t: dict
) -> Check:
    """The partner's activity decrosstalk left in a mesoscope plane (CHECK_DEFINITIONS); per ROI of the plane:
    Allen's unmixed ratio, whether its own unmixing converged, and whether decrosstalk kept it as a cell.
    ``None`` for a single plane."""
    name = "residual_crosstalk"
    if unmixed_ratio is None or converged is None or is_cell is None:
        return Check(name, 0.0, t["residual_crosstalk_fail"], Outcome.PASS, "a single plane: no paired plane")
    converged = np.asarray(converged, bool)
    if converged.size and not converged.any():
        return Check(
            name, float("nan"), t["residual_crosstalk_fail"], Outcome.FAIL,
            f"uncorrectable crosstalk: the unmixing of none of the plane's {converged.size} ROIs converged",
        )  # fmt: skip
    ratios = np.abs(np.asarray(unmixed_ratio, float)[converged & np.asarray(is_cell, bool)]) / 100
    ratios = ratios[np.isfinite(ratios)]
    if not ratios.size:
        return not_set(name, "no ROI kept as a cell has a converged unmixing")
    return limit_check(name, float(np.median(ratios)), t["residual_crosstalk_warn"], t["residual_crosstalk_fail"])


def dead_channel_check(probe_name: str, noise: np.ndarray | None, t: dict) -> Check:
    """The longest run of adjacent dead channels on a probe (``noise``: per channel, ordered along the probe)."""
    name = f"dead_channels:{probe_name}"
    levels = None if noise is None else np.asarray(noise, float)
    if levels is None or levels.size == 0 or not np.all(np.isfinite(levels)):
        return not_set(name, f"{probe_name}: no channel noise levels")
    dead = levels <= t["dead_channel_noise_fraction"] * np.percentile(levels, 90)
    longest, run = 0, 0
    for flag in dead:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    check = limit_check(name, float(longest), t["dead_channel_run_warn"], t["dead_channel_run_fail"])
    reason = f"{probe_name}: {int(dead.sum())} of {levels.size} channels dead, longest adjacent run {longest}"
    return Check(check.name, check.value, check.threshold, check.outcome, f"{reason} ({check.reason})")


def roi_checks(
    n_usable: int,
    r_values: np.ndarray,
    negative_baseline: np.ndarray,
    negative_transient: np.ndarray,
    t: dict,
) -> list[Check]:
    """Usable ROI count and the neuropil r median (gates), and the counts of ROIs that demixing labelled.

    ``n_usable``: valid ROIs whose demixed trace was kept. ``negative_baseline`` / ``negative_transient``:
    per demixed ROI flags. They label ROIs (Demixing.ExclusionLabel), so they are reported as counts that
    never change the experiment's outcome.
    """
    if n_usable == 0:
        reason = "no ROI: no valid ROI with a usable trace (an empty or constant movie, or no active cell)"
        checks = [Check("valid_roi_count", 0.0, t["valid_roi_min_fail"], Outcome.FAIL, reason)]
    else:
        checks = [
            limit_check(
                "valid_roi_count", n_usable, t["valid_roi_min_warn"], t["valid_roi_min_fail"], higher_is_worse=False
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
        checks.append(not_set("neuropil_r_median", "no ROI has a neuropil r"))
    n = len(negative_transient)
    for name, flags, label in (
        ("negative_transient_rois", negative_transient, "negative_transient"),
        ("negative_baseline_rois", negative_baseline, "demix_error (negative baseline)"),
    ):
        count = int(np.sum(flags))
        reason = f"{count} of {n} demixed ROIs labelled {label}; a ROI label, not an experiment gate"
        checks.append(Check(name, float(count), float("nan"), Outcome.PASS, reason))
    return checks


def detection_bins_check(n_bins: int, reliable: int, warning: str) -> Check:
    """WARNING (with ``warning`` as the reason) when the movie gives detection fewer than ``reliable`` bins."""
    if warning:
        return Check("detection_bins", float(n_bins), float(reliable), Outcome.WARNING, warning)
    return Check("detection_bins", float(n_bins), float(reliable), Outcome.PASS, f"{n_bins} bins >= {reliable}")


def alignment_check(n_movie_frames: int, n_sync_frames: int | None, t: dict) -> Check:
    """Temporal alignment: the movie must have exactly as many frames as the sync record has pulses."""
    if n_sync_frames is None:
        return not_set("frame_count_mismatch", "no sync record for this session")
    mismatch = abs(int(n_movie_frames) - int(n_sync_frames))
    outcome = Outcome.PASS if mismatch <= t["frame_count_mismatch_fail"] else Outcome.CRITICAL
    reason = f"movie has {n_movie_frames} frames, sync has {n_sync_frames} pulses"
    return Check("frame_count_mismatch", float(mismatch), float(t["frame_count_mismatch_fail"]), outcome, reason)


def container_checks(n_sessions: int, lowest_match_fraction: float, t: dict, failure: str = "") -> list[Check]:
    """Session count within [container_min_sessions, container_max_sessions] (a container of one session is a
    single-session experiment and passes), whether cell matching succeeded (``failure``: the matcher's reason
    when it did not; then FAIL), and the lowest match fraction."""
    low, high = t["container_min_sessions"], t["container_max_sessions"]
    if n_sessions == 1:
        single = "1 session: a single-session experiment, not a longitudinal container; released on its own"
        return [
            Check("session_count", 1.0, float(low), Outcome.PASS, single),
            Check("cell_matching", float("nan"), float("nan"), Outcome.PASS, "nothing to match"),
            not_set("match_fraction", "a single session has no pair to match"),
        ]
    outcome = Outcome.PASS if low <= n_sessions <= high else Outcome.FAIL
    if failure:
        matching = Check("cell_matching", float("nan"), float("nan"), Outcome.FAIL, f"cell matching failed: {failure}")
        fraction = not_set("match_fraction", "cell matching failed")
    else:
        matching = Check("cell_matching", float("nan"), float("nan"), Outcome.PASS, "matched")
        fraction = limit_check(
            "match_fraction",
            lowest_match_fraction,
            t["match_fraction_warn"],
            t["match_fraction_fail"],
            higher_is_worse=False,
            missing="no pair of sessions was matched",
        )
    count = Check(
        "session_count", float(n_sessions), float(low), outcome, f"{n_sessions} sessions, expected {low}-{high}"
    )
    return [count, matching, fraction]


def dropped_frames_check(vsync_times: np.ndarray | None, t: dict) -> Check:
    """Fraction of display frames whose interval exceeds 1.5 times the median (a dropped frame)."""
    intervals = np.diff(np.asarray([] if vsync_times is None else vsync_times, float))
    if intervals.size == 0:
        return not_set("dropped_frames_fraction", "no display frames (no stimulus sync record)")
    fraction = float(np.mean(intervals > 1.5 * np.median(intervals)))
    return limit_check(
        "dropped_frames_fraction", fraction, t["dropped_frames_fraction_warn"], t["dropped_frames_fraction_fail"]
    )


def unit_count_check(probe_name: str, n_units: int, n_passing: int) -> Check:
    """A probe's sorted units: FAIL when the sorter found none (a dead probe or a failed sorting)."""
    outcome = Outcome.PASS if n_units > 0 else Outcome.FAIL
    reason = f"{probe_name}: {n_units} units, {n_passing} meet the Visual Coding preset"
    return Check(f"unit_count:{probe_name}", float(n_units), 1.0, outcome, reason)


def lick_count_check(n_licks: int | None, passive: bool) -> Check:
    """An active behavior session must hold licks: none means a dead lick sensor or a disengaged animal."""
    if n_licks is None:
        return not_set("lick_count", "no behavior record for this session")
    if passive:
        return not_set("lick_count", f"passive session ({n_licks} licks): licks are not expected")
    outcome = Outcome.PASS if n_licks > 0 else Outcome.FAIL
    return Check("lick_count", float(n_licks), 1.0, outcome, f"{n_licks} licks in an active behavior session")
