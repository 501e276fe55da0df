"""Run in the AllenSDK test environment (tests/allensdk/setup-venv.sh), not in brainobs's: read each NWB file
through AllenSDK and compare every stream with the values brainobs wrote next to it (an .npz sidecar).

Usage: python read_allensdk.py MANIFEST.json -> prints one JSON object {file: {stream: "ok" or problem}}.
The manifest lists {"kind": "ophys" | "behavior" | "ecephys", "nwb": path, "sidecar": path}.
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings

import numpy as np

# get_performance_metrics() values compared with the trials and rewards brainobs wrote
PERFORMANCE_COUNTS = (
    "trial_count",
    "go_trial_count",
    "catch_trial_count",
    "hit_trial_count",
    "miss_trial_count",
    "false_alarm_trial_count",
    "correct_reject_trial_count",
    "auto_reward_count",
    "total_reward_count",
    "total_reward_volume",
)


def _same(actual, expected) -> str:
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return f"shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind in "fc":
        ok = np.allclose(actual.astype(float), expected, rtol=1e-6, atol=1e-9, equal_nan=True)
    else:
        ok = np.array_equal(actual.astype(expected.dtype), expected)
    return "ok" if ok else "values differ"


def _behavior_streams(session, expected) -> dict:
    trials = session.trials
    presentations = session.stimulus_presentations
    task = session.task_parameters
    streams = {
        "running_speed": lambda: (session.running_speed[["timestamps", "speed"]].to_numpy().T, "running"),
        "raw_running_speed": lambda: (session.raw_running_speed[["timestamps", "speed"]].to_numpy().T, "running_raw"),
        "running_acquisition": lambda: (
            session._running_acquisition.value.reset_index()[["timestamps", "dx", "v_sig", "v_in"]].to_numpy().T,
            "running_acquisition",
        ),
        "licks": lambda: (session.licks[["timestamps", "frame"]].to_numpy(float).T, "licks"),
        "rewards": lambda: (session.rewards[["timestamps", "volume", "auto_rewarded"]].to_numpy(float).T, "rewards"),
        "stimulus_timestamps": lambda: (session.stimulus_timestamps, "stimulus_timestamps"),
        "stimulus_presentations.start_time": lambda: (presentations["start_time"].to_numpy(), "presentation_start"),
        "stimulus_presentations.image_name": lambda: (
            presentations["image_name"].fillna("").astype(str).to_numpy(),
            "presentation_image",
        ),
        "task_parameters": lambda: (
            np.array([task["response_window_sec"], task["blank_duration_sec"]], float).ravel(),
            "task_windows",
        ),
        "task_parameters.reward_volume": lambda: (
            [task["reward_volume"], task["auto_reward_volume"], task["stimulus_duration_sec"]],
            "task_values",
        ),
        "metadata.behavior_session_id": lambda: (session.metadata["behavior_session_id"], "behavior_session_id"),
        "metadata.driver_line": lambda: (sorted(session.metadata["driver_line"]), "driver_line"),
        "metadata.reporter_line": lambda: (session.metadata["reporter_line"], "reporter_line"),
        "metadata.equipment_name": lambda: (session.metadata["equipment_name"], "equipment_name"),
        "metadata.session_type": lambda: (session.metadata["session_type"], "session_type"),
        "performance": lambda: (
            [float(session.get_performance_metrics()[name]) for name in PERFORMANCE_COUNTS],
            "performance",
        ),
    }
    for column in ("start_time", "change_frame", "response_time", "reward_time", "trial_length"):
        streams[f"trials.{column}"] = lambda c=column: (trials[c].to_numpy(), f"trials_{c}")
    # AllenSDK renames the file's stimulus_change column is_change
    streams["trials.is_change"] = lambda: (trials["is_change"].to_numpy(), "trials_stimulus_change")
    if "template_warped" in expected:
        templates = session.stimulus_templates

        def images(kind):
            names = list(expected["template_names"])
            return np.stack([templates.loc[name, kind] for name in names]), f"template_{kind}"

        streams["stimulus_templates.image_name"] = lambda: (sorted(templates.index), "template_names_sorted")
        streams["stimulus_templates.warped"] = lambda: images("warped")
        streams["stimulus_templates.unwarped"] = lambda: images("unwarped")
    return streams


def _ophys_streams(experiment, expected) -> dict:
    valid = expected["valid_roi"].astype(bool)
    roi_ids = expected["cell_roi_id"][valid]

    def by_roi(frame, column):
        frame = frame.set_index("cell_roi_id").loc[roi_ids]
        return np.stack(frame[column].to_numpy())

    table = experiment.cell_specimen_table.set_index("cell_roi_id").loc[roi_ids]
    return {
        "metadata.ophys_experiment_id": lambda: (experiment.metadata["ophys_experiment_id"], "ophys_experiment_id"),
        "metadata.imaging_depth": lambda: (experiment.metadata["imaging_depth"], "imaging_depth"),
        "metadata.field_of_view": lambda: (
            [experiment.metadata["field_of_view_height"], experiment.metadata["field_of_view_width"]],
            "field_of_view",
        ),
        "metadata.targeted_structure": lambda: (experiment.metadata["targeted_structure"], "targeted_structure"),
        "metadata.indicator": lambda: (experiment.metadata["indicator"], "indicator"),
        "ophys_timestamps": lambda: (experiment.ophys_timestamps, "ophys_timestamps"),
        "dff_traces": lambda: (by_roi(experiment.dff_traces, "dff"), "dff"),
        "corrected_fluorescence_traces": lambda: (
            by_roi(experiment.corrected_fluorescence_traces, "corrected_fluorescence"),
            "corrected",
        ),
        "demixed_traces": lambda: (by_roi(experiment.demixed_traces, "demixed_trace"), "demixed"),
        # AllenSDK 2.16.2's BehaviorOphysExperiment.neuropil_traces returns the demixed traces (its slip); the
        # neuropil traces it read from the file are its CellSpecimens'
        "neuropil_traces": lambda: (by_roi(experiment._cell_specimens.neuropil_traces, "neuropil_trace"), "neuropil"),
        "events": lambda: (by_roi(experiment.events, "events"), "events"),
        "events.lambda": lambda: (by_roi(experiment.events, "lambda"), "lambdas"),
        "events.noise_std": lambda: (by_roi(experiment.events, "noise_std"), "noise_stds"),
        "cell_specimen_table.bbox": lambda: (table[["x", "y", "width", "height"]].to_numpy().T, "bbox"),
        "cell_specimen_table.roi_mask": lambda: (np.stack(table["roi_mask"].to_numpy()), "roi_masks"),
        "motion_correction": lambda: (experiment.motion_correction[["x", "y"]].to_numpy().T, "motion"),
        "max_projection": lambda: (np.asarray(experiment.max_projection.data), "max_projection"),
        "average_projection": lambda: (np.asarray(experiment.average_projection.data), "average_image"),
        "segmentation_mask_image": lambda: (
            np.asarray(experiment.segmentation_mask_image.data),
            "segmentation_mask_image",
        ),
    }


def _ecephys_streams(session) -> dict:
    """EcephysSession reads lazily: every stream opens the file (unfiltered units and channels)."""
    return {
        "probes": lambda: (session.probes[["sampling_rate", "lfp_sampling_rate"]].to_numpy().T, "probe_rates"),
        "channels": lambda: (
            session.channels[["anterior_posterior_ccf_coordinate", "dorsal_ventral_ccf_coordinate"]].to_numpy().T,
            "channel_ccf",
        ),
        "units": lambda: (session.units.index.to_numpy(), "unit_id"),
    }


def check(kind: str, nwb: str, sidecar: str) -> dict:
    from allensdk.brain_observatory.behavior.behavior_ophys_experiment import BehaviorOphysExperiment
    from allensdk.brain_observatory.behavior.behavior_session import BehaviorSession
    from allensdk.brain_observatory.ecephys.ecephys_session import EcephysSession

    expected = np.load(sidecar, allow_pickle=False)
    if kind == "ecephys":
        unfiltered = {"filter_by_validity": False, "filter_out_of_brain_units": False}
        thresholds = {
            "amplitude_cutoff_maximum": np.inf,
            "presence_ratio_minimum": -np.inf,
            "isi_violations_maximum": np.inf,
        }
        session = EcephysSession.from_nwb_path(nwb, api_kwargs={**unfiltered, **thresholds})
        return _read_streams(_ecephys_streams(session), expected)
    try:
        reader = BehaviorOphysExperiment if kind == "ophys" else BehaviorSession
        session = reader.from_nwb_path(nwb)
    except Exception:
        return {"from_nwb_path": traceback.format_exc(limit=-3)}
    streams = _behavior_streams(session, expected)
    if kind == "ophys":
        streams.update(_ophys_streams(session, expected))
    return {"from_nwb_path": "ok", **_read_streams(streams, expected)}


def _read_streams(streams: dict, expected) -> dict:
    results = {}
    for name, read in streams.items():
        try:
            actual, key = read()
            results[name] = _same(actual, expected[key])
        except Exception as error:
            results[name] = f"{type(error).__name__}: {error}"
    return results


def main() -> None:
    warnings.simplefilter("ignore")
    with open(sys.argv[1]) as handle:
        manifest = json.load(handle)
    print(json.dumps({entry["nwb"]: check(entry["kind"], entry["nwb"], entry["sidecar"]) for entry in manifest}))


if __name__ == "__main__":
    main()
