"""Assemble export bundles from the tables: the step between the schemas and `brainobs.export` (which reads no table).

Session start times are stored without a time zone; NWB needs one, and brainobs treats them as UTC.
"""

from __future__ import annotations

import datetime as dt
from importlib.metadata import version

import numpy as np
import pandas as pd

import brainobs
from brainobs.checksums import verifying
from brainobs.export import bundles
from brainobs.schemas import behavior, ophys
from brainobs.schemas.acquisition import Experiment, PlaneGroup, ProbeInsertion, Session, paired_experiment
from brainobs.schemas.matching import CellMatching
from brainobs.schemas.subject import Subject

SOFTWARE = ("datajoint", "suite2p", "spikeinterface", "pynwb", "numpy", "scipy")


def software_versions() -> dict[str, str]:
    return {"brainobs": brainobs.__version__, **{name: version(name) for name in SOFTWARE}}


def subject_info(key: dict) -> bundles.SubjectInfo:
    row = (Subject & key).fetch1()
    born = row["date_of_birth"]
    return bundles.SubjectInfo(
        subject_id=row["subject_id"],
        sex=row["sex"],
        genotype=row["full_genotype"] or "unknown",
        species=row["species"],
        date_of_birth=dt.datetime.combine(born, dt.time(), tzinfo=dt.UTC) if born else None,
        driver_line=tuple(line.strip() for line in row["driver_line"].replace(",", ";").split(";") if line.strip()),
        reporter_line=row["reporter_line"] or None,
    )


def session_info(key: dict) -> bundles.SessionInfo:
    row = (Session & key).fetch1()
    sync = behavior.SessionSync & key
    passive = "passive viewing" if row["passive"] else "active change detection"
    return bundles.SessionInfo(
        session_id=str(row["session_id"]),
        session_start_time=row["session_start_time"].replace(tzinfo=dt.UTC),
        session_description=f"{row['session_type']}: {row['modality']} session, {passive}, image set "
        f"{row['image_set'] or 'none'}, experience level {row['experience_level']}",
        experiment_description=f"brainobs {row['project_code'] or 'survey'} session",
        institution="brainobs",
        keywords=(row["modality"], "visual cortex", "change detection"),
        session_type=row["session_type"],
        equipment_name=row["rig"],
        project_code=row["project_code"],
        stimulus_frame_rate=float(sync.fetch1("display_frame_rate")) if sync else 60.0,
    )


def part_rows(part, key: dict) -> pd.DataFrame:
    """A Part table's rows under ``key``, its ``bool`` columns as bool (MySQL returns them as integers)."""
    rows = pd.DataFrame((part & key).to_dicts())
    for name, attribute in part.heading.attributes.items():
        if (attribute.original_type or attribute.type) in ("bool", "boolean") and name in rows:
            rows[name] = rows[name].astype(bool)
    return rows


def behavior_bundle(key: dict) -> bundles.BehaviorBundle | None:
    """Running speed, licks, rewards, stimulus presentations and blocks, trials; None without a sync record."""
    if not behavior.SessionSync & key:
        return None
    running = (behavior.Behavior.RunningSpeed & key).fetch1()
    licks = (behavior.Behavior.Licks & key).fetch1()
    rewards = (behavior.Behavior.Rewards & key).fetch1()
    presentations = part_rows(behavior.Behavior.Presentation, key)
    presentations = presentations.sort_values("presentation_id").drop(
        columns=[*key, "session_id", "subject_id", "presentation_id"], errors="ignore"
    )
    for column in ("orientation", "position_x", "position_y", "movie_frame_index"):
        presentations[column] = pd.to_numeric(presentations[column], errors="coerce").astype(float)
    trials = part_rows(behavior.Behavior.Trial, key)
    sync = (behavior.SessionSync & key).fetch1()
    vsync = np.asarray(sync["vsync_times"], float)
    return bundles.BehaviorBundle(
        running_speed=bundles.RunningSpeedData(
            np.asarray(running["timestamps"], float),
            np.asarray(running["speed"], float),
            speed_raw=np.asarray(running["speed_raw"], float),
            dx=np.asarray(running["dx"], float),
            v_sig=np.asarray(running["v_sig"], float),
            v_in=np.asarray(running["v_in"], float),
        ),
        licks=bundles.LickData(
            np.asarray(licks["lick_times"], float),
            # a lick's time is the time of the display frame it was logged on (docs/formats/behavior.md)
            np.searchsorted(vsync, np.asarray(licks["lick_times"], float)).astype(np.int64),
        )
        if licks["n_licks"]
        else None,
        rewards=bundles.RewardData(
            np.asarray(rewards["reward_times"], float),
            np.asarray(rewards["volumes"], float),
            np.asarray(rewards["auto_rewarded"], bool),
        )
        if rewards["n_rewards"]
        else None,
        stimulus_presentations=presentations.reset_index(drop=True) if len(presentations) else None,
        stimulus_blocks=_blocks(presentations) if len(presentations) else None,
        trials=_trials(trials) if len(trials) else None,
        column_descriptions={
            "reward_rate": "rewards per minute over the trials around this one (Visual Behavior convention)",
            "engaged": "True when reward_rate is above 2 per minute",
        },
        stimulus_timestamps=vsync + sync["monitor_delay"],
        task_parameters=_task_parameters(key, sync["n_display_frames"]),
        stimulus_templates=_stimulus_templates(key),
    )


def _stimulus_templates(key: dict) -> tuple[bundles.StimulusTemplates, ...]:
    """The image set's images from Behavior.Template; none when the behavior folder had no templates."""
    rows = (behavior.Behavior.Template & key).to_dicts(order_by="image_index")
    if not rows:
        return ()
    return (
        bundles.StimulusTemplates(
            image_set=rows[0]["image_set"],
            image_names=tuple(row["image_name"] for row in rows),
            warped=np.stack([np.asarray(row["warped"]) for row in rows]),
            unwarped=np.stack([np.asarray(row["unwarped"], float) for row in rows]),
        ),
    )


def _task_parameters(key: dict, n_display_frames: int) -> bundles.TaskParameters | None:
    """Allen's task parameters from the session's TaskParameters row; None when session.json had no task."""
    rows = (behavior.TaskParameters & key).to_dicts()
    if not rows or rows[0]["task_name"] is None:
        return None
    row = rows[0]
    session = (Session & key).fetch1()
    return bundles.TaskParameters(
        task=row["task_name"],
        session_type=session["session_type"],
        stimulus="images",
        stimulus_name=f"images_{session['image_set']}" if session["image_set"] else "",
        stimulus_distribution=row["stimulus_distribution"],
        stimulus_duration_sec=row["stimulus_duration"],
        blank_duration_sec=(row["blank_duration_low"], row["blank_duration_high"]),
        response_window_sec=(row["response_window_start"], row["response_window_stop"]),
        omitted_flash_fraction=row["omitted_flash_fraction"],
        reward_volume=row["reward_volume"],
        auto_reward_volume=row["auto_reward_volume"],
        n_stimulus_frames=int(n_display_frames),
    )


def _blocks(presentations: pd.DataFrame) -> pd.DataFrame:
    grouped = presentations.groupby("stimulus_block", sort=True)
    return pd.DataFrame(
        {
            "stimulus_block": grouped["stimulus_block"].first().to_numpy(),
            "stimulus_block_kind": grouped["stimulus_block_kind"].first().to_numpy(),
            "active": grouped["active"].first().to_numpy(),
            "start_time": grouped["start_time"].min().to_numpy(),
            "stop_time": grouped["stop_time"].max().to_numpy(),
            "n_presentations": grouped.size().to_numpy(),
        }
    ).sort_values("start_time", kind="stable")


def _trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials table in Allen's names: is_change is `stimulus_change`, with trial_length = stop - start."""
    trials = trials.sort_values("trial_id").rename(columns={"trial_id": "trial_index", "is_change": "stimulus_change"})
    trials = trials.drop(columns=["subject_id", "session_id"])
    for column in ("change_time", "response_latency", "reward_rate", "response_time", "reward_time"):
        trials[column] = trials[column].astype(float)
    trials["trial_length"] = trials["stop_time"] - trials["start_time"]
    trials["lick_times"] = [np.asarray(times, float).ravel() for times in trials["lick_times"]]
    # response_time and reward_time stay even when NaN throughout (a passive session): AllenSDK needs them
    empty = [c for c in ("change_time", "response_latency", "reward_rate") if trials[c].isna().all()]
    return trials.drop(columns=empty).reset_index(drop=True)


def frame_times(key: dict, n_frames: int, frame_rate: float) -> np.ndarray:
    """2-photon frame times from the sync record; frame index / rate when it has no matching record."""
    sync = (behavior.SessionSync & key).to_dicts()
    if sync and len(times := np.asarray(sync[0]["ophys_frame_times"])) == n_frames:
        return times.astype(float)
    return np.arange(n_frames) / frame_rate


def _time_first(part, key: dict, attribute: str) -> np.ndarray:
    stacked = ophys.stack(part, key, attribute)
    return np.ascontiguousarray(stacked.T)


def plane_group(key: dict) -> dict:
    """The plane's group, order and paired experiment in a multi-plane session (nothing for a single plane)."""
    rows = (PlaneGroup & key).to_dicts()
    if not rows:
        return {}
    partner = paired_experiment(key)
    return {
        "plane_group": rows[0]["plane_group"],
        "plane_order": rows[0]["plane_order"],
        "paired_experiment_id": partner["experiment_id"] if partner else None,
    }


@verifying()  # the sha256 of every array read, not only its size
def ophys_experiment_bundle(key: dict) -> bundles.OphysExperimentBundle:
    """Everything one experiment's NWB file holds; ``key`` names the experiment and its parameter sets."""
    experiment = (Experiment & key).fetch1()
    height, width = experiment["height"], experiment["width"]
    motion = (ophys.MotionCorrection & key).fetch1()
    rois = (ophys.Segmentation.ROI & key).to_dicts(order_by="cell_roi_id")
    labels = ophys.exclusion_labels(key)  # every stage's labels: demixing's demix_error makes a ROI invalid too
    masks = np.zeros((len(rois), height, width), dtype=bool)
    for i, roi in enumerate(rois):
        masks[i, np.asarray(roi["ypix"]), np.asarray(roi["xpix"])] = True
    specimens = {row["cell_roi_id"]: row["cell_specimen_id"] for row in (CellMatching.CellSpecimen & key).to_dicts()}
    neuropil = (ophys.NeuropilCorrection.Trace & key).to_dicts(order_by="cell_roi_id")
    events = (ophys.EventDetection.Event & key).to_dicts(order_by="cell_roi_id")
    n_frames = motion["n_frames"]

    def column(rows: list[dict], name: str) -> np.ndarray:
        return np.array([np.nan if row[name] is None else row[name] for row in rows], dtype=float)

    segmentation_image = np.zeros((height, width), dtype=np.uint16)
    for i, roi in enumerate(rois):
        segmentation_image[np.asarray(roi["ypix"]), np.asarray(roi["xpix"])] = i + 1
    params = (ophys.OphysParamSet & key).fetch1()
    return bundles.OphysExperimentBundle(
        subject=subject_info(key),
        session=session_info(key),
        plane=bundles.ImagingPlaneInfo(
            experiment_id=experiment["experiment_id"],
            indicator=(Subject & key).fetch1("indicator"),
            imaging_rate_hz=experiment["frame_rate"],
            targeted_structure=experiment["targeted_structure"],
            imaging_depth_um=float(experiment["imaging_depth"]),
            pixel_size_um=experiment["pixel_size_um"],
            container_id=experiment["container_id"],
            **plane_group(key),
        ),
        rois=bundles.RoiTable(
            cell_roi_id=np.array([r["cell_roi_id"] for r in rois], dtype=np.int64),
            cell_specimen_id=np.array([specimens.get(r["cell_roi_id"], -1) for r in rois], dtype=np.int64),
            x=np.array([r["x"] for r in rois], dtype=np.int64),
            y=np.array([r["y"] for r in rois], dtype=np.int64),
            width=np.array([r["width"] for r in rois], dtype=np.int64),
            height=np.array([r["height"] for r in rois], dtype=np.int64),
            valid_roi=np.array([r["cell_roi_id"] not in labels for r in rois], dtype=bool),
            image_mask=masks,
            r=column(neuropil, "r"),
            rmse=column(neuropil, "rmse"),
        ),
        traces=bundles.RoiTraces(
            timestamps=frame_times(key, n_frames, experiment["frame_rate"]),
            dff=_time_first(ophys.DeltaFOverF.Trace, key, "dff"),
            corrected=_time_first(ophys.NeuropilCorrection.Trace, key, "corrected_trace"),
            demixed=_time_first(ophys.Demixing.Trace, key, "demixed_trace"),
            neuropil=_time_first(ophys.Fluorescence.Trace, key, "neuropil_trace"),
            events=_time_first(ophys.EventDetection.Event, key, "events"),
            lambdas=column(events, "l0_lambda"),
            noise_stds=column(events, "noise_std"),
        ),
        motion=bundles.MotionCorrectionData(
            x=np.asarray(motion["x_offset"], float),
            y=np.asarray(motion["y_offset"], float),
            max_correction_up=motion["max_correction_up"],
            max_correction_down=motion["max_correction_down"],
            max_correction_left=motion["max_correction_left"],
            max_correction_right=motion["max_correction_right"],
        ),
        images=bundles.ProjectionImages(
            max_projection=np.asarray(motion["max_image"], float),
            average_image=np.asarray(motion["average_image"], float),
            segmentation_mask_image=segmentation_image,
        ),
        behavior=behavior_bundle(key),
        provenance=bundles.Provenance(
            parameter_sets=(bundles.ParameterSet("ophys", params["param_hash"], params["params"]),),
            software=software_versions(),
        ),
    )


@verifying()  # the sha256 of every array read, not only its size
def behavior_session_bundle(key: dict) -> bundles.BehaviorSessionBundle:
    """One behavior-only session: its subject, session and behavior."""
    behavior_data = behavior_bundle(key)
    if behavior_data is None:
        raise LookupError(f"session {key['session_id']} has no behavior (no sync record)")
    return bundles.BehaviorSessionBundle(
        subject=subject_info(key),
        session=session_info(key),
        behavior=behavior_data,
        provenance=bundles.Provenance(software=software_versions()),
    )


@verifying()  # the sha256 of every array read, not only its size
def ecephys_session_bundle(key: dict) -> bundles.EcephysSessionBundle:
    """Every probe of one ecephys session with its channels and all units (unfiltered) and metrics.

    Waveforms are each unit's mean waveform on every channel of its probe; channel ids are
    ``probe index * 10000 + channel_index``, unique across the session's probes."""
    from brainobs.schemas.ephys import DEFAULT_PARAMSET, EphysRecording, SortingParamSet, SpikeSorting, units_table

    key = {**key, "sorting_paramset": key.get("sorting_paramset", DEFAULT_PARAMSET)}
    recordings = (EphysRecording * ProbeInsertion.proj("probe_type", "targeted_structure") & key).to_dicts(
        order_by="probe_name"
    )
    probe_index = {row["probe_name"]: i for i, row in enumerate(recordings)}
    channels = pd.DataFrame((EphysRecording.Channel & key).to_dicts())
    channel_id = channels["probe_name"].map(probe_index) * 10000 + channels["channel_index"]
    units = units_table(key).sort_values(["probe_name", "unit_id"]).reset_index(drop=True)
    stored = {
        (row["probe_name"], row["unit_id"]): row for row in (SpikeSorting.Unit & key).to_dicts(order_by="unit_id")
    }
    rows = [stored[(probe, unit)] for probe, unit in zip(units["probe_name"], units["unit_id"], strict=True)]
    peak = [int(row["peak_channel"]) for row in rows]
    peak_ids = np.array([probe_index[p] * 10000 + c for p, c in zip(units["probe_name"], peak, strict=True)])
    # stored on every channel of the probe (samples x channel_index); all of them go to the file, or, when the
    # probes differ in channel count, the same number around each unit's peak channel
    width = min(int(row["n_channels"]) for row in recordings)
    waveforms, waveform_ids = [], []
    for probe, row in zip(units["probe_name"], rows, strict=True):
        waveform = np.asarray(row["mean_waveform"], dtype=np.float32)
        first = min(max(0, int(row["peak_channel"]) - width // 2), waveform.shape[1] - width)
        waveforms.append(waveform[:, first : first + width] * np.float32(1e-6))
        waveform_ids.append(probe_index[probe] * 10000 + np.arange(first, first + width))
    params = (SortingParamSet & key).to_dicts()
    return bundles.EcephysSessionBundle(
        subject=subject_info(key),
        session=session_info(key),
        probes=tuple(
            bundles.ProbeInfo(
                name=row["probe_name"],
                description=f"{row['probe_type']}, {row['n_channels']} channels recorded",
                sampling_rate_hz=row["sampling_rate"],
                targeted_structure=row["targeted_structure"] or None,
            )
            for row in recordings
        ),
        channels=bundles.ChannelTable(
            channel_id=channel_id.to_numpy(dtype=np.int64),
            probe_name=channels["probe_name"].to_numpy(dtype=str),
            probe_channel_number=channels["channel_index"].to_numpy(dtype=np.int64),
            probe_vertical_position=channels["y_um"].to_numpy(dtype=float),
            probe_horizontal_position=channels["x_um"].to_numpy(dtype=float),
            location=channels["location"].to_numpy(dtype=str),
            ccf_coordinates=_ccf(channels),
        ),
        units=bundles.UnitTable(
            unit_id=np.arange(len(units), dtype=np.int64),
            peak_channel_id=peak_ids.astype(np.int64),
            quality=units["quality"].to_numpy(dtype=str),
            spike_times=tuple(np.asarray(row["spike_times"], float) for row in rows),
            spike_amplitudes=tuple(np.asarray(row["spike_amplitudes"], float) * 1e-6 for row in rows),
            waveform_mean=np.stack(waveforms),
            waveform_channel_ids=np.stack(waveform_ids).astype(np.int64),
            waveform_rate_hz=float(recordings[0]["sampling_rate"]),
            metrics=units[list(bundles.UNIT_METRICS)].astype(float).reset_index(drop=True),
            cluster_id=units["unit_id"].to_numpy(dtype=np.int64),
            local_index=units.groupby("probe_name").cumcount().to_numpy(dtype=np.int64),
        ),
        behavior=behavior_bundle(key),
        provenance=bundles.Provenance(
            parameter_sets=tuple(bundles.ParameterSet("spike_sorting", p["param_hash"], p["params"]) for p in params),
            software=software_versions(),
        ),
    )


def _ccf(channels: pd.DataFrame) -> np.ndarray | None:
    """(channels, 3) CCF um (anterior-posterior, dorsal-ventral, left-right), NaN where not registered; None
    when no channel is."""
    ccf = channels[["ccf_ap_um", "ccf_dv_um", "ccf_lr_um"]].to_numpy(dtype=float, na_value=np.nan)
    return None if np.isnan(ccf).all() else ccf
