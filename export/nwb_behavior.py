"""Behavior and stimulus, shared by the ophys experiment and the ecephys session files.

Layout (Allen Visual Behavior names, where AllenSDK's BehaviorSession reads them):
- /general/metadata: Allen's BehaviorMetadata (OphysBehaviorMetadata in ophys files): behavior session id,
  session type, rig, project code, stimulus frame rate.
- /general/task_parameters: Allen's BehaviorTaskParameters, when the session ran the task.
- /processing/running: speed (filtered) and speed_unfiltered (cm/s), dx (wheel rotation per sample,
  degrees); /acquisition/v_sig and v_in (encoder voltages, V). They share one set of timestamps.
- /processing/licking/licks: TimeSeries at the lick times; data = stimulus frame index of each lick.
- /processing/rewards/volume (mL) and autorewarded (bool): TimeSeries at the reward times.
- /processing/stimulus/timestamps: display frame times (s), data = timestamps (Allen's layout).
- /stimulus/templates/<image set>: Allen's StimulusTemplate (warped images, `unwarped`, image names in
  control_description), when the bundle has the images; the series is a stack of images (one per "second",
  starting_time 0, rate 1: they have no times of their own), which nwbinspector's time-first orientation
  check reports as CRITICAL whenever an image side exceeds the number of images (docs/nwb.md: why no
  layout satisfies both AllenSDK 2.16.2 and that check).
- /intervals/stimulus_presentations: one TimeIntervals for all presentations, with a stimulus_block column
  (rather than one table per block: blocks of a single presentation, such as a gray screen, would make
  one-row tables, and parameter columns would be all NaN in most blocks -- both nwbinspector findings).
  Float columns that are NaN in every row (a parameter no stimulus of the session has) are left out, and
  so is `params`, the JSON text whose known keys already have columns.
- /intervals/epochs: one row per stimulus block (start, stop, kind, name, active, presentation count).
- /intervals/trials: the NWB trials table; lick_times is a ragged column.

Exactly regular sample times are stored as starting_time + rate (NWB best practice), which AllenSDK, reading
`.timestamps`, does not understand; sync-derived times are never exactly regular.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from pynwb import NWBFile, TimeSeries
from pynwb.epoch import TimeIntervals

from brainobs.export.allen_types import BEHAVIOR_OPHYS, STIMULUS_TEMPLATE, allen_class
from brainobs.export.bundles import (
    BehaviorBundle,
    BehaviorSessionBundle,
    BundleError,
    SessionInfo,
    StimulusTemplates,
    TaskParameters,
)
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

# (processing module, description) of each series group
MODULES = {
    "running": "running speed and the wheel encoder's record",
    "licking": "lick times",
    "rewards": "water rewards",
    "stimulus": "display frame times",
}

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
    "stimulus_change": "whether the image changed in the trial (go or auto-rewarded trial)",
}


def behavior_session_id(session: SessionInfo) -> int:
    """The session id as Allen's integer behavior_session_id."""
    if not session.session_id.isdigit():
        raise BundleError(f"session_id {session.session_id!r} is not the text of an integer, as AllenSDK needs")
    return int(session.session_id)


def behavior_metadata(session: SessionInfo) -> dict[str, object]:
    """The fields of Allen's BehaviorMetadata for this session."""
    return {
        "name": "metadata",
        "behavior_session_id": behavior_session_id(session),
        "behavior_session_uuid": "None",
        "session_type": session.session_type,
        "equipment_name": session.equipment_name,
        "project_code": session.project_code,
        "stimulus_frame_rate": float(session.stimulus_frame_rate),
    }


def add_behavior(nwbfile: NWBFile, behavior: BehaviorBundle) -> list[Expectation]:
    """Add every part the bundle has; returns what to verify on read-back."""
    expectations: list[Expectation] = []
    for module_name, item, data, timestamps in _behavior_series(behavior):
        if module_name == "acquisition":
            nwbfile.add_acquisition(item)
            read = lambda f, name=item.name: f.acquisition[name]  # noqa: E731
        else:
            if module_name not in nwbfile.processing:
                nwbfile.create_processing_module(module_name, MODULES[module_name])
            nwbfile.processing[module_name].add(item)
            read = lambda f, m=module_name, name=item.name: f.processing[m][name]  # noqa: E731
        label = f"{module_name}/{item.name}"
        expectations.append(Expectation(f"{label}/data", lambda f, read=read: read(f).data, data))
        expectations.append(time_expectation(label, read, timestamps))
    if behavior.task_parameters is not None:
        expectations += _add_task_parameters(nwbfile, behavior.task_parameters)
    for templates in behavior.stimulus_templates:
        expectations += _add_stimulus_template(nwbfile, templates)
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


def _task_parameter_values(parameters: TaskParameters) -> dict[str, object]:
    return {
        "task": parameters.task,
        "session_type": parameters.session_type,
        "stimulus": parameters.stimulus,
        "stimulus_name": parameters.stimulus_name,
        "stimulus_distribution": parameters.stimulus_distribution,
        "stimulus_duration_sec": float(parameters.stimulus_duration_sec),
        "blank_duration_sec": [str(float(bound)) for bound in parameters.blank_duration_sec],
        "response_window_sec": [str(float(bound)) for bound in parameters.response_window_sec],
        "omitted_flash_fraction": float(parameters.omitted_flash_fraction),
        "reward_volume": float(parameters.reward_volume),
        "auto_reward_volume": float(parameters.auto_reward_volume),
        "n_stimulus_frames": int(parameters.n_stimulus_frames),
    }


def _add_task_parameters(nwbfile: NWBFile, parameters: TaskParameters) -> list[Expectation]:
    values = _task_parameter_values(parameters)
    task_parameters = allen_class(BEHAVIOR_OPHYS, "BehaviorTaskParameters")
    nwbfile.add_lab_meta_data(task_parameters(name="task_parameters", **values))
    return [
        Expectation(
            f"general/task_parameters/{name}",
            lambda f, name=name: np.asarray(getattr(f.lab_meta_data["task_parameters"], name)),
            np.asarray(value),
        )
        for name, value in values.items()
    ]


def _add_stimulus_template(nwbfile: NWBFile, templates: StimulusTemplates) -> list[Expectation]:
    stimulus_template = allen_class(STIMULUS_TEMPLATE, "StimulusTemplate")
    n_images = len(templates.image_names)
    nwbfile.add_stimulus_template(
        stimulus_template(
            name=templates.image_set,
            description=f"images of the image set {templates.image_set}, warped as shown and unwarped",
            data=dataset(np.asarray(templates.warped)),
            unwarped=dataset(np.asarray(templates.unwarped, dtype=np.float64)),
            control=np.arange(n_images, dtype=np.uint32),
            control_description=list(templates.image_names),
            unit="NA",
            format="raw",
            starting_time=0.0,
            rate=1.0,
        )
    )
    read = lambda f, name=templates.image_set: f.stimulus_template[name]  # noqa: E731
    label = f"stimulus/templates/{templates.image_set}"
    return [
        Expectation(f"{label}/data", lambda f: read(f).data[:], np.asarray(templates.warped)),
        Expectation(f"{label}/unwarped", lambda f: read(f).unwarped[:], np.asarray(templates.unwarped, dtype=float)),
        Expectation(
            f"{label}/image_names",
            lambda f: np.asarray(read(f).control_description[:], dtype=str),
            np.asarray(templates.image_names, dtype=str),
        ),
    ]


def _series(
    name: str, data: np.ndarray, unit: str, description: str, timestamps: np.ndarray, reference: TimeSeries | None
) -> TimeSeries:
    """A TimeSeries at these times (linked to `reference`'s when given and not regular)."""
    return TimeSeries(
        name=name, description=description, data=dataset(data), unit=unit, **time_base(timestamps, reference)
    )


def _behavior_series(behavior: BehaviorBundle) -> list[tuple[str, TimeSeries, np.ndarray, np.ndarray]]:
    """(module or "acquisition", TimeSeries, data, timestamps) for running, licks, rewards and display frames;
    empty lick or reward lists are left out."""
    series = []
    if behavior.running_speed is not None:
        running = behavior.running_speed
        times = running.timestamps
        speed = _series("speed", running.speed, "cm/s", "running speed on the wheel, low-pass filtered", times, None)
        series.append(("running", speed, running.speed, times))
        if running.speed_raw is not None:
            raw = (
                ("running", "speed_unfiltered", running.speed_raw, "cm/s", "running speed before filtering"),
                ("running", "dx", running.dx, "degrees", "wheel rotation since the previous encoder sample"),
                ("acquisition", "v_sig", running.v_sig, "V", "voltage signal from the running wheel encoder"),
                ("acquisition", "v_in", running.v_in, "V", "the theoretical maximum voltage of the encoder"),
            )
            for module_name, name, data, unit, description in raw:
                series.append((module_name, _series(name, data, unit, description, times, speed), data, times))
    if behavior.licks is not None and len(behavior.licks.timestamps):
        licks = behavior.licks
        item = _series(
            "licks",
            licks.frame,
            "N/A",
            "lick times; data is the display frame each lick was logged on",
            licks.timestamps,
            None,
        )
        series.append(("licking", item, licks.frame, licks.timestamps))
    if behavior.rewards is not None and len(behavior.rewards.timestamps):
        rewards = behavior.rewards
        volume = _series("volume", rewards.volume_ml, "mL", "water rewards: volume delivered", rewards.timestamps, None)
        auto = _series(
            "autorewarded",
            rewards.auto_rewarded,
            "N/A",
            "water rewards: whether the reward was given automatically (not earned)",
            rewards.timestamps,
            volume,
        )
        series += [
            ("rewards", volume, rewards.volume_ml, rewards.timestamps),
            ("rewards", auto, rewards.auto_rewarded, rewards.timestamps),
        ]
    if behavior.stimulus_timestamps is not None:
        times = np.asarray(behavior.stimulus_timestamps, dtype=np.float64)
        item = _series("timestamps", times, "s", "display frame times (monitor delay applied)", times, None)
        series.append(("stimulus", item, times, times))
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
    nwbfile = new_nwbfile(bundle.session, bundle.subject, bundle.provenance, identifier=bundle.session.session_id)
    metadata = behavior_metadata(bundle.session)
    nwbfile.add_lab_meta_data(allen_class(BEHAVIOR_OPHYS, "BehaviorMetadata")(**metadata))
    expectations = add_behavior(nwbfile, bundle.behavior)
    expectations += add_provenance(nwbfile, bundle.provenance, source_sha256)
    return nwbfile, expectations
