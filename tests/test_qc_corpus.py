"""The QC corpus (tests/qc_corpus.py): clean data passes every check, each failure mode trips its own
check(s) and no other. Built at the level of the QC core functions from the synthetic generators' output."""

from __future__ import annotations

import numpy as np
import pytest

from brainobs.populate import qc
from brainobs.populate.matching import ROI, ExperimentROIs, RegistrationError, match_container
from brainobs.populate.qc import Outcome
from tests import qc_corpus
from tests.qc_corpus import OPHYS_CASES, Recording

T = qc.DEFAULT_QC_THRESHOLDS


def experiment_checks(recording: Recording) -> list[qc.Check]:
    """Every experiment and session check of one recording, as QC and SessionQC compute them."""
    shifts = np.concatenate([recording.y_shift, recording.x_shift])
    checks = qc.motion_checks(recording.x_shift, recording.y_shift, float(np.abs(shifts).max()), T)
    checks += qc.intensity_checks(recording.frame_means, T)
    checks.append(qc.saturation_check(recording.max_image, qc_corpus.SATURATION_LEVEL, T))
    none = np.zeros(recording.n_cells, bool)
    checks += qc.roi_checks(recording.n_cells, recording.neuropil_r, none, none, T)
    checks.append(qc.alignment_check(recording.n_movie_frames, recording.n_sync_frames, T))
    checks.append(qc.dropped_frames_check(recording.vsync_times, T))
    return checks


def container_checks(recordings: list[Recording]) -> list[qc.Check]:
    """ContainerQC of the recordings as one container: match them, then check."""
    experiments = [
        ExperimentROIs(
            i + 1,
            r.average_image,
            tuple(ROI(k, *np.nonzero(f >= 0.5), True) for k, f in enumerate(r.footprints) if (f >= 0.5).any()),
        )
        for i, r in enumerate(recordings)
    ]
    try:
        match = match_container(experiments)
    except RegistrationError as err:
        return qc.container_checks(len(recordings), float("nan"), T, failure=str(err))
    return qc.container_checks(len(recordings), min(p.match_fraction for p in match.pairs), T)


def tripped(checks: list[qc.Check]) -> set[str]:
    return {c.name for c in checks if c.outcome is not Outcome.PASS}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Recording]:
    root = tmp_path_factory.mktemp("qc-corpus")
    cases = {}
    for name, (changes, _) in OPHYS_CASES.items():
        (root / name).mkdir()
        cases[name] = qc_corpus.experiment(root / name, **changes)
    clean = cases["clean"]
    cases["sync_mismatch"] = qc_corpus.with_sync(clean, missing_pulses=3)
    cases["dropped_frames"] = qc_corpus.with_sync(clean, dropped_fraction=0.03)
    return cases


@pytest.mark.parametrize(
    ("case", "expected"),
    [(name, trips) for name, (_, trips) in OPHYS_CASES.items()]
    + [("sync_mismatch", {"frame_count_mismatch"}), ("dropped_frames", {"dropped_frames_fraction"})],
)
def test_each_case_trips_its_own_checks_and_no_other(corpus, case, expected):
    checks = experiment_checks(corpus[case])
    assert tripped(checks) == expected, [c.reason for c in checks if c.outcome is not Outcome.PASS]
    assert not any(c.outcome is Outcome.NOT_SET for c in checks)
    if expected:
        assert qc.worst(c.outcome for c in checks) >= Outcome.WARNING


def _containers(root, n_frames: int) -> tuple[list[Recording], list[Recording]]:
    """Three sessions of one field of view, and one of those with two unrelated fields of view."""
    for name in ("s0", "s1", "s2", "u1", "u2"):
        (root / name).mkdir()
    same = [qc_corpus.experiment(root / f"s{i}", session_index=i, n_frames=n_frames) for i in range(3)]
    others = [qc_corpus.experiment(root / f"u{i}", container_id=700001 + i, seed=i, n_frames=n_frames) for i in (1, 2)]
    return same, [same[0], *others]


def test_a_matched_container_passes_and_unrelated_fields_of_view_fail_matching(tmp_path):
    same, unrelated = _containers(tmp_path, n_frames=650)
    checks = container_checks(same)
    assert tripped(checks) == set(), [c.reason for c in checks]
    checks = {c.name: c for c in container_checks(unrelated)}
    assert tripped(list(checks.values())) == {"cell_matching", "match_fraction"}
    assert checks["cell_matching"].outcome is Outcome.FAIL and "failed" in checks["cell_matching"].reason
    assert checks["match_fraction"].outcome is Outcome.NOT_SET


@pytest.mark.xfail(
    strict=True,
    reason="known gap: on 6000-frame movies the matcher registers unrelated synthetic fields of view (SSIM above "
    "min_ssim) and matches ~47 % of their ROIs, so the container only WARNs on match_fraction",
)
def test_unrelated_fields_of_view_fail_matching_on_long_movies(tmp_path):
    _, unrelated = _containers(tmp_path, n_frames=qc_corpus.N_FRAMES)
    assert qc.worst(c.outcome for c in container_checks(unrelated)) >= Outcome.FAIL
