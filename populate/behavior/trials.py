"""Licks, rewards and trials with outcomes computed from licks and the response window."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainobs.populate.behavior.clock import frame_times

RESPONSE_WINDOW_S = (0.15, 0.75)  # Visual Behavior: a response counts 150-750 ms after the change
OUTCOMES = ("hit", "miss", "false_alarm", "correct_reject", "aborted", "auto_rewarded")


def lick_table(vsync_times: np.ndarray, lick_frames: np.ndarray) -> pd.DataFrame:
    """Licks: timestamps (the vsync of the frame they were logged on, no monitor delay) and frame."""
    frames = np.asarray(lick_frames, dtype=np.int64)
    return pd.DataFrame({"timestamps": frame_times(vsync_times, frames), "frame": frames})


def reward_table(vsync_times: np.ndarray, rewards: pd.DataFrame) -> pd.DataFrame:
    """Rewards: timestamps (vsync, no monitor delay), frame, volume (ml), auto_rewarded."""
    frames = rewards["frame"].to_numpy(dtype=np.int64)
    return pd.DataFrame(
        {
            "timestamps": frame_times(vsync_times, frames),
            "frame": frames,
            "volume": rewards["volume_ml"].to_numpy(dtype=float),
            "auto_rewarded": rewards["auto_rewarded"].to_numpy().astype(bool),
        }
    )


def compute_trials(
    schedule: pd.DataFrame,
    vsync_times: np.ndarray,
    monitor_delay_s: float,
    lick_frames: np.ndarray,
    rewards: pd.DataFrame,
    response_window_s: tuple[float, float] = RESPONSE_WINDOW_S,
) -> pd.DataFrame:
    """One row per scheduled trial with exactly one outcome (see OUTCOMES).

    `schedule` has the trials.csv columns; `rewards` the rewards.csv columns. A lick belongs to the trial
    whose frames [start_frame, end_frame) hold it. aborted: a trial lick before the (scheduled) change
    time; auto_rewarded: a warm-up trial not aborted; a go trial is a hit with a lick in the response
    window after the change, else a miss; a catch trial is a false alarm or a correct reject likewise.
    Stimulus times (start, stop, change) carry the monitor delay; lick and reward times do not.
    """
    window_start, window_stop = response_window_s
    lick_frames = np.asarray(lick_frames, dtype=np.int64)
    lick_times = frame_times(vsync_times, lick_frames)
    reward_frames = rewards["frame"].to_numpy(dtype=np.int64)
    reward_times = frame_times(vsync_times, reward_frames)
    reward_volumes = rewards["volume_ml"].to_numpy(dtype=float)
    starts = schedule["start_frame"].to_numpy(dtype=np.int64)
    ends = schedule["end_frame"].to_numpy(dtype=np.int64)
    scheduled_change = frame_times(vsync_times, schedule["change_frame"], monitor_delay_s)
    lick_bounds = np.searchsorted(lick_frames, np.stack([starts, ends]), side="left")
    reward_bounds = np.searchsorted(reward_frames, np.stack([starts, ends]), side="left")

    rows = []
    for i, trial in enumerate(schedule.itertuples(index=False)):
        licks = lick_times[lick_bounds[0, i] : lick_bounds[1, i]]
        change_time = scheduled_change[i]
        aborted = bool((licks < change_time).any())
        auto = bool(trial.auto_rewarded) and not aborted
        catch = bool(trial.is_catch) and not aborted and not auto
        go = not bool(trial.is_catch) and not aborted and not auto
        responded = bool(((licks >= change_time + window_start) & (licks <= change_time + window_stop)).any())
        after_change = licks[licks >= change_time]
        trial_rewards = slice(reward_bounds[0, i], reward_bounds[1, i])
        outcome = _outcome(aborted, auto, go, responded)
        rows.append(
            {
                "trial_index": int(trial.trial_index),
                "start_time": vsync_times[trial.start_frame] + monitor_delay_s,
                "stop_time": vsync_times[trial.end_frame] + monitor_delay_s,
                "start_frame": int(trial.start_frame),
                "end_frame": int(trial.end_frame),
                "change_frame": -1 if aborted else int(trial.change_frame),
                "change_time": np.nan if aborted else change_time,
                "is_change": go or auto,
                "go": go,
                "catch": catch,
                "outcome": outcome,
                **{name: outcome == name for name in OUTCOMES},
                "responded": responded and not aborted,
                "response_time": np.nan if aborted or not after_change.size else after_change[0],
                "response_latency": (
                    np.nan if aborted else (after_change[0] - change_time if after_change.size else np.inf)
                ),
                "lick_times": licks,
                "reward_time": reward_times[trial_rewards][0] if reward_times[trial_rewards].size else np.nan,
                "reward_volume": float(reward_volumes[trial_rewards].sum()),
                "initial_image_name": trial.initial_image_name,
                "change_image_name": trial.initial_image_name if aborted else trial.change_image_name,
            }
        )
    columns = [
        "trial_index", "start_time", "stop_time", "start_frame", "end_frame", "change_frame", "change_time",
        "is_change", "go", "catch", "outcome", *OUTCOMES, "responded", "response_time", "response_latency",
        "lick_times", "reward_time", "reward_volume", "initial_image_name", "change_image_name",
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=columns)
    table["trial_length"] = table["stop_time"] - table["start_time"]
    return table


def _outcome(aborted: bool, auto: bool, go: bool, responded: bool) -> str:
    if aborted:
        return "aborted"
    if auto:
        return "auto_rewarded"
    if go:
        return "hit" if responded else "miss"
    return "false_alarm" if responded else "correct_reject"
