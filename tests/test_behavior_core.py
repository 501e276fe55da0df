"""Behavior core against the synthetic truth: trials, performance, omissions, running speed, alignment."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from brainobs.ingest.behavior_files import BehaviorFiles, read_behavior
from brainobs.ingest.synthetic.behavior import write_behavior
from brainobs.populate.behavior.clock import ephys_sample_times, time_to_ephys_sample, time_to_frame_index
from brainobs.populate.behavior.performance import dprime, reward_rate, session_performance, trial_count_clip
from brainobs.populate.behavior.running import RunningParams, compute_running_speed
from brainobs.populate.behavior.session import BehaviorResult, process_behavior
from brainobs.populate.behavior.stimulus import block_epochs

OPHYS_RATE = 31.0


@pytest.fixture(scope="module")
def hour(tmp_path_factory) -> tuple[Path, Path]:
    """A one-hour imaging session (the size the pipeline must process in a few seconds)."""
    root = tmp_path_factory.mktemp("behavior_hour")
    write_behavior(root / "raw", root / "truth", duration_s=3600, passive=False, image_set="A", seed=11,
                   ophys_frame_rate=OPHYS_RATE)  # fmt: skip
    return root / "raw", root / "truth"


@pytest.fixture(scope="module")
def files(hour) -> BehaviorFiles:
    return read_behavior(hour[0])


@pytest.fixture(scope="module")
def result(files) -> BehaviorResult:
    return process_behavior(files)


@pytest.fixture(scope="module")
def truth(hour) -> dict:
    truth_dir = hour[1]
    return {
        "meta": json.loads((truth_dir / "behavior_truth.json").read_text()),
        "trials": pd.read_csv(truth_dir / "behavior_trials.csv"),
        "flashes": pd.read_csv(truth_dir / "behavior_flashes.csv"),
        "running": np.load(truth_dir / "behavior_running.npy"),
    }


def test_one_hour_session_processes_in_seconds(hour):
    started = time.perf_counter()
    out = process_behavior(read_behavior(hour[0]))
    elapsed = time.perf_counter() - started
    assert len(out.trials) > 300 and len(out.running) == 216000
    assert elapsed < 5.0, f"reading and processing one hour took {elapsed:.2f} s"


def test_trial_outcomes_equal_truth(result, truth):
    trials, expected = result.trials, truth["trials"]
    assert len(trials) == len(expected)
    assert (trials["outcome"].to_numpy() == expected["outcome"].to_numpy()).all()
    assert set(expected["outcome"]) == {"hit", "miss", "false_alarm", "correct_reject", "aborted", "auto_rewarded"}
    one_hot = trials[["hit", "miss", "false_alarm", "correct_reject", "aborted", "auto_rewarded"]].sum(axis=1)
    assert (one_hot == 1).all()
    changed = expected["outcome"] != "aborted"
    np.testing.assert_allclose(trials["change_time"][changed], expected["change_time_s"][changed], atol=1e-9)
    assert trials["change_time"][~changed].isna().all() and (trials["change_frame"][~changed] == -1).all()
    responded = expected["lick_latency_s"].notna()
    # a lick is logged on the frame it falls in: the measured latency is up to one (possibly dropped) frame early
    lag = expected["lick_latency_s"][responded] - trials["response_latency"][responded]
    assert lag.between(0, 2.1 / 60).all()


def test_rewards_follow_hits_and_warmup(result):
    trials = result.trials
    hits = trials[trials["hit"]]
    np.testing.assert_allclose(hits["reward_volume"], 0.007)
    np.testing.assert_allclose(hits["reward_time"], hits["response_time"], atol=1e-9)
    np.testing.assert_allclose(trials.loc[trials["auto_rewarded"], "reward_volume"], 0.005)
    assert (trials.loc[trials["miss"] | trials["aborted"], "reward_volume"] == 0).all()
    assert result.performance.earned_reward_count == len(hits)
    assert result.performance.auto_reward_count == 5


def test_dprime_equals_hand_computation(result):
    perf = result.performance
    n_go, n_catch = perf.n_hit + perf.n_miss, perf.n_false_alarm + perf.n_correct_reject
    assert (perf.n_go, perf.n_catch) == (n_go, n_catch)
    hit_rate, fa_rate = perf.n_hit / n_go, perf.n_false_alarm / n_catch
    hit_rate = min(max(hit_rate, 1 / (2 * n_go)), 1 - 1 / (2 * n_go))
    fa_rate = min(max(fa_rate, 1 / (2 * n_catch)), 1 - 1 / (2 * n_catch))
    assert perf.dprime == pytest.approx(norm.ppf(hit_rate) - norm.ppf(fa_rate), abs=1e-12)


def test_dprime_clips_by_trial_count():
    # 10/10 hits -> 1 - 1/20; 0/4 false alarms -> 1/8
    assert trial_count_clip(1.0, 10) == 0.95 and trial_count_clip(0.0, 4) == 0.125
    assert dprime(10, 10, 0, 4) == pytest.approx(1.6448536 + 1.1503494, abs=1e-6)
    assert dprime(3, 4, 1, 4) == pytest.approx(norm.ppf(0.75) - norm.ppf(0.25), abs=1e-12)
    assert np.isnan(dprime(3, 4, 0, 0))


def test_reward_rate_and_engagement_by_hand():
    # 60 trials 10 s apart (6 per minute); the mouse responds on the first 30 only
    start = np.arange(60) * 10.0
    responded = np.arange(60) < 30
    rate = reward_rate(start, responded)
    assert np.isnan(rate[:10]).all()
    # trial 20: window trials 0..44, 30 responses over 440 s
    assert rate[20] == pytest.approx(30 / 440 * 60)
    # trial 50: window trials 25..59, 5 responses over 340 s
    assert rate[50] == pytest.approx(5 / 340 * 60)
    trials = pd.DataFrame({"start_time": start, "responded": responded})
    for name in ("hit", "miss", "false_alarm", "correct_reject", "aborted", "auto_rewarded"):
        trials[name] = False
    trials["hit"] = responded
    trials["miss"] = ~responded
    rewards = pd.DataFrame({"volume": [0.007] * 30, "auto_rewarded": [False] * 30})
    perf = session_performance(trials, rewards)
    engaged = rate > 2.0
    assert perf.n_engaged == engaged.sum() and perf.engaged_fraction == pytest.approx(engaged.mean())
    assert perf.total_reward_volume_ml == pytest.approx(0.21)
    assert np.isnan(perf.dprime)  # no catch trials


def test_engaged_fraction_tracks_true_engagement(result, truth):
    true_fraction = truth["trials"]["engaged"].mean()
    assert result.performance.engaged_fraction == pytest.approx(true_fraction, abs=0.1)
    assert result.performance.hit_rate_engaged > result.performance.hit_rate


def test_omissions_five_percent_and_never_on_changes(result, truth):
    flashes = result.presentations[result.presentations["stimulus_block_kind"] == "change_detection"]
    assert not (flashes["omitted"] & flashes["is_change"]).any()
    non_change = flashes[~flashes["is_change"]]
    assert non_change["omitted"].mean() == pytest.approx(0.05, abs=0.012)
    assert (flashes.loc[flashes["omitted"], "image_name"] == "omitted").all()
    expected = truth["flashes"]
    assert (flashes["omitted"].to_numpy() == expected["omitted"].astype(bool).to_numpy()).all()
    assert not expected.loc[expected["is_sham_change"] == 1, "omitted"].any()


def test_stimulus_times_carry_the_monitor_delay_and_licks_do_not(files, result, truth):
    delay = truth["meta"]["monitor_delay_s"]
    assert files.session.monitor_delay_s == delay and 0.020 <= delay <= 0.035
    flashes = result.presentations[result.presentations["stimulus_block_kind"] == "change_detection"]
    np.testing.assert_allclose(flashes["start_time"], truth["flashes"]["start_time_s"], atol=1e-9)
    np.testing.assert_allclose(result.licks["timestamps"], files.vsync_times[files.lick_frames], atol=0)
    shifted = process_behavior(files, monitor_delay_s=0.0)
    np.testing.assert_allclose(result.presentations["start_time"] - shifted.presentations["start_time"], delay)
    np.testing.assert_array_equal(shifted.licks["timestamps"], result.licks["timestamps"])
    np.testing.assert_array_equal(shifted.rewards["timestamps"], result.rewards["timestamps"])


def test_every_stimulus_block_is_covered(files, result):
    kinds = [b.kind for b in files.session.blocks]
    assert kinds == ["change_detection", "gray_screen", "natural_movie", "receptive_field"]
    for block in files.session.blocks:
        rows = result.presentations[result.presentations["stimulus_block"] == block.index]
        assert rows["start_frame"].min() == block.start_frame
        # the last flash of change detection is followed by its 500 ms gray
        gap = 30 if block.kind == "change_detection" else 0
        assert rows["end_frame"].max() == block.end_frame - gap
        assert (rows["active"] == block.active).all()
    epochs = block_epochs(result.presentations)
    assert epochs["stimulus_block_kind"].tolist() == kinds and epochs["active"].tolist() == [True, False, False, False]
    assert (epochs["start_time"].diff().dropna() > 0).all() and epochs["n_presentations"].iloc[1] == 1
    gabors = result.presentations[result.presentations["stimulus_block_kind"] == "receptive_field"]
    assert gabors["position_x"].between(-40, 40).all() and gabors["orientation"].isin([0.0, 45.0, 90.0]).all()
    movie = result.presentations[result.presentations["stimulus_block_kind"] == "natural_movie"]
    assert (movie["movie_frame_index"].diff().dropna() != 0).all()
    assert movie["duration"].between(1.9 / 60, 4.1 / 60).all()


def test_running_speed_error_within_tolerance(result, truth):
    true_speed = truth["running"][1]
    np.testing.assert_array_equal(result.running["timestamps"], truth["running"][0])
    error = result.running["speed"].to_numpy() - true_speed
    assert np.sqrt(np.mean(error**2)) < 0.6
    assert np.percentile(np.abs(error), 99.9) < 2.5
    assert result.running["outlier"].sum() >= 30  # about one encoder dropout a minute


def test_running_speed_unwraps_and_drops_a_glitch():
    fs = 60.0
    t = np.arange(1200) / fs
    params = RunningParams()
    angle = 20.0 * t / params.running_radius_cm  # 20 cm/s
    vin = np.full(t.size, 5.0)
    vsig = 5.0 * np.mod(angle / (2 * np.pi), 1.0)
    vsig[600] = 0.0 if vsig[600] > 1.5 else 4.0  # an encoder dropout
    out = compute_running_speed(t, vsig, vin, params)
    assert out["outlier"][600]
    assert np.isnan(out["speed_raw"][0])
    np.testing.assert_allclose(out["speed"][30:-30], 20.0, atol=0.05)
    # dx: the wheel's rotation per sample in degrees (20 cm/s at 60 Hz on the running radius), wraps unwrapped
    np.testing.assert_allclose(out["dx"][1:590], np.degrees(20.0 / fs / params.running_radius_cm), rtol=1e-9)
    assert np.isnan(out["dx"][0])
    backwards = compute_running_speed(t, 5.0 - 5.0 * np.mod(angle / (2 * np.pi), 1.0), vin, params)
    np.testing.assert_allclose(backwards["speed"][30:-30], -20.0, atol=0.05)


def test_running_speed_rejects_bad_input():
    t = np.arange(100) / 60.0
    with pytest.raises(ValueError, match="timestamps do not increase"):
        compute_running_speed(t[::-1], np.zeros(100), np.full(100, 5.0))
    with pytest.raises(ValueError, match="99 vsig"):
        compute_running_speed(t, np.zeros(99), np.full(100, 5.0))


def _ophys_pulses(raw: Path) -> np.ndarray:
    with (raw / "sync.csv").open() as handle:
        return np.array([float(row["time_s"]) for row in csv.DictReader(handle) if row["line"] == "ophys_frames"])


def _true_change_times(truth: dict) -> np.ndarray:
    trials = truth["trials"]
    return trials.loc[trials["outcome"].isin(["hit", "miss", "auto_rewarded"]), "change_time_s"].to_numpy()


def test_a_change_lands_on_the_right_2p_frame(hour, files, result, truth):
    pulses = _ophys_pulses(hour[0])
    assert np.median(np.diff(pulses)) == pytest.approx(1 / OPHYS_RATE, rel=1e-3)
    change_times = _true_change_times(truth)
    frames = time_to_frame_index(change_times, files.ophys_frame_times)
    assert (frames >= 0).all()
    assert (pulses[frames] <= change_times).all() and (change_times < pulses[frames + 1]).all()
    measured = result.presentations.loc[result.presentations["is_change"], "start_time"].to_numpy()
    np.testing.assert_array_equal(time_to_frame_index(measured, files.ophys_frame_times), frames)


def test_a_change_lands_on_the_right_ephys_sample(result, truth):
    t_start_s, fs = 1.2345, 30000.0
    change_times = _true_change_times(truth)
    samples = time_to_ephys_sample(change_times, t_start_s, fs)
    np.testing.assert_array_equal(samples, [int(np.floor((t - t_start_s) * fs)) for t in change_times])
    assert (ephys_sample_times(samples, t_start_s, fs) <= change_times + 1e-9).all()
    assert (ephys_sample_times(samples + 1, t_start_s, fs) > change_times).all()
    measured = result.presentations.loc[result.presentations["is_change"], "start_time"].to_numpy()
    np.testing.assert_array_equal(time_to_ephys_sample(measured, t_start_s, fs), samples)
    assert time_to_ephys_sample(ephys_sample_times(123456, t_start_s, fs), t_start_s, fs) == 123456


def test_frame_index_edges():
    pulses = np.array([1.0, 1.1, 1.2, 1.3])
    got = time_to_frame_index([0.99, 1.0, 1.15, 1.3, 1.39, 1.41], pulses)
    np.testing.assert_array_equal(got, [-1, 0, 1, 3, 3, -1])
    with pytest.raises(ValueError, match="sampling rate"):
        time_to_ephys_sample(1.0, 0.0, 0.0)
