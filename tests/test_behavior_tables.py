"""Behavior tables on a real database, scored against the synthetic truth."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

pytestmark = pytest.mark.db


@pytest.fixture
def behavior_session(db, settings):
    """One ingested session whose behavior folder was written by the synthetic writer."""
    from brainobs.ingest.manifest import load_manifest
    from brainobs.ingest.synthetic.behavior import write_behavior
    from brainobs.schemas.loading import insert_manifest

    root = settings.data_root
    truth = root / "truth-501"
    write_behavior(
        root / "M9" / "501" / "behavior",
        truth,
        duration_s=900,
        passive=False,
        image_set="A",
        seed=5,
        ophys_frame_rate=31.0,
        n_ophys_frames=900 * 31,
    )
    manifest = root / "behavior-manifest.yaml"
    manifest.write_text(
        "subjects: [{subject_id: M9, sex: M, indicator: GCaMP6f}]\n"
        "sessions: [{session_id: 501, subject_id: M9, session_type: OPHYS_1_images_A, modality: ophys,\n"
        "            session_start_time: 2026-03-02T09:30:00, behavior_dir: M9/501/behavior}]\n"
    )
    insert_manifest(load_manifest(manifest, root))
    return {"subject_id": "M9", "session_id": 501}, truth


def test_behavior_tables_match_the_truth(behavior_session, settings):
    from brainobs.pipeline import populate_all
    from brainobs.schemas.behavior import Behavior, SessionSync

    key, truth = behavior_session
    results = populate_all(settings)
    failures = {name: r["error_list"] for name, r in results.items() if r["error_list"]}
    assert not failures, failures
    sync = (SessionSync & key).fetch1()
    assert sync["n_ophys_frames"] == 900 * 31
    true_trials = pd.read_csv(truth / "behavior_trials.csv")
    stored = pd.DataFrame((Behavior.Trial & key).to_dicts()).sort_values("trial_id")
    assert list(stored["outcome"]) == list(true_trials["outcome"])
    perf = (Behavior.Performance & key).fetch1()
    n_go, n_catch = perf["n_go"], perf["n_catch"]
    assert n_catch > 0 and n_go > 0
    hit = np.clip(perf["n_hit"] / n_go, 1 / (2 * n_go), 1 - 1 / (2 * n_go))
    false_alarm = np.clip(perf["n_false_alarm"] / n_catch, 1 / (2 * n_catch), 1 - 1 / (2 * n_catch))
    assert perf["dprime"] == pytest.approx(norm.ppf(hit) - norm.ppf(false_alarm))
    flashes = pd.DataFrame((Behavior.Presentation & key & {"stimulus_block": 0}).to_dicts())
    assert not (flashes["omitted"] & flashes["is_change"]).any()
    running = (Behavior.RunningSpeed & key).fetch1()
    true_running = np.load(truth / "behavior_running.npy")
    error = np.asarray(running["speed"]) - np.interp(np.asarray(running["timestamps"]), *true_running)
    assert np.sqrt(np.nanmean(error**2)) < 1.0
    assert (Behavior.Licks & key).fetch1("n_licks") > 0


def test_bad_behavior_folder_fails_the_job_without_partial_rows(behavior_session, settings):
    from brainobs.pipeline import populate_all
    from brainobs.schemas.behavior import Behavior, SessionSync

    key, _ = behavior_session
    folder = settings.data_root / "M9" / "501" / "behavior"
    lines = (folder / "sync.csv").read_text().splitlines()
    (folder / "sync.csv").write_text("\n".join(lines[: len(lines) // 2]) + "\n")  # stimulus log now outlasts sync
    results = populate_all(settings)
    errors = results["SessionSync"]["error_list"]
    assert len(errors) == 1
    message = str(errors[0][1])
    assert str(folder) in message and ("sync" in message or "stimulus" in message), message
    assert not SessionSync & key
    assert not Behavior.Presentation & key


def test_behavior_parts_hold_process_behavior_output(behavior_session, settings):
    """Behavior reads the folder once; every Part holds the numbers process_behavior returns for it."""
    from brainobs.ingest.behavior_files import read_behavior
    from brainobs.populate.behavior.session import process_behavior
    from brainobs.schemas.behavior import Behavior, SessionSync

    key, _ = behavior_session
    SessionSync.populate(key)
    Behavior.populate(key)
    direct = process_behavior(read_behavior(settings.data_root / "M9" / "501" / "behavior"))
    master = (Behavior & key).fetch1()
    assert master["n_trials"] == len(direct.trials) > 0
    assert master["n_presentations"] == len(direct.presentations) == len(Behavior.Presentation & key)
    running = (Behavior.RunningSpeed & key).fetch1()
    for column in ("timestamps", "speed", "speed_raw", "dx", "v_sig", "v_in"):
        np.testing.assert_array_equal(np.asarray(running[column]), direct.running[column].to_numpy())
    np.testing.assert_array_equal((Behavior.Licks & key).fetch1("lick_times"), direct.licks["timestamps"].to_numpy())
    rewards = (Behavior.Rewards & key).fetch1()
    np.testing.assert_array_equal(rewards["reward_times"], direct.rewards["timestamps"].to_numpy())
    np.testing.assert_array_equal(rewards["volumes"], direct.rewards["volume"].to_numpy())
    presentations = pd.DataFrame((Behavior.Presentation & key).to_dicts()).sort_values("presentation_id")
    np.testing.assert_array_equal(presentations["start_time"], direct.presentations["start_time"].to_numpy())
    np.testing.assert_array_equal(presentations["stimulus_block"], direct.presentations["stimulus_block"].to_numpy())
    trials = pd.DataFrame((Behavior.Trial & key).to_dicts()).sort_values("trial_id")
    assert list(trials["outcome"]) == list(direct.trials["outcome"])
    np.testing.assert_array_equal(trials["start_time"], direct.trials["start_time"].to_numpy())
    performance = (Behavior.Performance & key).fetch1()
    expected = direct.performance
    assert (performance["n_go"], performance["n_hit"], performance["n_catch"]) == (
        expected.n_go,
        expected.n_hit,
        expected.n_catch,
    )
    assert performance["dprime"] == pytest.approx(expected.dprime)
    assert performance["total_reward_volume"] == pytest.approx(expected.total_reward_volume_ml)
    # the image set's images, as the folder gave them, reach the export bundle in the file's order
    from brainobs.schemas.collect import behavior_bundle

    (templates,) = behavior_bundle(key).stimulus_templates
    assert templates.image_set == "A" and templates.image_names == direct.templates.image_names
    assert len(Behavior.Template & key) == 8
    np.testing.assert_array_equal(templates.warped, direct.templates.warped)
    assert templates.warped.dtype == np.uint8
    np.testing.assert_array_equal(templates.unwarped, direct.templates.unwarped)
