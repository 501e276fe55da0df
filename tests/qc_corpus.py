"""The QC test corpus: one clean recording and one per failure mode, made by the synthetic generators.

Each case holds the plain inputs the QC core reads, taken from files the survey's own generators write
with one parameter changed: a 2-photon movie (frame means, projections, motion, the registered movie's
epoch images, cells), its session's behavior folder (display sync, licks) and a Neuropixels recording
(channel noise, units). The cases are built at the level of the QC core functions, not run through the
pipeline: motion is the generator's true shift (what registration estimates; the movie is registered by
rolling each frame back by it, as suite2p does), the ROI count is the number of true cells in the field of
view (what segmentation finds), their neuropil r the true coefficients, and a probe's unit count its true
units (what the sorter finds).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from brainobs.ingest.behavior_files import read_behavior
from brainobs.ingest.ephys_files import channel_geometry, open_recording
from brainobs.ingest.synthetic.behavior import vsync_times, write_behavior
from brainobs.ingest.synthetic.ephys import default_num_units, write_recording
from brainobs.ingest.synthetic.ophys import ExperimentSpec, make_tissue, write_experiment
from brainobs.ingest.synthetic.pairs import registered, true_pair
from brainobs.ingest.synthetic.presets import INDICATOR_LINES, OphysParams
from brainobs.populate import qc
from brainobs.populate.ephys.channels import channel_noise
from brainobs.populate.ophys.decrosstalk import DECROSSTALK_PARAMS, DecrosstalkResult, decrosstalk_plane
from brainobs.populate.ophys.rois import records_from_masks

LINE = INDICATOR_LINES["GCaMP6f"]
N_DISPLAY_FRAMES = 6000
N_FRAMES = 6000  # the tiny survey's movies: long enough for slow fluctuations to average out of drift
SATURATION_LEVEL = 65535.0  # the generator's uint16 movies clip there
BEHAVIOR_S = 60.0
PROBE_CHANNELS = 16
PROBE_NAME = "probeA"
PAIR_FRAMES = 2000  # a mesoscope pair at 11 Hz: 182 s

# failure mode of a 2-photon movie -> the generator parameters changed
OPHYS_CASES: dict[str, dict] = {
    "clean": {},
    "intensity_drift": {"intensity_ramp": 0.6},
    "bleaching": {"bleach_fraction": 0.6},
    "saturation": {"adu_per_photon": 5000.0},
    "large_motion": {"motion_px": 20.0, "max_motion_px": 30.0},
    "lateral_motion_within_limits": {"motion_px": 4.0, "max_motion_px": 8.0},  # a control: must trip nothing
    "z_drift": {"z_drift_um": 15.0},
    "low_roi_count": {"n_cells": 3, "overlap_pairs": 0},
    "short_movie": {"n_frames": 2000},  # 17 detection bins of Allen's 3.7 s at 31 Hz
}


@dataclass(frozen=True)
class Recording:
    """What the QC core reads from one 2-photon experiment, its session and the session's probe."""

    frame_means: np.ndarray
    max_image: np.ndarray
    average_image: np.ndarray
    epochs: np.ndarray | None  # qc.epoch_images of the registered movie
    y_shift: np.ndarray
    x_shift: np.ndarray
    n_cells: int
    footprints: np.ndarray
    neuropil_r: np.ndarray
    n_movie_frames: int
    n_sync_frames: int
    vsync_times: np.ndarray
    n_licks: int
    passive: bool
    channel_noise: np.ndarray  # ordered along the probe
    n_units: int
    decrosstalk: DecrosstalkResult | None = None  # a mesoscope plane's, against its paired plane


@dataclass(frozen=True)
class Session:
    """The session-level inputs: display sync and licks (behavior folder), channel noise and units (probe)."""

    vsync_times: np.ndarray
    n_licks: int
    passive: bool
    channel_noise: np.ndarray
    n_units: int


def behavior_session(root: Path, seed: int = 0, **changes) -> tuple[np.ndarray, int, bool]:
    """Write an active behavior folder with the generator (``write_behavior`` ``changes``); read back its display
    sync and licks through the reader that ingest uses."""
    folder = root / "behavior"
    write_behavior(folder, root / "behavior-truth", duration_s=BEHAVIOR_S, passive=False, image_set="A", seed=seed,
                   **changes)  # fmt: skip
    files = read_behavior(folder)
    return np.asarray(files.vsync_times, float), int(len(files.lick_frames)), bool(files.session.passive)


def probe(
    root: Path, seed: int = 0, dead_channels: tuple[int, ...] = (), channels: int = PROBE_CHANNELS
) -> tuple[np.ndarray, int]:
    """Write a probe recording with the generator; its channel noise ordered along the probe (as SessionQC orders
    EphysRecording.Channel) and its number of true units."""
    fields = write_recording(root / "probe", root / "probe-truth", num_channels=channels, duration_s=2.0,
                             seed=seed, dead_channels=dead_channels)  # fmt: skip
    recording = open_recording(
        fields["recording_format"],
        root / "probe" / fields["recording_path"],
        root / "probe" / fields["probe_file"],
        fields["sampling_rate"],
        fields["num_channels"],
    )
    geometry = channel_geometry(recording).sort_values(["y_um", "x_um"], kind="stable")
    noise = channel_noise(recording)[geometry["channel_index"].to_numpy()]
    return noise, default_num_units(channels)


def session(
    root: Path,
    *,
    seed: int = 0,
    lick_sensor: bool = True,
    dead_channels: tuple[int, ...] = (),
    probe_channels: int = PROBE_CHANNELS,
) -> Session:
    """A session's behavior folder and probe recording, written by the generators and read back."""
    vsync, n_licks, passive = behavior_session(root, seed=seed, lick_sensor=lick_sensor)
    noise, n_units = probe(root, seed=seed, dead_channels=dead_channels, channels=probe_channels)
    return Session(vsync, n_licks, passive, noise, n_units)


def experiment(
    root: Path, session_inputs: Session, container_id: int = 700001, session_index: int = 0, seed: int = 0, **changes
) -> Recording:
    """Write one experiment with the generator (OphysParams ``changes``) and read back what QC reads."""
    p = dataclasses.replace(OphysParams(), **{"n_frames": N_FRAMES, **changes})
    p.validate()
    tissue = make_tissue(p, LINE, container_id, 3, seed)
    experiment_id = container_id * 10 + session_index
    spec = ExperimentSpec(experiment_id, session_index, p.n_frames, p.frame_rate, 175)
    movie_path, truth_path = root / f"{experiment_id}.tif", root / f"{experiment_id}.npz"
    n_cells = write_experiment(movie_path, truth_path, tissue, spec, p, LINE, seed)
    movie = tifffile.imread(movie_path)
    truth = np.load(truth_path)
    y_shift, x_shift = truth["shifts_y"].astype(float), truth["shifts_x"].astype(float)
    return Recording(
        frame_means=movie.mean(axis=(1, 2)),
        max_image=movie.max(axis=0),
        average_image=movie.mean(axis=0),
        epochs=qc.epoch_images(registered(movie, y_shift, x_shift)),
        y_shift=y_shift,
        x_shift=x_shift,
        n_cells=n_cells,
        footprints=truth["footprints"],
        neuropil_r=truth["neuropil_coef"].astype(float),
        n_movie_frames=movie.shape[0],
        n_sync_frames=movie.shape[0],
        **dataclasses.asdict(session_inputs),
    )


def with_session(recording: Recording, session_inputs: Session) -> Recording:
    """The same movie in another session (behavior folder and probe)."""
    return dataclasses.replace(recording, **dataclasses.asdict(session_inputs))


def with_sync(recording: Recording, *, missing_pulses: int = 0, dropped_fraction: float = 2e-4) -> Recording:
    """The same recording with a sync record that misses frame pulses or drops display frames (display frames
    drawn as the behavior generator draws them)."""
    vsync = vsync_times(np.random.default_rng(1), N_DISPLAY_FRAMES, dropped_fraction=dropped_fraction)
    return dataclasses.replace(recording, n_sync_frames=recording.n_movie_frames - missing_pulses, vsync_times=vsync)


def paired_plane(root: Path, crosstalk: tuple[float, float], seed: int = 0) -> DecrosstalkResult:
    """A mesoscope pair written by the generator (each plane sees ``crosstalk`` of its partner's light); the
    first plane's true cells decrosstalked against the second, as Decrosstalk does."""
    pair = true_pair(root, crosstalk, PAIR_FRAMES, seed)
    return decrosstalk_plane(pair.signal_movie, pair.paired_movie, records_from_masks(pair.masks), DECROSSTALK_PARAMS)
