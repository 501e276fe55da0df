"""Release policy and experiment / unit QC on plain records (populate.release, populate.qc_levels), no database."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np

from brainobs.populate import qc
from brainobs.populate.qc import Outcome
from brainobs.populate.qc_levels import ExperimentQCInputs, detection_bins, experiment_checks, unit_outcomes
from brainobs.populate.release import FILE_COLUMNS, embargo_withheld, qc_withheld, reusable_file

T = qc.DEFAULT_QC_THRESHOLDS


def _check(name: str, outcome: str, value: float = 1.0) -> dict:
    return {"check_name": name, "outcome": outcome, "reason": f"{name} is {outcome}", "value": value, "threshold": 2.0}


def test_an_embargoed_session_is_withheld_unless_the_release_includes_it():
    end, day = dt.date(2027, 1, 1), dt.date(2026, 6, 1)
    withheld = embargo_withheld(end, day, include_embargoed=False)
    assert withheld["check_name"] == "embargo" and "2027-01-01" in withheld["reason"]
    assert embargo_withheld(end, day, include_embargoed=True) is None
    assert embargo_withheld(end, end, include_embargoed=False) is None


def test_qc_withheld_names_the_first_worst_check_and_the_others():
    checks = [_check("a_check", "FAIL", 3.0), _check("b_check", "WARNING"), _check("c_check", "FAIL")]
    verdict = qc_withheld("experiment", Outcome.FAIL, Outcome.WARNING, None, checks)
    assert verdict["check_name"] == "a_check" and verdict["value"] == 3.0 and verdict["threshold"] == 2.0
    assert "also FAIL: c_check" in verdict["reason"] and "b_check" not in verdict["reason"]
    assert qc_withheld("experiment", Outcome.WARNING, Outcome.WARNING, None, checks) is None


def test_qc_withheld_without_qc_and_with_a_review():
    assert qc_withheld("session", None, Outcome.WARNING, None, [])["check_name"] == "missing QC"
    review = {"reviewer": "ana", "reason": "bad z-stack"}
    verdict = qc_withheld("container 7", Outcome.FAIL, Outcome.PASS, review, [_check("x", "PASS")])
    assert verdict == {"reason": "container 7: reviewer ana set FAIL: bad z-stack", "check_name": "override"}
    assert qc_withheld("x", Outcome.NOT_SET, Outcome.WARNING, None, [_check("x", "NOT_SET")]) is not None


def test_a_file_is_reused_only_when_recorded_and_present():
    row = {name: i for i, name in enumerate(FILE_COLUMNS)} | {"release_tag": "r1"}
    assert reusable_file([row], target_exists=True) == {name: row[name] for name in FILE_COLUMNS}
    assert reusable_file([row], target_exists=False) is None
    assert reusable_file([], target_exists=True) is None


def test_unit_outcomes_warn_on_unmet_conditions_and_fail_an_empty_sorting():
    result = unit_outcomes([3, 5], [[], ["isi_violations > 0.5", "amplitude_cutoff > 0.1"]])
    assert result.units == [
        (3, Outcome.PASS, ""),
        (5, Outcome.WARNING, "isi_violations > 0.5; amplitude_cutoff > 0.1"),
    ]
    assert result.outcome is Outcome.PASS and result.n_passing == 1
    empty = unit_outcomes([], [])
    assert empty.outcome is Outcome.FAIL and empty.units == [] and empty.n_passing == 0


def test_experiment_checks_name_every_experiment_check_once():
    rng = np.random.default_rng(1)
    offsets = rng.normal(0, 1, 2000)
    scene = 100 + 20 * rng.standard_normal((48, 48))
    inputs = ExperimentQCInputs(
        x_offset=offsets,
        y_offset=offsets[::-1],
        border_px=4.0,
        frame_mean=100 + rng.normal(0, 1, 2000),
        max_image=rng.uniform(0, 1000, (48, 48)),
        saturation_level=4095.0,
        epochs=qc.epoch_images(scene + rng.normal(0, 5, (200, 48, 48))),
        n_usable_rois=40,
        neuropil_r=np.full(40, 0.7),
        negative_baseline=np.zeros(40, bool),
        negative_transient=np.zeros(40, bool),
        n_frames=2000,
        frame_rate=31.0,
        bin_duration_s=3.7,
        n_sync_frames=1999,
    )
    checks = {c.name: c for c in experiment_checks(inputs, T)}
    experiment_level = {name for name, d in qc.CHECK_DEFINITIONS.items() if d.level == "experiment"}
    assert set(checks) == experiment_level
    assert checks["frame_count_mismatch"].outcome is Outcome.CRITICAL
    assert checks["detection_bins"].outcome is Outcome.WARNING  # 17 bins of 3.7 s
    assert checks["detection_bins"] == detection_bins(2000, 31.0, 3.7)
    assert detection_bins(6000, 31.0, 1.0).outcome is Outcome.PASS
    assert checks["residual_crosstalk"].outcome is Outcome.PASS  # a single plane
    unmixable = dataclasses.replace(inputs, decrosstalk=(np.full(5, np.nan), np.zeros(5, bool), np.ones(5, bool)))
    residual = {c.name: c for c in experiment_checks(unmixable, T)}["residual_crosstalk"]
    assert residual.outcome is Outcome.FAIL and "uncorrectable" in residual.reason
