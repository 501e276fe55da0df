"""Small realistic export bundles (used by every test_export_* module) and the bundle checks themselves."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from brainobs.export.bundles import (
    UNIT_METRICS,
    BehaviorBundle,
    BundleError,
    ChannelTable,
    EcephysSessionBundle,
    ImagingPlaneInfo,
    LickData,
    MotionCorrectionData,
    OphysExperimentBundle,
    ParameterSet,
    ProbeInfo,
    ProjectionImages,
    Provenance,
    RewardData,
    RoiTable,
    RoiTraces,
    RunningSpeedData,
    SessionInfo,
    StimulusTemplates,
    SubjectInfo,
    TaskParameters,
    UnitTable,
    source_digest,
)

START = datetime(2024, 3, 5, 9, 30, tzinfo=timezone(timedelta(hours=-8)))
FRAME_RATE = 31.0
N_FRAMES = 200
FOV = 64


def make_subject(subject_id: str = "409296") -> SubjectInfo:
    return SubjectInfo(
        subject_id=subject_id,
        sex="F",
        genotype="Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt",
        date_of_birth=START - timedelta(days=112),
        strain="C57BL/6J",
        driver_line=("Slc17a7-IRES2-Cre", "Camk2a-tTA"),
        reporter_line="Ai93(TITL-GCaMP6f)",
    )


def make_session(session_id: str = "951410079") -> SessionInfo:
    return SessionInfo(
        session_id=session_id,
        session_start_time=START,
        session_description="OPHYS_1_images_A: change detection with familiar images",
        experiment_description="brainobs synthetic Visual Behavior session",
        institution="Allen Institute for Brain Science",
        lab="brainobs",
        experimenter=("Doe, Jane",),
        keywords=("2-photon calcium imaging", "visual cortex", "change detection"),
        session_type="OPHYS_1_images_A",
        equipment_name="CAM2P.4",
        project_code="VisualBehavior",
        stimulus_frame_rate=60.0,
    )


def make_provenance() -> Provenance:
    return Provenance(
        parameter_sets=(
            ParameterSet("motion_correction", "3b1f0c", {"maxregshift": 0.2, "smooth_sigma": 1.15}),
            ParameterSet("dff", "9e22aa", {"long_window_s": 600, "short_window_s": 3.33, "filter": {"order": 2}}),
        ),
        software={"suite2p": "1.1.0"},
    )


def _jittered_times(n: int, rate: float, rng: np.random.Generator, start: float = 0.5) -> np.ndarray:
    return start + np.arange(n) / rate + rng.normal(0.0, 2e-4, n)


def make_behavior(
    rng: np.random.Generator, duration_s: float = N_FRAMES / FRAME_RATE, templates: bool = False
) -> BehaviorBundle:
    """Running at 60 Hz, licks, rewards, two stimulus blocks (flashed images, gray screen) and six trials;
    with `templates`, the three images (2 x 3 pixels) of the image set."""
    running_times = _jittered_times(int(duration_s * 60), 60.0, rng, start=0.4)
    speed = np.abs(8.0 * np.sin(running_times / 2.0) + rng.normal(0, 1.0, running_times.size))
    v_in = np.full(running_times.size, 5.0)
    v_sig = (np.cumsum(speed) * 0.01) % 5.0
    dx = np.concatenate([[np.nan], np.diff(np.cumsum(speed) * 0.01) / 5.0 * 360.0])
    speed_raw = speed + rng.normal(0, 0.5, speed.size)
    n_flash = 7
    flash_start = 0.6 + 0.75 * np.arange(n_flash)
    images = ["im065", "im065", "im077", "im077", "omitted", "im062", "im062"]
    presentations = pd.DataFrame(
        {
            "stimulus_block": [0] * n_flash + [1],
            "stimulus_block_kind": ["change_detection"] * n_flash + ["gray_screen"],
            "stimulus_block_name": ["images_A"] * n_flash + ["gray"],
            "stimulus_name": ["Natural_Images_Lum_Matched_set_training_2017.07.14"] * n_flash + ["gray"],
            "active": [True] * n_flash + [False],
            "start_frame": [36 + 45 * i for i in range(n_flash)] + [352],
            "end_frame": [51 + 45 * i for i in range(n_flash)] + [390],
            "start_time": [*flash_start, 5.9],
            "stop_time": [*(flash_start + 0.25), 6.4],
            "image_name": [*images, ""],
            "omitted": [name == "omitted" for name in images] + [False],
            "is_change": [False, False, True, False, False, True, False, False],
            "flash_index": [*range(n_flash), -1],
            "params": ["{}"] * (n_flash + 1),
            "orientation": np.full(n_flash + 1, np.nan),
        }
    )
    presentations["duration"] = presentations["stop_time"] - presentations["start_time"]
    blocks = pd.DataFrame(
        {
            "stimulus_block": [0, 1],
            "stimulus_block_kind": ["change_detection", "gray_screen"],
            "stimulus_block_name": ["images_A", "gray"],
            "active": [True, False],
            "start_time": [0.6, 5.9],
            "stop_time": [flash_start[-1] + 0.25, 6.4],
            "n_presentations": [n_flash, 1],
        }
    )
    outcomes = ["hit", "miss", "aborted", "false_alarm", "correct_reject", "auto_rewarded"]
    starts = 0.5 + np.arange(6) * 1.0
    change = starts + 0.5
    trials = pd.DataFrame(
        {
            "trial_index": np.arange(6),
            "start_time": starts,
            "stop_time": starts + 0.95,
            "change_time": np.where(np.array(outcomes) == "aborted", np.nan, change),
            "outcome": outcomes,
            **{name: np.array(outcomes) == name for name in outcomes},
            "response_latency": [0.4, np.inf, np.nan, 0.3, np.inf, 0.5],
            "lick_times": [np.array([1.4, 1.5]), np.array([]), np.array([2.6]), np.array([4.3]), np.array([]), [6.0]],
            "reward_volume": [0.005, 0.0, 0.0, 0.0, 0.0, 0.005],
            "initial_image_name": ["im065", "im077", "im077", "im062", "im062", "im065"],
            "change_image_name": ["im077", "im062", "im077", "im062", "im062", "im065"],
            "change_frame": [60, 120, -1, 240, 300, 360],
            "response_time": [1.4, np.nan, np.nan, 4.3, np.nan, 6.0],
            "reward_time": [1.41, np.nan, np.nan, np.nan, np.nan, 6.01],
            "stimulus_change": [True, True, False, False, False, True],
            "go": [True, True, False, False, False, False],
            "catch": [False, False, False, True, True, False],
            "trial_length": np.full(6, 0.95),
        }
    )
    licks = np.array([1.4, 1.5, 2.6, 4.3, 6.0])
    template_names = ("im062", "im065", "im077")
    warped = rng.integers(0, 256, (3, 2, 3)).astype(np.uint8)
    unwarped = np.where(np.arange(3) < 2, warped, np.nan)
    return BehaviorBundle(
        running_speed=RunningSpeedData(running_times, speed, speed_raw=speed_raw, dx=dx, v_sig=v_sig, v_in=v_in),
        licks=LickData(licks, np.round(licks * 60).astype(np.int64)),
        rewards=RewardData(np.array([1.41, 6.01]), np.array([0.005, 0.005]), np.array([False, True])),
        stimulus_presentations=presentations,
        stimulus_blocks=blocks,
        trials=trials,
        stimulus_timestamps=_jittered_times(int(duration_s * 60), 60.0, rng, start=0.1),
        task_parameters=TaskParameters(
            task="change detection",
            session_type="OPHYS_1_images_A",
            stimulus="images",
            stimulus_name="Natural_Images_Lum_Matched_set_training_2017.07.14",
            stimulus_distribution="geometric",
            stimulus_duration_sec=0.25,
            blank_duration_sec=(0.5, 0.5),
            response_window_sec=(0.15, 0.75),
            omitted_flash_fraction=0.05,
            reward_volume=0.005,
            auto_reward_volume=0.005,
            n_stimulus_frames=int(duration_s * 60),
        ),
        stimulus_templates=(StimulusTemplates("images_A", template_names, warped, unwarped),) if templates else (),
    )


def make_ophys_bundle(
    seed: int = 0, n_roi: int = 4, experiment_id: int = 951980471, **changes
) -> OphysExperimentBundle:
    """A 64x64 plane with `n_roi` disk ROIs, 200 frames at 31 Hz, calcium transients and motion."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:FOV, :FOV]
    centres = rng.uniform(10, FOV - 10, size=(n_roi, 2))
    masks = np.stack([(yy - cy) ** 2 + (xx - cx) ** 2 <= 16 for cy, cx in centres])
    rows = [np.flatnonzero(m.any(axis=1)) for m in masks]
    cols = [np.flatnonzero(m.any(axis=0)) for m in masks]
    rois = RoiTable(
        cell_roi_id=1080000000 + np.arange(n_roi),
        cell_specimen_id=np.where(np.arange(n_roi) < n_roi - 1, 1086490000 + np.arange(n_roi), -1),
        x=np.array([c[0] for c in cols]),
        y=np.array([r[0] for r in rows]),
        width=np.array([len(c) for c in cols]),
        height=np.array([len(r) for r in rows]),
        valid_roi=np.arange(n_roi) < n_roi - 1,
        image_mask=masks,
        r=rng.uniform(0.5, 0.9, n_roi),
        rmse=rng.uniform(5, 15, n_roi),
    )
    spikes = (rng.random((N_FRAMES, n_roi)) < 0.03) * rng.uniform(0.2, 1.0, (N_FRAMES, n_roi))
    kernel = np.exp(-np.arange(30) / (0.7 * FRAME_RATE))
    dff = np.stack([np.convolve(spikes[:, i], kernel)[:N_FRAMES] for i in range(n_roi)], axis=1)
    dff += rng.normal(0, 0.03, dff.shape)
    neuropil = 200 + rng.normal(0, 5, (N_FRAMES, n_roi))
    corrected = 400 * (1 + dff)
    traces = RoiTraces(
        timestamps=_jittered_times(N_FRAMES, FRAME_RATE, rng),
        dff=dff,
        corrected=corrected,
        demixed=corrected + rois.r * neuropil,
        neuropil=neuropil,
        events=spikes,
        lambdas=rng.uniform(0.01, 0.1, n_roi),
        noise_stds=np.full(n_roi, 0.03),
    )
    average = 100 + masks.sum(axis=0) * 50 + rng.normal(0, 3, (FOV, FOV))
    bundle = OphysExperimentBundle(
        subject=make_subject(),
        session=make_session(),
        plane=ImagingPlaneInfo(
            experiment_id=experiment_id,
            indicator="GCaMP6f",
            imaging_rate_hz=FRAME_RATE,
            targeted_structure="VISp",
            imaging_depth_um=175.0,
            pixel_size_um=0.78,
            container_id=1018028342,
            device_manufacturer="Scientifica",
        ),
        rois=rois,
        traces=traces,
        motion=MotionCorrectionData(
            x=rng.integers(-3, 4, N_FRAMES).astype(np.int32),
            y=rng.integers(-2, 3, N_FRAMES).astype(np.int32),
            max_correction_up=2.0,
            max_correction_down=2.0,
            max_correction_left=3.0,
            max_correction_right=3.0,
        ),
        images=ProjectionImages(
            max_projection=(average * 1.5).astype(np.float32),
            average_image=average.astype(np.float32),
            segmentation_mask_image=masks.any(axis=0),
        ),
        behavior=make_behavior(rng),
        provenance=make_provenance(),
    )
    return dataclasses.replace(bundle, **changes) if changes else bundle


def make_ecephys_bundle(seed: int = 1, **changes) -> EcephysSessionBundle:
    """Two probes of six channels each and two units with a few dozen spikes each."""
    rng = np.random.default_rng(seed)
    probes = (
        ProbeInfo("probeA", "Neuropixels 1.0 probe A", targeted_structure="VISp", probe_id=1),
        ProbeInfo("probeB", "Neuropixels 1.0 probe B", targeted_structure="LGd", probe_id=2),
    )
    n_per_probe = 6
    numbers = np.tile(np.arange(n_per_probe), 2)
    channels = ChannelTable(
        channel_id=850000000 + np.arange(2 * n_per_probe),
        probe_name=np.repeat(["probeA", "probeB"], n_per_probe),
        probe_channel_number=numbers,
        probe_vertical_position=20.0 * (numbers // 2) + 20.0,
        probe_horizontal_position=np.where(numbers % 2 == 0, 43.0, 11.0),
        location=np.array(["VISp", "VISp", "VISp", "CA1", "CA1", "DG", "LGd", "LGd", "LP", "LP", "LP", "APN"]),
        # CCF um (anterior-posterior, dorsal-ventral, left-right); the last channel is not registered
        ccf_coordinates=np.vstack(
            [np.column_stack([np.full(11, 8500.0), 1200.0 + 20 * np.arange(11), np.full(11, 7600.0)]), [np.nan] * 3]
        ),
    )
    spike_times = tuple(np.sort(rng.uniform(0.1, 6.4, n)) for n in (48, 31))
    spike_amplitudes = tuple(rng.normal(120e-6, 10e-6, len(t)) for t in spike_times)
    samples = np.arange(82)
    template = -np.exp(-((samples - 20) ** 2) / 20.0) + 0.4 * np.exp(-((samples - 35) ** 2) / 60.0)
    waveform_channels = np.array([[850000001, 850000002, 850000003], [850000007, 850000008, 850000009]])
    waveform_mean = np.stack([np.outer(template, [0.5, 1.0, 0.6]) * 100e-6 for _ in range(2)])
    metrics = pd.DataFrame({name: rng.uniform(0.1, 5.0, 2) for name in UNIT_METRICS})
    metrics["velocity_below"] = [np.nan, 0.2]
    units = UnitTable(
        unit_id=np.array([950910000, 950910001]),
        peak_channel_id=np.array([850000002, 850000008]),
        quality=np.array(["good", "noise"]),
        spike_times=spike_times,
        spike_amplitudes=spike_amplitudes,
        waveform_mean=waveform_mean,
        waveform_channel_ids=waveform_channels,
        waveform_rate_hz=30000.0,
        metrics=metrics,
        cluster_id=np.array([12, 3]),
        local_index=np.array([0, 0]),
    )
    session = dataclasses.replace(
        make_session("1055240613"), session_description="ecephys session: receptive field mapping and flashes"
    )
    bundle = EcephysSessionBundle(
        subject=make_subject("550324"),
        session=session,
        probes=probes,
        channels=channels,
        units=units,
        behavior=make_behavior(rng),
        provenance=make_provenance(),
    )
    return dataclasses.replace(bundle, **changes) if changes else bundle


# ------------------------------------------------------------------------------------------------------ tests


def test_bundles_build() -> None:
    ophys = make_ophys_bundle()
    assert ophys.traces.dff.shape == (N_FRAMES, 4)
    assert ophys.rois.image_mask.shape == (4, FOV, FOV)
    ecephys = make_ecephys_bundle()
    assert [len(t) for t in ecephys.units.spike_times] == [48, 31]


def test_age_from_date_of_birth() -> None:
    assert make_subject().age_at(START) == "P112D"
    with pytest.raises(BundleError, match="born after"):
        make_subject().age_at(START - timedelta(days=200))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("corrected", np.zeros((N_FRAMES, 3)), r"traces.corrected has shape \(200, 3\)"),
        ("timestamps", np.zeros(N_FRAMES), "not strictly increasing"),
        ("lambdas", np.zeros(2), "traces.lambdas has 2 entries"),
    ],
)
def test_traces_reject_bad_shapes(field: str, value: np.ndarray, message: str) -> None:
    traces = make_ophys_bundle().traces
    with pytest.raises(BundleError, match=message):
        dataclasses.replace(traces, **{field: value})


def test_bundle_rejects_mismatched_parts() -> None:
    bundle = make_ophys_bundle()
    with pytest.raises(BundleError, match="3 ROIs but traces for 4"):
        dataclasses.replace(bundle, rois=make_ophys_bundle(n_roi=3).rois, traces=bundle.traces)
    with pytest.raises(BundleError, match="timezone-aware"):
        dataclasses.replace(make_session(), session_start_time=datetime(2024, 1, 1))
    with pytest.raises(BundleError, match="lacks the column"):
        make_ecephys_bundle().units.metrics.pipe(
            lambda m: dataclasses.replace(make_ecephys_bundle().units, metrics=m.drop(columns="snr"))
        )
    with pytest.raises(BundleError, match="not in channels"):
        ecephys = make_ecephys_bundle()
        dataclasses.replace(ecephys, units=dataclasses.replace(ecephys.units, peak_channel_id=np.array([1, 2])))


def test_source_digest_tracks_content() -> None:
    first = source_digest(make_ophys_bundle(seed=0))
    assert first == source_digest(make_ophys_bundle(seed=0))
    assert first != source_digest(make_ophys_bundle(seed=1))
    bundle = make_ophys_bundle(seed=0)
    bundle.traces.dff[5, 2] += 1e-9  # one value in one trace
    assert source_digest(bundle) != first
    renamed = dataclasses.replace(make_ophys_bundle(seed=0), subject=make_subject("409297"))
    assert source_digest(renamed) != first
