"""One mesoscope pair written by the generator and read back registered by its true motion: the inputs of
decrosstalk with true masks, for tests and benchmarks that score it against the truth."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from brainobs.ingest.synthetic.ophys import ExperimentSpec, make_tissue, write_pair
from brainobs.ingest.synthetic.presets import INDICATOR_LINES, OphysParams

PAIR_FRAME_RATE = 11.0  # Hz, a plane of a mesoscope pair


@dataclass(frozen=True)
class TruePair:
    """Both planes' movies registered by the true shifts, and the first plane's true cells.

    masks: (n_cell, H, W) bool, footprint >= 0.5 (cells with an empty mask are left out); calcium: (n_cell, T)."""

    signal_movie: np.ndarray
    paired_movie: np.ndarray
    masks: np.ndarray
    calcium: np.ndarray


def registered(movie: np.ndarray, y_shift: np.ndarray, x_shift: np.ndarray) -> np.ndarray:
    """Each frame rolled back by its rounded true shift (suite2p's rigid correction)."""
    return np.stack(
        [
            np.roll(frame, (-round(float(y)), -round(float(x))), axis=(0, 1))
            for frame, y, x in zip(movie, y_shift, x_shift, strict=True)
        ]
    )


def true_pair(root: Path, crosstalk: tuple[float, float], n_frames: int = 2000, seed: int = 0) -> TruePair:
    """Write a pair into ``root`` (each plane sees ``crosstalk`` of its partner's light, 64 x 64 px, GCaMP6f)."""
    line = INDICATOR_LINES["GCaMP6f"]
    p = dataclasses.replace(OphysParams(), n_frames=n_frames, frame_rate=PAIR_FRAME_RATE)
    tissues = (make_tissue(p, line, 700001, 1, seed), make_tissue(p, line, 700002, 1, seed + 1))
    specs = tuple(ExperimentSpec(7000010 + 10 * k, 0, n_frames, PAIR_FRAME_RATE, 175 + 100 * k) for k in (0, 1))
    paths = ((root / "plane0.tif", root / "plane0.npz"), (root / "plane1.tif", root / "plane1.npz"))
    write_pair(paths, tissues, specs, crosstalk, p, line, seed)
    with np.load(paths[0][1]) as truth:
        y_shift, x_shift = truth["shifts_y"].astype(float), truth["shifts_x"].astype(float)
        masks = truth["footprints"] >= 0.5
        calcium = truth["calcium"].astype(float)
    movies = [registered(tifffile.imread(movie).astype(float), y_shift, x_shift) for movie, _ in paths]
    kept = masks.any(axis=(1, 2))
    return TruePair(movies[0], movies[1], masks[kept], calcium[kept])
