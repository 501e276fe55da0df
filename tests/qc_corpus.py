"""The QC test corpus: one clean recording and one per failure mode, made by the synthetic generators.

Each case is the plain inputs the QC core reads (frame means, max projection, motion, cell count, frame
counts, vsync times, container matching), taken from a movie and a sync record written by the survey's own
generators with one parameter changed. The cases are built at the level of the QC core functions, not run
through the pipeline: motion is the generator's true shift (what registration estimates), and the ROI
count is the number of true cells in the field of view (what segmentation finds), their neuropil r the true
coefficients.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from brainobs.ingest.synthetic.behavior import vsync_times
from brainobs.ingest.synthetic.ophys import ExperimentSpec, make_tissue, write_experiment
from brainobs.ingest.synthetic.presets import INDICATOR_LINES, OphysParams

LINE = INDICATOR_LINES["GCaMP6f"]
N_DISPLAY_FRAMES = 6000
N_FRAMES = 6000  # the tiny survey's movies: long enough for slow fluctuations to average out of drift
SATURATION_LEVEL = 65535.0  # the generator's uint16 movies clip there

# failure mode -> (generator parameters changed, the checks it must trip)
OPHYS_CASES: dict[str, tuple[dict, set[str]]] = {
    "clean": ({}, set()),
    "intensity_drift": ({"intensity_ramp": 0.6}, {"intensity_drift"}),
    "bleaching": ({"bleach_fraction": 0.6}, {"bleaching_ratio"}),
    "saturation": ({"adu_per_photon": 5000.0}, {"saturation_fraction"}),
    "large_motion": ({"motion_px": 20.0, "max_motion_px": 30.0}, {"max_shift_px", "large_motion_fraction"}),
    "low_roi_count": ({"n_cells": 3, "overlap_pairs": 0}, {"valid_roi_count"}),
}


@dataclass(frozen=True)
class Recording:
    """What the QC core reads from one 2-photon experiment and its session's sync record."""

    frame_means: np.ndarray
    max_image: np.ndarray
    average_image: np.ndarray
    y_shift: np.ndarray
    x_shift: np.ndarray
    n_cells: int
    footprints: np.ndarray
    neuropil_r: np.ndarray
    n_movie_frames: int
    n_sync_frames: int
    vsync_times: np.ndarray


def experiment(root: Path, container_id: int = 700001, session_index: int = 0, seed: int = 0, **changes) -> Recording:
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
    return Recording(
        frame_means=movie.mean(axis=(1, 2)),
        max_image=movie.max(axis=0),
        average_image=movie.mean(axis=0),
        y_shift=truth["shifts_y"].astype(float),
        x_shift=truth["shifts_x"].astype(float),
        n_cells=n_cells,
        footprints=truth["footprints"],
        neuropil_r=truth["neuropil_coef"].astype(float),
        n_movie_frames=movie.shape[0],
        n_sync_frames=movie.shape[0],
        vsync_times=vsync_times(np.random.default_rng(seed), N_DISPLAY_FRAMES),
    )


def with_sync(recording: Recording, *, missing_pulses: int = 0, dropped_fraction: float = 2e-4) -> Recording:
    """The same recording with a sync record that misses frame pulses or drops display frames."""
    vsync = vsync_times(np.random.default_rng(1), N_DISPLAY_FRAMES, dropped_fraction=dropped_fraction)
    return dataclasses.replace(recording, n_sync_frames=recording.n_movie_frames - missing_pulses, vsync_times=vsync)
