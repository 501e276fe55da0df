"""The QC corpus (tests/qc_corpus.py): the outcome of every check on every case. Clean data passes every
check; each failure mode trips its own check(s) and no other. Built at the level of the QC core functions
from the synthetic generators' output."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from brainobs.ingest.synthetic.presets import PRESETS, OphysParams
from brainobs.populate import qc
from brainobs.populate.matching import ExperimentROIs, RegistrationError, RoiPixels, match_container
from brainobs.populate.ophys.params import OPHYS_PRESETS
from brainobs.populate.ophys.segmentation import RELIABLE_BINNED_FRAMES, binning, bins_warning
from brainobs.populate.qc import Outcome
from tests import qc_corpus
from tests.qc_corpus import OPHYS_CASES, Recording

T = qc.DEFAULT_QC_THRESHOLDS
PROBE = qc_corpus.PROBE_NAME
CONTAINER_FRAMES = 650  # short movies keep the corpus cheap; long ones: the slow test at the end

# case -> the checks it trips and their outcome; every other check of the case must PASS
EXPECTED: dict[str, dict[str, Outcome]] = {
    "clean": {},
    "intensity_drift": {"intensity_drift": Outcome.WARNING},
    "bleaching": {"bleaching_ratio": Outcome.FAIL},
    "saturation": {"saturation_fraction": Outcome.FAIL},
    # a 30 px shift in a 64 px frame leaves too little inside the motion border to measure z-drift
    "large_motion": {
        "max_shift_px": Outcome.WARNING,
        "large_motion_fraction": Outcome.FAIL,
        "z_drift": Outcome.NOT_SET,
    },
    "lateral_motion_within_limits": {},  # registered lateral motion is no z-drift
    "z_drift": {"z_drift": Outcome.FAIL},
    "low_roi_count": {"valid_roi_count": Outcome.WARNING},
    "short_movie": {"detection_bins": Outcome.WARNING},
    "sync_mismatch": {"frame_count_mismatch": Outcome.CRITICAL},
    "dropped_frames": {"dropped_frames_fraction": Outcome.FAIL},
    "no_licks": {"lick_count": Outcome.FAIL},
    "dead_probe_channels": {f"dead_channels:{PROBE}": Outcome.FAIL},
    "failed_matching": {"cell_matching": Outcome.FAIL, "match_fraction": Outcome.NOT_SET},
    "paired_plane": {},  # a mesoscope plane whose crosstalk (0.05, partner 0.15) unmixes
    "uncorrectable_crosstalk": {"residual_crosstalk": Outcome.FAIL},  # 0.45 each way: outside Allen's ICA bounds
}


def experiment_checks(recording: Recording) -> list[qc.Check]:
    """Every experiment check of one recording, as QC computes them."""
    border = float(np.abs(np.concatenate([recording.y_shift, recording.x_shift])).max())
    checks = qc.motion_checks(recording.x_shift, recording.y_shift, border, T)
    checks += qc.intensity_checks(recording.frame_means, T)
    checks.append(qc.saturation_check(recording.max_image, qc_corpus.SATURATION_LEVEL, T))
    checks.append(qc.z_drift_check(recording.epochs, border, T))
    none = np.zeros(recording.n_cells, bool)
    checks += qc.roi_checks(recording.n_cells, recording.neuropil_r, none, none, T)
    checks.append(qc.alignment_check(recording.n_movie_frames, recording.n_sync_frames, T))
    frame_rate, bin_s = OphysParams().frame_rate, OPHYS_PRESETS["allen"][0]["segmentation_bin_duration_s"]
    n_bins, _ = binning(recording.n_movie_frames, frame_rate, bin_s)
    warning = bins_warning(recording.n_movie_frames, frame_rate, bin_s)
    checks.append(qc.detection_bins_check(n_bins, RELIABLE_BINNED_FRAMES, warning))
    pair = recording.decrosstalk
    cells = None if pair is None else np.array([not labels for labels in pair.labels])
    unmixed, converged = (None, None) if pair is None else (pair.unmixed_ratio, pair.converged)
    checks.append(qc.residual_crosstalk_check(unmixed, converged, cells, T))
    return checks


def session_checks(recording: Recording) -> list[qc.Check]:
    """Every session check of the recording's session, as SessionQC computes them."""
    return [
        qc.dropped_frames_check(recording.vsync_times, T),
        qc.lick_count_check(recording.n_licks, recording.passive),
        qc.unit_count_check(PROBE, recording.n_units, recording.n_units),
        qc.dead_channel_check(PROBE, recording.channel_noise, T),
    ]


def container_checks(recordings: list[Recording]) -> list[qc.Check]:
    """ContainerQC of the recordings as one container: match them, then check."""
    experiments = [
        ExperimentROIs(
            i + 1,
            r.average_image,
            tuple(RoiPixels(k, *np.nonzero(f >= 0.5), True) for k, f in enumerate(r.footprints) if (f >= 0.5).any()),
        )
        for i, r in enumerate(recordings)
    ]
    try:
        match = match_container(experiments)
    except RegistrationError as err:
        return qc.container_checks(len(recordings), float("nan"), T, failure=str(err))
    return qc.container_checks(len(recordings), min(p.match_fraction for p in match.pairs), T)


def outcomes(checks: list[qc.Check]) -> dict[str, Outcome]:
    return {c.name: c.outcome for c in checks}


def _containers(root, clean_session, n_frames: int) -> tuple[list[Recording], list[Recording]]:
    """Three sessions of one field of view, and the first of those with two unrelated fields of view."""
    for name in ("s0", "s1", "s2", "u1", "u2"):
        (root / name).mkdir()
    same = [qc_corpus.experiment(root / f"s{i}", clean_session, session_index=i, n_frames=n_frames) for i in range(3)]
    others = [
        qc_corpus.experiment(root / f"u{i}", clean_session, container_id=700001 + i, seed=i, n_frames=n_frames)
        for i in (1, 2)
    ]
    return same, [same[0], *others]


@pytest.fixture(scope="module")
def clean_session(tmp_path_factory) -> qc_corpus.Session:
    return qc_corpus.session(tmp_path_factory.mktemp("qc-session"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, clean_session) -> dict[str, list[qc.Check]]:
    """Every check of every case: experiment, session and container level."""
    root = tmp_path_factory.mktemp("qc-corpus")
    recordings = {}
    for name, changes in OPHYS_CASES.items():
        (root / name).mkdir()
        recordings[name] = qc_corpus.experiment(root / name, clean_session, **changes)
    clean = recordings["clean"]
    recordings["sync_mismatch"] = qc_corpus.with_sync(clean, missing_pulses=3)
    recordings["dropped_frames"] = qc_corpus.with_sync(clean, dropped_fraction=0.03)
    recordings["no_licks"] = qc_corpus.with_session(clean, qc_corpus.session(root / "no-licks", lick_sensor=False))
    dead = qc_corpus.session(root / "dead-probe", dead_channels=tuple(range(4, 12)))
    recordings["dead_probe_channels"] = qc_corpus.with_session(clean, dead)
    recordings["failed_matching"] = clean
    for name, crosstalk in (("paired_plane", (0.05, 0.15)), ("uncorrectable_crosstalk", (0.45, 0.45))):
        (root / name).mkdir()
        recordings[name] = dataclasses.replace(clean, decrosstalk=qc_corpus.paired_plane(root / name, crosstalk))
    (root / "containers").mkdir()
    same, unrelated = _containers(root / "containers", clean_session, CONTAINER_FRAMES)
    matched, failed = container_checks(same), container_checks(unrelated)
    # a container check reads only the matching of the container; every case but failed_matching is an
    # experiment of the matched container
    return {
        name: experiment_checks(r) + session_checks(r) + (failed if name == "failed_matching" else matched)
        for name, r in recordings.items()
    }


def test_the_corpus_covers_every_check_and_every_failure_mode_of_the_issue(corpus):
    assert set(corpus) == set(EXPECTED)
    for checks in corpus.values():
        assert {c.name.split(":")[0] for c in checks} == set(qc.CHECK_DEFINITIONS)


@pytest.mark.parametrize("case", list(EXPECTED))
def test_each_case_trips_its_own_checks_and_no_other(corpus, case):
    got = outcomes(corpus[case])
    expected = {name: EXPECTED[case].get(name, Outcome.PASS) for name in got}
    assert got == expected, [c.reason for c in corpus[case] if c.outcome is not expected[c.name]]
    if EXPECTED[case]:
        assert qc.worst(got.values()) >= Outcome.WARNING


def test_dead_channel_rule_counts_the_longest_adjacent_run():
    live = np.full(16, 6.0)
    single, scattered, block = live.copy(), live.copy(), live.copy()
    single[5] = 0.0  # a reference site is flat by design
    scattered[[1, 3, 5, 7, 9, 11]] = 0.1
    block[8:11] = 0.2
    assert qc.dead_channel_check("p", single, T).outcome is Outcome.PASS
    assert qc.dead_channel_check("p", scattered, T).outcome is Outcome.PASS
    check = qc.dead_channel_check("p", block, T)
    assert (check.value, check.outcome) == (3.0, Outcome.WARNING) and "3 of 16" in check.reason
    assert qc.dead_channel_check("p", None, T).outcome is Outcome.NOT_SET
    assert qc.dead_channel_check("p", np.zeros(16), T).value == 16


def test_z_drift_needs_a_long_enough_movie_and_room_inside_the_motion_border():
    movie = np.random.default_rng(0).poisson(50, (39, 32, 32)).astype(float)
    assert qc.epoch_images(movie) is None
    assert qc.z_drift_check(None, 0, T).outcome is Outcome.NOT_SET
    epochs = qc.epoch_images(np.concatenate([movie, movie]))
    assert epochs.shape == (4, 32, 32)
    assert qc.z_drift_check(epochs, 9, T).outcome is Outcome.NOT_SET


@pytest.mark.slow
def test_unrelated_fields_of_view_fail_matching_on_long_movies(tmp_path, clean_session):
    """Cleaner average images of long movies scored unrelated fields of view up to SSIM 0.27: min_ssim is 0.35."""
    _, unrelated = _containers(tmp_path, clean_session, n_frames=qc_corpus.N_FRAMES)
    checks = {c.name: c for c in container_checks(unrelated)}
    assert checks["cell_matching"].outcome is Outcome.FAIL and "below min_ssim" in checks["cell_matching"].reason


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_the_demo_survey_recordings_pass_every_movie_and_session_check(tmp_path, seed):
    """`brainobs demo`'s three movies (the demo preset's container) and its probe, for two seeds, at the level of
    the QC core: every experiment and session check passes, except that the demo's 4000-frame movies give
    fewer detection bins than reliable detection needs, a WARNING that a release under the default policy takes
    (the pipeline's ROI checks are tested on the tiny survey, seeds 0 and 7, in test_pipeline_tables.py and
    test_release_qc.py)."""
    demo = PRESETS["demo"]
    changes = {f.name: getattr(demo.ophys, f.name) for f in dataclasses.fields(OphysParams)}
    session = qc_corpus.session(tmp_path, seed=seed, probe_channels=demo.ephys_num_channels)
    for index in range(3):
        (tmp_path / str(index)).mkdir()
        recording = qc_corpus.experiment(tmp_path / str(index), session, session_index=index, seed=seed, **changes)
        checks = experiment_checks(recording) + session_checks(recording)
        expected = {c.name: Outcome.WARNING if c.name == "detection_bins" else Outcome.PASS for c in checks}
        assert {c.name: c.outcome for c in checks} == expected, [c.reason for c in checks if c.outcome != Outcome.PASS]
