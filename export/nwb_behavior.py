"""Behavior and stimulus, shared by the ophys experiment and the ecephys session files.

Layout:
- /processing/behavior/running_speed: TimeSeries, cm/s.
- /processing/behavior/licks: TimeSeries at the lick times; data = stimulus frame index of each lick.
- /processing/behavior/reward_volume (mL) and reward_auto_rewarded (bool): TimeSeries at the reward times.
- /intervals/stimulus_presentations: one TimeIntervals for all presentations, with a stimulus_block column
  (rather than one table per block: blocks of a single presentation, such as a gray screen, would make
  one-row tables, and parameter columns would be all NaN in most blocks -- both nwbinspector findings).
  Float columns that are NaN in every row (a parameter no stimulus of the session has) are left out, and
  so is `params`, the JSON text whose known keys already have columns.
- /intervals/epochs: one row per stimulus block (start, stop, kind, name, active, presentation count).
- /intervals/trials: the NWB trials table; lick_times is a ragged column.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from pynwb import NWBFile, TimeSeries
from pynwb.epoch import TimeIntervals

from brainobs.export.bundles import BehaviorBundle, BehaviorSessionBundle
from brainobs.export.nwb_common import (
    dataset,
    new_nwbfile,
    table_columns,
    table_expectations,
    time_base,
    time_expectation,
)
from brainobs.export.provenance import add_provenance
from brainobs.export.readback import Expectation

MODULE = "behavior"

TIME_COLUMNS = {
    "start_time": "start of the interval (s, session clock)",
    "stop_time": "end of the interval (s, session clock)",
}
BLOCK_COLUMNS = {
    **TIME_COLUMNS,
    "stimulus_block": "index of the stimulus block in the session",
    "stimulus_block_kind": "kind of stimulus block (change detection, gratings, movie, gray screen, ...)",
    "stimulus_block_name": "name of the stimulus block",
    "active": "whether the mouse could earn rewards during the block",
    "n_presentations": "number of stimulus presentations in the block",
}
PRESENTATION_COLUMNS = {
    **BLOCK_COLUMNS,
    "stimulus_name": "name of the stimulus (image set, grating, movie)",
    "start_frame": "first display frame of the presentation",
    "end_frame": "display frame after the presentation (exclusive)",
    "duration": "stop_time - start_time (s)",
    "image_name": "image shown ('' for non-image stimuli, 'omitted' for omitted flashes)",
    "omitted": "whether the flash was omitted",
    "is_change": "whether the image changed at this flash",
    "flash_index": "index of the flash within its block (-1 where not a flash)",
    "orientation": "grating orientation (degrees)",
    "position_x": "stimulus centre azimuth (degrees)",
    "position_y": "stimulus centre elevation (degrees)",
    "movie_frame_index": "frame of the movie shown",
    "movie_repeat": "repeat of the movie",
}
DROPPED_PRESENTATION_COLUMNS = ("params",)
TRIAL_COLUMNS = {
    **TIME_COLUMNS,
    "trial_index": "index of the trial in the session",
    "start_frame": "display frame at the start of the trial",
    "end_frame": "display frame at the end of the trial",
    "change_frame": "display frame of the image change (-1 for aborted trials)",
    "change_time": "time of the image change on screen (s; NaN for aborted trials)",
    "is_change": "whether the image changed (go or auto-rewarded trial)",
    "go": "go trial: the image changed and a response is rewarded",
    "catch": "catch trial: the image did not change",
    "outcome": "one of hit, miss, false_alarm, correct_reject, aborted, auto_rewarded",
    "hit": "go trial with a lick in the response window",
    "miss": "go trial without a lick in the response window",
    "false_alarm": "catch trial with a lick in the response window",
    "correct_reject": "catch trial without a lick in the response window",
    "aborted": "trial ended by a lick before the change",
    "auto_rewarded": "warm-up trial with a free reward at the change",
    "responded": "a lick fell in the response window",
    "response_time": "time of the first lick after the change (s; NaN when none)",
    "response_latency": "response_time - change_time (s; inf when no lick, NaN for aborted trials)",
    "lick_times": "times of the licks during the trial (s)",
    "reward_time": "time of the reward (s; NaN when none)",
    "reward_volume": "volume of water given in the trial (mL)",
    "initial_image_name": "image shown before the change",
    "change_image_name": "image shown after the change",
    "trial_length": "stop_time - start_time (s)",
}


def add_behavior(nwbfile: NWBFile, behavior: BehaviorBundle) -> list[Expectation]:
    """Add every part the bundle has; returns what to verify on read-back."""
    expectations: list[Expectation] = []
    series = _behavior_series(behavior)
    if series:
        module = nwbfile.create_processing_module(MODULE, "running, licking and rewards of the session")
        for item, data, timestamps in series:
            module.add(item)
            read = lambda f, name=item.name: f.processing[MODULE][name]  # noqa: E731
            expectations.append(Expectation(f"{MODULE}/{item.name}/data", lambda f, read=read: read(f).data, data))
            expectations.append(time_expectation(f"{MODULE}/{item.name}", read, timestamps))
    if behavior.stimulus_presentations is not None:
        presentations = behavior.stimulus_presentations
        all_nan = [
            name
            for name in presentations.columns
            if pd.api.types.is_float_dtype(presentations[name]) and presentations[name].isna().all()
        ]
        expectations += _add_intervals(
            nwbfile,
            "stimulus_presentations",
            "every stimulus presentation of the session",
            presentations,
            {**PRESENTATION_COLUMNS, **behavior.column_descriptions},
            skip=(*DROPPED_PRESENTATION_COLUMNS, *all_nan),
        )
    if behavior.stimulus_blocks is not None:
        descriptions = {**BLOCK_COLUMNS, **behavior.column_descriptions}
        expectations += _add_intervals(
            nwbfile, "epochs", "stimulus blocks of the session", behavior.stimulus_blocks, descriptions
        )
    if behavior.trials is not None:
        descriptions = {**TRIAL_COLUMNS, **behavior.column_descriptions}
        expectations += _add_intervals(
            nwbfile, "trials", "trials of the change-detection task", behavior.trials, descriptions
        )
    return expectations


def _behavior_series(behavior: BehaviorBundle) -> list[tuple[TimeSeries, np.ndarray, np.ndarray]]:
    """(TimeSeries, data, timestamps) for running, licks and rewards; empty lick or reward lists are left out."""
    series = []
    if behavior.running_speed is not None:
        running = behavior.running_speed
        item = TimeSeries(
            name="running_speed",
            description="running speed on the wheel, low-pass filtered",
            data=dataset(running.speed),
            unit="cm/s",
            **time_base(running.timestamps),
        )
        series.append((item, running.speed, running.timestamps))
    if behavior.licks is not None and len(behavior.licks.timestamps):
        licks = behavior.licks
        item = TimeSeries(
            name="licks",
            description="lick times; data is the display frame each lick was logged on",
            data=dataset(licks.frame),
            unit="frame index",
            **time_base(licks.timestamps),
        )
        series.append((item, licks.frame, licks.timestamps))
    if behavior.rewards is not None and len(behavior.rewards.timestamps):
        rewards = behavior.rewards
        volume = TimeSeries(
            name="reward_volume",
            description="water rewards: volume delivered",
            data=dataset(rewards.volume_ml),
            unit="mL",
            **time_base(rewards.timestamps),
        )
        auto = TimeSeries(
            name="reward_auto_rewarded",
            description="water rewards: whether the reward was given automatically (not earned)",
            data=dataset(rewards.auto_rewarded),
            unit="n.a.",
            **time_base(rewards.timestamps, reference=volume),
        )
        series += [(volume, rewards.volume_ml, rewards.timestamps), (auto, rewards.auto_rewarded, rewards.timestamps)]
    return series


def _add_intervals(
    nwbfile: NWBFile,
    name: str,
    description: str,
    frame: pd.DataFrame,
    descriptions: Mapping[str, str],
    skip: tuple[str, ...] = (),
) -> list[Expectation]:
    """A TimeIntervals from a DataFrame, added as the trials, the epochs or an intervals table."""
    columns, stored = table_columns(frame, descriptions, skip=skip)
    table = TimeIntervals(name=name, description=description, id=np.arange(len(frame)), columns=columns)
    if name == "trials":
        nwbfile.trials = table
    elif name == "epochs":
        nwbfile.epochs = table
    else:
        nwbfile.add_time_intervals(table)
    return table_expectations(f"intervals/{name}", lambda f: _intervals(f, name), stored)


def _intervals(nwbfile: NWBFile, name: str) -> TimeIntervals:
    if name == "trials":
        return nwbfile.trials
    if name == "epochs":
        return nwbfile.epochs
    return nwbfile.intervals[name]


def build_behavior_nwbfile(bundle: BehaviorSessionBundle, source_sha256: str) -> tuple[NWBFile, list[Expectation]]:
    """The NWBFile of one behavior-only session, and what to verify when it is read back."""
    nwbfile = new_nwbfile(bundle.session, bundle.subject, bundle.provenance)
    expectations = add_behavior(nwbfile, bundle.behavior)
    expectations += add_provenance(nwbfile, bundle.provenance, source_sha256)
    return nwbfile, expectations
