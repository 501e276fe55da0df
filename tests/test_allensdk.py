"""AllenSDK 2.16.2 reads our 2-photon and behavior files unchanged, and returns our values; it cannot open our
Neuropixels files (pinned below, docs/nwb.md).

AllenSDK cannot share brainobs's environment (it pins numpy < 1.24), so tests/allensdk/setup-venv.sh builds
a separate one (cached between runs, about a minute on first use) and tests/allensdk/read_allensdk.py reads
the files there, comparing every stream with an .npz sidecar of the values the bundle gave the writer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from brainobs.export.bundles import BehaviorSessionBundle
from brainobs.export.writer import export_behavior_session, export_ecephys_session, export_ophys_experiment
from tests.test_export_bundles import (
    make_behavior,
    make_ecephys_bundle,
    make_ophys_bundle,
    make_provenance,
    make_session,
    make_subject,
)

HERE = Path(__file__).resolve().parent / "allensdk"


@pytest.fixture(scope="module")
def allensdk_python() -> Path:
    return allensdk_venv()


@cache
def allensdk_venv() -> Path:
    """The AllenSDK environment's python (built once, then reused from its cache folder)."""
    built = subprocess.run(
        ["bash", str(HERE / "setup-venv.sh")], capture_output=True, text=True, timeout=900, env=os.environ.copy()
    )
    assert built.returncode == 0, f"building the AllenSDK environment failed:\n{built.stderr[-3000:]}"
    return Path(built.stdout.strip().splitlines()[-1])


def read_in_allensdk(folder: Path, files: list[tuple[str, Path, dict[str, np.ndarray]]]) -> dict[str, dict[str, str]]:
    """Read each (kind, NWB file, expected values) through AllenSDK; {file name: {stream: "ok" or problem}}."""
    manifest = []
    for kind, nwb, sidecar in files:
        np.savez(folder / f"{nwb.stem}.npz", **sidecar)
        manifest.append({"kind": kind, "nwb": str(nwb), "sidecar": str(folder / f"{nwb.stem}.npz")})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    read = subprocess.run(
        [str(allensdk_venv()), str(HERE / "read_allensdk.py"), str(folder / "manifest.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert read.returncode == 0, read.stderr[-3000:]
    return {Path(f).name: streams for f, streams in json.loads(read.stdout.strip().splitlines()[-1]).items()}


def problems_of(results: dict[str, dict[str, str]]) -> dict[str, str]:
    return {f"{name}: {stream}": r for name, streams in results.items() for stream, r in streams.items() if r != "ok"}


def behavior_sidecar(session, subject, behavior) -> dict[str, np.ndarray]:
    running, licks, rewards, trials = behavior.running_speed, behavior.licks, behavior.rewards, behavior.trials
    task = behavior.task_parameters
    values = {
        "running": np.stack([running.timestamps, running.speed]),
        "running_raw": np.stack([running.timestamps, running.speed_raw]),
        "running_acquisition": np.stack([running.timestamps, running.dx, running.v_sig, running.v_in]),
        "licks": np.stack([licks.timestamps, licks.frame.astype(float)]) if licks else np.zeros((2, 0)),
        "rewards": (
            np.stack([rewards.timestamps, rewards.volume_ml, rewards.auto_rewarded.astype(float)])
            if rewards
            else np.zeros((3, 0))
        ),
        "stimulus_timestamps": behavior.stimulus_timestamps,
        "presentation_start": behavior.stimulus_presentations["start_time"].to_numpy(),
        "presentation_image": behavior.stimulus_presentations["image_name"].to_numpy(dtype=str),
        "task_windows": np.array([*task.response_window_sec, *task.blank_duration_sec], float),
        "task_values": np.array([task.reward_volume, task.auto_reward_volume, task.stimulus_duration_sec]),
        "behavior_session_id": np.array(int(session.session_id)),
        "driver_line": np.array(sorted(subject.driver_line)),
        "reporter_line": np.array(subject.reporter_line),
        "equipment_name": np.array(session.equipment_name),
        "session_type": np.array(session.session_type),
        # get_performance_metrics(): trial, go, catch, hit, miss, false alarm, correct reject counts; auto and
        # all rewards; total volume (read_allensdk.PERFORMANCE_COUNTS)
        "performance": np.array(
            [
                len(trials),
                *(trials[c].sum() for c in ("go", "catch", "hit", "miss", "false_alarm", "correct_reject")),
                rewards.auto_rewarded.sum() if rewards else 0,
                len(rewards.timestamps) if rewards else 0,
                rewards.volume_ml.sum() if rewards else 0.0,
            ],
            float,
        ),
    }
    for column in ("start_time", "change_frame", "response_time", "reward_time", "stimulus_change", "trial_length"):
        values[f"trials_{column}"] = trials[column].to_numpy()
    for templates in behavior.stimulus_templates:
        values["template_names"] = np.array(templates.image_names)
        values["template_names_sorted"] = np.array(sorted(templates.image_names))
        values["template_warped"] = np.asarray(templates.warped, float)
        values["template_unwarped"] = np.asarray(templates.unwarped, float)
    return values


def ophys_sidecar(bundle) -> dict[str, np.ndarray]:
    valid = np.asarray(bundle.rois.valid_roi, bool)
    traces, rois = bundle.traces, bundle.rois
    return {
        **behavior_sidecar(bundle.session, bundle.subject, bundle.behavior),
        "valid_roi": valid,
        "cell_roi_id": np.asarray(rois.cell_roi_id),
        "ophys_experiment_id": np.array(bundle.plane.experiment_id),
        "imaging_depth": np.array(round(bundle.plane.imaging_depth_um)),
        "field_of_view": np.array(bundle.images.max_projection.shape),
        "targeted_structure": np.array(bundle.plane.targeted_structure),
        "indicator": np.array(bundle.plane.indicator),
        "ophys_timestamps": traces.timestamps,
        **{name: getattr(traces, name)[:, valid].T for name in ("dff", "corrected", "demixed", "neuropil", "events")},
        "lambdas": traces.lambdas[valid],
        "noise_stds": traces.noise_stds[valid],
        "bbox": np.stack([rois.x, rois.y, rois.width, rois.height])[:, valid],
        "roi_masks": rois.image_mask[valid],
        "motion": np.stack([bundle.motion.x, bundle.motion.y]),
        "max_projection": bundle.images.max_projection,
        "average_image": bundle.images.average_image,
        # AllenSDK draws this image from the valid ROIs' masks
        "segmentation_mask_image": rois.image_mask[valid].any(axis=0).astype(np.uint8),
    }


def ecephys_sidecar(bundle) -> dict[str, np.ndarray]:
    probes = bundle.probes
    ccf = bundle.channels.ccf_coordinates
    return {
        "probe_rates": np.array(
            [[p.sampling_rate_hz for p in probes], [p.lfp_sampling_rate_hz or np.nan for p in probes]], float
        ),
        "channel_ccf": ccf[:, :2].T,
        "unit_id": np.asarray(bundle.units.unit_id),
    }


def test_allensdk_reads_every_stream(tmp_path: Path, allensdk_python: Path) -> None:
    ophys = make_ophys_bundle()
    ophys = dataclasses.replace(ophys, behavior=make_behavior(np.random.default_rng(3), templates=True))
    behavior = BehaviorSessionBundle(
        subject=make_subject(),
        session=make_session("951410080"),
        behavior=make_behavior(np.random.default_rng(4), templates=True),
        provenance=make_provenance(),
    )
    # a session without a lick: every row of the ragged lick_times column is empty (docs/nwb.md)
    trials = behavior.behavior.trials.assign(lick_times=[np.zeros(0)] * len(behavior.behavior.trials))
    lick_free = dataclasses.replace(
        behavior,
        session=make_session("951410081"),
        behavior=dataclasses.replace(behavior.behavior, licks=None, trials=trials, stimulus_templates=()),
    )
    files = []
    for name, kind, bundle, export, sidecar in (
        ("ophys", "ophys", ophys, export_ophys_experiment, ophys_sidecar(ophys)),
        *(
            (name, "behavior", b, export_behavior_session, behavior_sidecar(b.session, b.subject, b.behavior))
            for name, b in (("behavior", behavior), ("lick_free", lick_free))
        ),
    ):
        export(bundle, tmp_path / f"{name}.nwb")
        files.append((kind, tmp_path / f"{name}.nwb", sidecar))
    ecephys = make_ecephys_bundle()
    export_ecephys_session(ecephys, tmp_path / "ecephys.nwb")
    files.append(("ecephys", tmp_path / "ecephys.nwb", ecephys_sidecar(ecephys)))
    results = read_in_allensdk(tmp_path, files)
    # known gap (docs/nwb.md): AllenSDK's pynwb 2.8 (NWB core 2.7) has no ElectrodesTable type, which current
    # pynwb writes for /general/extracellular_ephys/electrodes, so every ecephys stream fails to open the file
    ecephys_results = results.pop("ecephys.nwb")
    assert ecephys_results and all("No specification for 'ElectrodesTable'" in r for r in ecephys_results.values()), (
        json.dumps(ecephys_results, indent=1)
    )
    assert not problems_of(results), json.dumps(problems_of(results), indent=1)
    assert len(results["ophys.nwb"]) > 35 and len(results["behavior.nwb"]) > 20
    assert results["lick_free.nwb"]["performance"] == results["lick_free.nwb"]["licks"] == "ok"
    for name in ("ophys.nwb", "behavior.nwb"):
        assert {"stimulus_templates.warped", "stimulus_templates.unwarped"} <= set(results[name]), results[name]
