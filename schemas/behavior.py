"""Behavior and stimulus of every session that has a behavior folder (docs/formats/behavior.md).

SessionSync reads and validates the raw folder, TaskParameters the task configuration of its session.json
(sessions whose session.json has a `task` object). Behavior runs ``brainobs.populate.behavior.process_behavior``
once per session; its Part tables hold the products: RunningSpeed, Licks, Rewards, Presentation (one row per
stimulus presentation), Trial (one row per trial), Performance, and Template (the image set's images, from
the folder's optional stimulus_templates.npz).
"""

from __future__ import annotations

import datajoint as dj
import numpy as np
import pandas as pd

from brainobs.ingest.behavior_files import StimulusImages, read_behavior, read_session
from brainobs.populate.behavior.performance import PerformanceSummary
from brainobs.populate.behavior.session import process_behavior
from brainobs.schemas import finite_or_none, stores
from brainobs.schemas.acquisition import Session

schema = dj.Schema()


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
class Behavior(dj.Computed):
    definition = """
    # the session's behavior folder processed once; each Part table holds one of its products
    -> SessionSync
    ---
    n_presentations : int32
    n_blocks : int32                      # stimulus blocks
    n_trials : int32
    """

    class RunningSpeed(dj.Part):
        definition = """
        # running speed from the wheel encoder: unwrapped, outliers removed, 10 Hz low-pass
        -> master
        ---
        timestamps : <npy@main>           # s
        speed : <npy@main>                # cm/s, filtered
        speed_raw : <npy@main>            # cm/s, before filtering
        dx : <npy@main>                   # degrees of wheel rotation since the previous sample
        v_sig : <npy@main>                # V, encoder signal
        v_in : <npy@main>                 # V, encoder supply
        mean_speed : float64              # cm/s
        """

    class Licks(dj.Part):
        definition = """
        -> master
        ---
        n_licks : int32
        lick_times : <blob>               # s
        """

    class Rewards(dj.Part):
        definition = """
        -> master
        ---
        n_rewards : int32
        reward_times : <blob>             # s
        volumes : <blob>                  # ml
        auto_rewarded : <blob>            # bool per reward
        """

    class Presentation(dj.Part):
        definition = """
        # every stimulus block of the session: change detection, gray screen, natural movie, receptive fields
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

    class Trial(dj.Part):
        definition = """
        # change-detection trials with outcomes computed from licks and the response window
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

    class Performance(dj.Part):
        definition = """
        # session performance: hit and false-alarm rates, d-prime (rates clipped to [1/2N, 1-1/2N]), engagement
        -> master
        ---
        n_go : int32
        n_catch : int32
        n_hit : int32
        n_false_alarm : int32
        n_aborted : int32
        total_reward_volume : float64     # ml
        hit_rate = null : float64
        false_alarm_rate = null : float64
        dprime = null : float64
        engaged_fraction = null : float64 # trials with reward rate above 2 per minute
        dprime_engaged = null : float64
        """

    class Template(dj.Part):
        definition = """
        # the images of the session's image set as shown (warped) and unwarped, when the folder has them
        -> master
        image_name : varchar(64)
        ---
        image_set : varchar(64)
        image_index : int16               # order of the image in stimulus_templates.npz
        warped : <npy@main>               # uint8 (height, width), as shown on the monitor
        unwarped : <npy@main>             # float64 (height, width), NaN where not visible after warping
        """

    def make(self, key):
        result = process_behavior(read_behavior(stores.raw_path((Session & key).fetch1("behavior_dir"))))
        presentations = result.presentations
        self.insert1(
            {
                **key,
                "n_presentations": len(presentations),
                "n_blocks": int(presentations["stimulus_block"].nunique()),
                "n_trials": len(result.trials),
            }
        )
        self.RunningSpeed.insert1({**key, **_running(result.running)})
        self.Licks.insert1({**key, "n_licks": len(result.licks), "lick_times": result.licks["timestamps"].to_numpy()})
        self.Rewards.insert1({**key, **_rewards(result.rewards)})
        self.Presentation.insert({**key, **row} for row in _presentation_rows(presentations))
        self.Trial.insert({**key, **row} for row in _trial_rows(result.trials))
        self.Performance.insert1({**key, **_performance(result.performance)})
        self.Template.insert({**key, **row} for row in _template_rows(result.templates))


def _running(running: pd.DataFrame) -> dict:
    columns = ("timestamps", "speed", "speed_raw", "dx", "v_sig", "v_in")
    return {
        **{name: running[name].to_numpy() for name in columns},
        "mean_speed": float(np.nanmean(running["speed"])) if len(running) else 0.0,
    }


def _rewards(rewards: pd.DataFrame) -> dict:
    return {
        "n_rewards": len(rewards),
        "reward_times": rewards["timestamps"].to_numpy(),
        "volumes": rewards["volume"].to_numpy(),
        "auto_rewarded": rewards["auto_rewarded"].to_numpy(),
    }


def _presentation_rows(table: pd.DataFrame) -> list[dict]:
    rows = []
    for i, row in enumerate(table.itertuples(index=False)):
        movie_frame = finite_or_none(row.movie_frame_index)
        rows.append(
            {
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


def _trial_rows(trials: pd.DataFrame) -> list[dict]:
    flags = ("is_change", "go", "catch", "hit", "miss", "false_alarm", "correct_reject", "aborted", "auto_rewarded")
    optional = ("change_time", "response_latency", "response_time", "reward_time", "reward_rate")
    return [
        {
            "trial_id": int(row.trial_index),
            "start_time": float(row.start_time),
            "stop_time": float(row.stop_time),
            "start_frame": int(row.start_frame),
            "end_frame": int(row.end_frame),
            "change_frame": int(row.change_frame),
            **{name: bool(getattr(row, name)) for name in flags},
            **{name: finite_or_none(getattr(row, name)) for name in optional},
            "outcome": str(row.outcome),
            "reward_volume": float(np.nan_to_num(row.reward_volume)),
            "initial_image_name": str(row.initial_image_name),
            "change_image_name": str(row.change_image_name),
            "engaged": bool(row.engaged),
            "lick_times": np.asarray(row.lick_times, dtype=np.float64),
        }
        for row in trials.itertuples(index=False)
    ]


def _template_rows(templates: StimulusImages | None) -> list[dict]:
    if templates is None:
        return []
    return [
        {
            "image_name": name,
            "image_set": templates.image_set,
            "image_index": index,
            "warped": templates.warped[index],
            "unwarped": templates.unwarped[index].astype(np.float64),
        }
        for index, name in enumerate(templates.image_names)
    ]


def _performance(summary: PerformanceSummary) -> dict:
    values = summary.as_dict()
    return {
        **{name: int(values[name]) for name in ("n_go", "n_catch", "n_hit", "n_false_alarm", "n_aborted")},
        **{
            name: finite_or_none(values[name])
            for name in ("hit_rate", "false_alarm_rate", "dprime", "engaged_fraction", "dprime_engaged")
        },
        "total_reward_volume": float(values["total_reward_volume_ml"]),
    }
