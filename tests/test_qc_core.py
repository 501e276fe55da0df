"""QC core: every check is defined and documented, missing inputs are NOT_SET with a reason, ROI-level
findings are counts that never gate an experiment, and the release policy."""

from __future__ import annotations

import numpy as np
import pytest

from brainobs.populate import qc
from brainobs.populate.qc import Outcome
from tests.conftest import REPO

T = qc.DEFAULT_QC_THRESHOLDS


def clean_checks() -> list[qc.Check]:
    """Every experiment, container and session check on inputs a clean recording gives."""
    rng = np.random.default_rng(0)
    offsets = rng.normal(0, 1, 2000)
    checks = qc.motion_checks(offsets, offsets[::-1], 4.0, T)
    checks += qc.intensity_checks(100 + rng.normal(0, 1, 2000), T)
    checks.append(qc.saturation_check(rng.uniform(0, 1000, (64, 64)), 4095.0, T))
    checks += qc.roi_checks(40, np.full(40, 0.7), np.zeros(40, bool), np.zeros(40, bool), T)
    checks.append(qc.alignment_check(2000, 2000, T))
    checks.append(qc.detection_bins_check(60, 50, ""))
    checks += qc.container_checks(3, 0.8, T)
    checks.append(qc.dropped_frames_check(np.arange(3000) / 60.0, T))
    checks.append(qc.unit_count_check("probeA", 50, 20))
    checks.append(qc.lick_count_check(250, passive=False))
    scene = 100 + 20 * rng.standard_normal((48, 48))  # a still field of view: its frames differ by noise only
    checks.append(qc.z_drift_check(qc.epoch_images(scene + rng.normal(0, 5, (200, 48, 48))), 4.0, T))
    checks.append(qc.dead_channel_check("probeA", rng.uniform(5, 8, 64), T))
    checks.append(qc.residual_crosstalk_check(rng.normal(0, 3, 30), np.ones(30, bool), np.ones(30, bool), T))
    return checks


def test_every_check_is_defined_and_every_threshold_belongs_to_a_check():
    made = {c.name.split(":")[0] for c in clean_checks()}
    assert made == set(qc.CHECK_DEFINITIONS)
    read = {key for d in qc.CHECK_DEFINITIONS.values() for key in d.thresholds}
    assert read == set(T), "a threshold no check reads, or a check reading an unknown threshold"
    for name, definition in qc.CHECK_DEFINITIONS.items():
        assert definition.definition and definition.unit and definition.source, name
        assert definition.level in ("experiment", "container", "session"), name


def test_readme_explains_every_check():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### What each QC check means", 1)[1].split("\n## ", 1)[0]
    for name in qc.CHECK_DEFINITIONS:
        assert f"`{name}`" in section, name


def test_clean_inputs_pass_every_check():
    failing = [c for c in clean_checks() if c.outcome is not Outcome.PASS]
    assert not failing, failing


def test_roi_level_findings_are_counts_that_never_gate():
    flags = np.ones(30, bool)  # every ROI flagged: still not an experiment outcome
    checks = {c.name: c for c in qc.roi_checks(30, np.full(30, 0.7), flags, flags, T)}
    for name in ("negative_transient_rois", "negative_baseline_rois"):
        assert checks[name].value == 30 and checks[name].outcome is Outcome.PASS
        assert not np.isfinite(checks[name].threshold) and "not an experiment gate" in checks[name].reason
        assert not qc.CHECK_DEFINITIONS[name].gates
    assert qc.worst(c.outcome for c in checks.values()) is Outcome.PASS


def test_missing_inputs_are_not_set_with_the_reason():
    assert qc.alignment_check(100, None, T).reason == "not evaluated: no sync record for this session"
    drift, bleach = qc.intensity_checks(np.ones(5), T)
    assert drift.outcome is bleach.outcome is Outcome.NOT_SET and "5 frame means" in drift.reason
    assert "no display frames" in qc.dropped_frames_check(None, T).reason
    assert qc.saturation_check(np.ones((4, 4)), None, T).outcome is Outcome.NOT_SET
    neuropil = {c.name: c for c in qc.roi_checks(0, np.array([np.nan]), np.zeros(0), np.zeros(0), T)}
    assert neuropil["neuropil_r_median"].reason == "not evaluated: no ROI has a neuropil r"
    assert neuropil["valid_roi_count"].outcome is Outcome.FAIL  # no usable ROI at all fails


@pytest.mark.parametrize(
    ("outcome", "allowed", "released"),
    [
        (Outcome.PASS, Outcome.PASS, True),
        (Outcome.WARNING, Outcome.PASS, False),
        (Outcome.WARNING, Outcome.WARNING, True),
        (Outcome.FAIL, Outcome.WARNING, False),
        (Outcome.CRITICAL, Outcome.WARNING, False),
        (Outcome.NOT_SET, Outcome.WARNING, False),  # nothing was evaluated: withheld
    ],
)
def test_release_policy(outcome, allowed, released):
    verdict = qc.release_verdict(outcome, allowed)
    assert (verdict == "") == released
    if outcome is Outcome.NOT_SET:
        assert "NOT_SET" in verdict


def test_a_not_set_check_does_not_block_an_evaluated_item():
    checks = [qc.limit_check("max_shift_px", 3.0, 20, 30), qc.alignment_check(100, None, T)]
    assert qc.release_verdict(qc.worst(c.outcome for c in checks), Outcome.PASS) == ""


def test_containers_single_session_failed_matching_and_too_few_sessions():
    single = {c.name: c for c in qc.container_checks(1, float("nan"), T)}
    assert qc.worst(c.outcome for c in single.values()) is Outcome.PASS
    assert "single-session" in single["session_count"].reason
    failed = {c.name: c for c in qc.container_checks(3, float("nan"), T, failure="best SSIM 0.05 < 0.3")}
    assert failed["cell_matching"].outcome is Outcome.FAIL and "best SSIM 0.05" in failed["cell_matching"].reason
    assert failed["match_fraction"].outcome is Outcome.NOT_SET
    two = {c.name: c for c in qc.container_checks(2, 0.8, T)}
    assert two["session_count"].outcome is Outcome.FAIL


def test_a_probe_without_units_fails():
    assert qc.unit_count_check("probeB", 0, 0).outcome is Outcome.FAIL
    assert qc.unit_count_check("probeB", 3, 0).name == "unit_count:probeB"


def test_an_active_session_without_licks_fails_and_a_passive_one_is_not_set():
    assert qc.lick_count_check(0, passive=False).outcome is Outcome.FAIL
    passive = qc.lick_count_check(0, passive=True)
    assert passive.outcome is Outcome.NOT_SET and "passive session" in passive.reason
    assert qc.lick_count_check(None, passive=False).reason == "not evaluated: no behavior record for this session"


def test_residual_crosstalk_of_a_mesoscope_plane():
    cells, converged = np.ones(6, bool), np.ones(6, bool)
    single = qc.residual_crosstalk_check(None, None, None, T)
    assert single.outcome is Outcome.PASS and single.value == 0 and "single plane" in single.reason
    left = np.array([-30.0, 25.0, 28.0, -35.0, 900.0, np.nan])  # a ghost-like outlier and a dropped ROI
    assert qc.residual_crosstalk_check(left, converged, cells, T).outcome is Outcome.FAIL
    assert qc.residual_crosstalk_check(left / 2, converged, cells, T).outcome is Outcome.WARNING
    # only converged cells count: the same large ratios on ghosts and unconverged ROIs do not
    mixed = np.array([2.0, -3.0, 1.0, 400.0, 500.0, 600.0])
    kept = np.array([True, True, True, False, True, True])
    assert qc.residual_crosstalk_check(mixed, np.array([1, 1, 1, 1, 0, 0], bool), kept, T).outcome is Outcome.PASS
    none = qc.residual_crosstalk_check(mixed, np.zeros(6, bool), cells, T)
    assert none.outcome is Outcome.FAIL and "uncorrectable" in none.reason
    assert qc.residual_crosstalk_check(mixed, converged, np.zeros(6, bool), T).outcome is Outcome.NOT_SET
