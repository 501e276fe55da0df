"""Behavior and stimulus of every session that has a behavior folder (docs/formats/behavior.md).

SessionSync reads and validates the raw folder, TaskParameters the task configuration of its session.json
(sessions whose session.json has a `task` object); each Computed below takes one product of
``brainobs.populate.behavior.process_behavior``: running speed, licks, rewards, stimulus presentations
(one Part row per flash), trials (one Part row per trial) and session performance.
"""

from __future__ import annotations

import datajoint as dj
import numpy as np
import pandas as pd

from brainobs.ingest.behavior_files import read_behavior, read_session
from brainobs.populate.behavior.session import BehaviorResult, process_behavior
from brainobs.schemas import finite_or_none, stores
from brainobs.schemas.acquisition import Session

schema = dj.Schema()


def _behavior(key: dict) -> BehaviorResult:
    folder = (Session & key).fetch1("behavior_dir")
    return process_behavior(read_behavior(stores.raw_path(folder)))


@schema
class SessionSync(dj.Imported):
    definition = """
    # the session's sync record: display frames and 2-photon frames on the master clock
    -> Session
    ---
    display_frame_rate : float64          # Hz
    monitor_delay : float64               # s, applied to stimulus times only
    n_display_frames : int32
    n_ophys_frames : int32                # 2-photon frame pulses (0 when the session does not image)
    passive : bool
    vsync_times : <npy@main>              # s, rising edge of each display frame
    ophys_frame_times : <npy@main>        # s, start of each 2-photon frame
    """

    @property
    def key_source(self):
        return Session - {"behavior_dir": ""}

    def make(self, key):
        files = read_behavior(stores.raw_path((Session & key).fetch1("behavior_dir")))
        info = files.session
        ophys_frame_times = np.asarray(
            [] if files.ophys_frame_times is None else files.ophys_frame_times, dtype=np.float64
        )
        self.insert1(
            {
                **key,
                "display_frame_rate": info.display_frame_rate_hz,
                "monitor_delay": info.monitor_delay_s,
                "n_display_frames": len(files.vsync_times),
                "n_ophys_frames": len(ophys_frame_times),
                "passive": info.passive,
                "vsync_times": np.asarray(files.vsync_times, dtype=np.float64),
                "ophys_frame_times": ophys_frame_times,
            }
        )


@schema
class TaskParameters(dj.Imported):
    definition = """
    # the change-detection task's configuration, from session.json (Allen's task parameters); the fields
    # of its `task` object are null when session.json has none
    -> SessionSync
    ---
    response_window_start : float64       # s after the change
    response_window_stop : float64
    task_name = null : varchar(64)
    stimulus_distribution = null : varchar(32)  # distribution of change times
    stimulus_duration = null : float64    # s, each flash
    blank_duration_low = null : float64   # s, gray between flashes
    blank_duration_high = null : float64
    omitted_flash_fraction = null : float64
    reward_volume = null : float64        # ml, earned reward
    auto_reward_volume = null : float64   # ml, free reward
    """

    def make(self, key):
        folder = stores.raw_path((Session & key).fetch1("behavior_dir"))
        info = read_session(folder / "session.json")
        task = info.task
        configured = (
            {
                "task_name": task.name,
                "stimulus_distribution": task.stimulus_distribution,
                "stimulus_duration": task.stimulus_duration_s,
                "blank_duration_low": task.blank_duration_s[0],
                "blank_duration_high": task.blank_duration_s[1],
                "omitted_flash_fraction": task.omitted_flash_fraction,
                "reward_volume": task.reward_volume_ml,
                "auto_reward_volume": task.auto_reward_volume_ml,
            }
            if task is not None
            else {}
        )
        self.insert1(
            {
                **key,
                "response_window_start": info.response_window_s[0],
                "response_window_stop": info.response_window_s[1],
                **configured,
            }
        )


@schema
class RunningSpeed(dj.Computed):
    definition = """
    # running speed from the wheel encoder: unwrapped, outliers removed, 10 Hz low-pass
    -> SessionSync
    ---
    timestamps : <npy@main>               # s
    speed : <npy@main>                    # cm/s, filtered
    speed_raw : <npy@main>                # cm/s, before filtering
    dx : <npy@main>                       # degrees of wheel rotation since the previous sample
    v_sig : <npy@main>                    # V, encoder signal
    v_in : <npy@main>                     # V, encoder supply
    mean_speed : float64                  # cm/s
    """

    def make(self, key):
        running = _behavior(key).running
        self.insert1(
            {
                **key,
                "timestamps": running["timestamps"].to_numpy(),
                "speed": running["speed"].to_numpy(),
                "speed_raw": running["speed_raw"].to_numpy(),
                "dx": running["dx"].to_numpy(),
                "v_sig": running["v_sig"].to_numpy(),
                "v_in": running["v_in"].to_numpy(),
                "mean_speed": float(np.nanmean(running["speed"])) if len(running) else 0.0,
            }
        )


@schema
class Licks(dj.Computed):
    definition = """
    -> SessionSync
    ---
    n_licks : int32
    lick_times : <blob>                   # s
    """

    def make(self, key):
        licks = _behavior(key).licks
        self.insert1({**key, "n_licks": len(licks), "lick_times": licks["timestamps"].to_numpy()})


@schema
class Rewards(dj.Computed):
    definition = """
    -> SessionSync
    ---
    n_rewards : int32
    reward_times : <blob>                 # s
    volumes : <blob>                      # ml
    auto_rewarded : <blob>                # bool per reward
    """

    def make(self, key):
        rewards = _behavior(key).rewards
        self.insert1(
            {
                **key,
                "n_rewards": len(rewards),
                "reward_times": rewards["timestamps"].to_numpy(),
                "volumes": rewards["volume"].to_numpy(),
                "auto_rewarded": rewards["auto_rewarded"].to_numpy(),
            }
        )


@schema
class StimulusPresentations(dj.Computed):
    definition = """
    # every stimulus block of the session: change detection, gray screen, natural movie, receptive fields
    -> SessionSync
    ---
    n_presentations : int32
    n_blocks : int32
    """

    class Presentation(dj.Part):
        definition = """
        -> master
        presentation_id : int32
        ---
        stimulus_block : int16
        stimulus_block_kind : varchar(32)
        stimulus_name : varchar(64)
        active : bool
        start_time : float64              # s, display delay applied
        stop_time : float64
        start_frame : int32               # display frame
        end_frame : int32
        image_name = "" : varchar(64)
        omitted : bool
        is_change : bool
        flash_index : int32
        orientation = null : float64
        position_x = null : float64
        position_y = null : float64
        movie_frame_index = null : int32
        """

    def make(self, key):
        table = _behavior(key).presentations
        self.insert1({**key, "n_presentations": len(table), "n_blocks": int(table["stimulus_block"].nunique())})
        self.Presentation.insert(_presentation_rows(key, table))


def _presentation_rows(key: dict, table: pd.DataFrame) -> list[dict]:
    rows = []
    for i, row in enumerate(table.itertuples(index=False)):
        movie_frame = finite_or_none(row.movie_frame_index)
        rows.append(
            {
                **key,
                "presentation_id": i,
                "stimulus_block": int(row.stimulus_block),
                "stimulus_block_kind": str(row.stimulus_block_kind),
                "stimulus_name": str(row.stimulus_name),
                "active": bool(row.active),
                "start_time": float(row.start_time),
                "stop_time": float(row.stop_time),
                "start_frame": int(row.start_frame),
                "end_frame": int(row.end_frame),
                "image_name": "" if pd.isna(row.image_name) else str(row.image_name),
                "omitted": bool(row.omitted),
                "is_change": bool(row.is_change),
                "flash_index": int(row.flash_index),
                "orientation": finite_or_none(row.orientation),
                "position_x": finite_or_none(row.position_x),
                "position_y": finite_or_none(row.position_y),
                "movie_frame_index": None if movie_frame is None else int(movie_frame),
            }
        )
    return rows


@schema
class Trials(dj.Computed):
    definition = """
    # change-detection trials with outcomes computed from licks and the response window
    -> SessionSync
    ---
    n_trials : int32
    """

    class Trial(dj.Part):
        definition = """
        -> master
        trial_id : int32
        ---
        start_time : float64
        stop_time : float64
        start_frame : int32               # display frame
        end_frame : int32
        change_frame : int32              # display frame of the change; -1 for aborted trials
        change_time = null : float64      # s, display delay applied; null for aborted trials
        is_change : bool                  # the image changed (go or auto-rewarded trial)
        go : bool
        catch : bool
        outcome : varchar(16)             # hit, miss, false_alarm, correct_reject, aborted, auto_rewarded
        hit : bool
        miss : bool
        false_alarm : bool
        correct_reject : bool
        aborted : bool
        auto_rewarded : bool
        response_latency = null : float64 # s from change to first lick
        response_time = null : float64    # s, first lick after the change
        reward_time = null : float64      # s
        reward_volume : float64           # ml
        initial_image_name : varchar(64)
        change_image_name : varchar(64)
        reward_rate = null : float64      # rewards per minute around the trial
        engaged : bool
        lick_times : <blob>               # s
        """

    def make(self, key):
        trials = _behavior(key).trials
        self.insert1({**key, "n_trials": len(trials)})
        self.Trial.insert(
            {
                **key,
                "trial_id": int(row.trial_index),
                "start_time": float(row.start_time),
                "stop_time": float(row.stop_time),
                "start_frame": int(row.start_frame),
                "end_frame": int(row.end_frame),
                "change_frame": int(row.change_frame),
                "change_time": finite_or_none(row.change_time),
                "is_change": bool(row.is_change),
                "go": bool(row.go),
                "catch": bool(row.catch),
                "outcome": str(row.outcome),
                "hit": bool(row.hit),
                "miss": bool(row.miss),
                "false_alarm": bool(row.false_alarm),
                "correct_reject": bool(row.correct_reject),
                "aborted": bool(row.aborted),
                "auto_rewarded": bool(row.auto_rewarded),
                "response_latency": finite_or_none(row.response_latency),
                "response_time": finite_or_none(row.response_time),
                "reward_time": finite_or_none(row.reward_time),
                "reward_volume": float(np.nan_to_num(row.reward_volume)),
                "initial_image_name": str(row.initial_image_name),
                "change_image_name": str(row.change_image_name),
                "reward_rate": finite_or_none(row.reward_rate),
                "engaged": bool(row.engaged),
                "lick_times": np.asarray(row.lick_times, dtype=np.float64),
            }
            for row in trials.itertuples(index=False)
        )


@schema
class Performance(dj.Computed):
    definition = """
    # session performance: hit and false-alarm rates, d-prime (rates clipped to [1/2N, 1-1/2N]), engagement
    -> Trials
    ---
    n_go : int32
    n_catch : int32
    n_hit : int32
    n_false_alarm : int32
    n_aborted : int32
    hit_rate = null : float64
    false_alarm_rate = null : float64
    dprime = null : float64
    engaged_fraction = null : float64     # trials with reward rate above 2 per minute
    dprime_engaged = null : float64
    total_reward_volume : float64         # ml
    """

    def make(self, key):
        summary = _behavior(key).performance.as_dict()
        self.insert1(
            {
                **key,
                **{name: int(summary[name]) for name in ("n_go", "n_catch", "n_hit", "n_false_alarm", "n_aborted")},
                **{
                    name: finite_or_none(summary[name])
                    for name in ("hit_rate", "false_alarm_rate", "dprime", "engaged_fraction", "dprime_engaged")
                },
                "total_reward_volume": float(summary["total_reward_volume_ml"]),
            }
        )
