"""QC of each level from plain inputs: the checks of one 2-photon experiment, and the outcomes of one sorting's units.

``experiment_checks`` and ``unit_outcomes`` are what QC.make and UnitQC.make call; the single checks they
combine are in :mod:`brainobs.populate.qc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainobs.populate import qc
from brainobs.populate.ophys.segmentation import RELIABLE_BINNED_FRAMES, binning, bins_warning


@dataclass(frozen=True)
class ExperimentQCInputs:
    """What experiment QC reads of one experiment's motion correction, movie, ROIs, traces and sync record."""

    x_offset: np.ndarray  # px per frame
    y_offset: np.ndarray
    border_px: float  # largest correction towards any side
    frame_mean: np.ndarray  # mean intensity per frame
    max_image: np.ndarray
    saturation_level: float | None
    epochs: np.ndarray | None  # resting images of the registered movie's epochs (qc.epoch_images)
    n_usable_rois: int  # valid ROIs whose demixed trace was kept
    neuropil_r: np.ndarray  # per ROI
    negative_baseline: np.ndarray  # per demixed ROI
    negative_transient: np.ndarray
    n_frames: int
    frame_rate: float  # Hz
    bin_duration_s: float  # detection bin of the parameter set
    n_sync_frames: int | None  # 2-photon pulses on the sync line; None without a sync record
    # a mesoscope plane's decrosstalk, per ROI: unmixed ratio, unmixing converged, kept as a cell; None: one plane
    decrosstalk: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def detection_bins(n_frames: int, frame_rate: float, bin_duration_s: float) -> qc.Check:
    """The detection-bin check of a movie of ``n_frames`` at ``frame_rate`` Hz binned as Segmentation bins it."""
    n_bins, _ = binning(n_frames, frame_rate, bin_duration_s)
    return qc.detection_bins_check(n_bins, RELIABLE_BINNED_FRAMES, bins_warning(n_frames, frame_rate, bin_duration_s))


def experiment_checks(inputs: ExperimentQCInputs, t: dict) -> list[qc.Check]:
    """Every check of one experiment: motion, intensity, saturation, z-drift, ROIs, detection bins, alignment,
    residual crosstalk."""
    x, y = np.asarray(inputs.x_offset), np.asarray(inputs.y_offset)
    checks = qc.motion_checks(x, y, inputs.border_px, t)
    checks += qc.intensity_checks(np.asarray(inputs.frame_mean), t)
    checks.append(qc.saturation_check(inputs.max_image, inputs.saturation_level, t))
    checks.append(qc.z_drift_check(inputs.epochs, inputs.border_px, t))
    checks += qc.roi_checks(
        inputs.n_usable_rois,
        np.asarray(inputs.neuropil_r, float),
        np.asarray(inputs.negative_baseline, bool),
        np.asarray(inputs.negative_transient, bool),
        t,
    )
    checks.append(detection_bins(inputs.n_frames, inputs.frame_rate, inputs.bin_duration_s))
    checks.append(qc.alignment_check(inputs.n_frames, inputs.n_sync_frames, t))
    checks.append(qc.residual_crosstalk_check(*(inputs.decrosstalk or (None, None, None)), t))
    return checks


@dataclass(frozen=True)
class UnitOutcomes:
    """The unit QC of one sorting: per unit (id, outcome, reason), the sorting's outcome and passing count."""

    units: list[tuple[int, qc.Outcome, str]]
    outcome: qc.Outcome
    n_passing: int


def unit_outcomes(unit_ids: Sequence[int], unmet: Sequence[Sequence[str]]) -> UnitOutcomes:
    """PASS for a unit that meets every condition of the release preset, else WARNING naming the unmet
    conditions (units are never dropped); the sorting FAILs when it found no unit."""
    units = [
        (int(unit_id), qc.Outcome.WARNING if failed else qc.Outcome.PASS, "; ".join(failed))
        for unit_id, failed in zip(unit_ids, unmet, strict=True)
    ]
    n_passing = sum(outcome is qc.Outcome.PASS for _, outcome, _ in units)
    return UnitOutcomes(units, qc.Outcome.PASS if units else qc.Outcome.FAIL, n_passing)
