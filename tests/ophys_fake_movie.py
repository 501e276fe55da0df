"""A minimal fake 2-photon movie for the registration and segmentation tests.

Gaussian cells with sparse calcium transients on a textured background with Poisson noise. Every frame
is displaced by a known integer shift (a slow sinusoidal drift plus uniform jitter):
``frame[y, x] = scene[y - dy, x - dx]``, the content moved by (+dy, +dx), the sign suite2p reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile


@dataclass
class FakeMovie:
    path: Path
    fs: float
    frames: np.ndarray  # (n, height, width) uint16
    footprints: np.ndarray  # (cells, height, width) float, peak 1
    dy: np.ndarray  # per-frame integer displacement of the content, rows
    dx: np.ndarray  # columns


def make_fake_movie(
    path: Path,
    n_frames: int = 300,
    shape: tuple[int, int] = (64, 64),
    n_cells: int = 8,
    fs: float = 10.0,
    drift_px: float = 2.0,
    jitter_px: int = 1,
    seed: int = 0,
    metadata: dict | None = None,
) -> FakeMovie:
    rng = np.random.default_rng(seed)
    height, width = shape
    margin, radius = 8, 2.2
    yy, xx = np.mgrid[:height, :width]
    centres: list[tuple[float, float]] = []
    while len(centres) < n_cells:
        cy, cx = rng.uniform(margin, height - margin), rng.uniform(margin, width - margin)
        if all((cy - y) ** 2 + (cx - x) ** 2 > (5 * radius) ** 2 for y, x in centres):
            centres.append((cy, cx))
    footprints = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)) for cy, cx in centres])
    spikes = rng.random((n_cells, n_frames)) < 0.4 / fs
    decay = np.exp(-1.0 / (0.7 * fs))
    calcium = np.zeros((n_cells, n_frames))
    for t in range(n_frames):
        calcium[:, t] = (calcium[:, t - 1] * decay if t else 0) + spikes[:, t]
    texture = 1 + 0.3 * rng.random((height, width))
    scene = 200 * texture + np.einsum("ct,cyx->tyx", 150 + 600 * calcium, footprints)
    drift = np.sin(2 * np.pi * np.arange(n_frames)[None] / (20 * fs) + rng.uniform(0, 2 * np.pi, (2, 1)))
    jitter = rng.integers(-jitter_px, jitter_px + 1, (2, n_frames))
    dy, dx = np.rint(drift_px * drift + jitter).astype(int)
    frames = np.stack([np.roll(scene[t], (dy[t], dx[t]), axis=(0, 1)) for t in range(n_frames)])
    frames = rng.poisson(frames).astype(np.uint16)
    tifffile.imwrite(path, frames, metadata={"frame_rate_hz": fs, **(metadata or {})})
    return FakeMovie(path=path, fs=fs, frames=frames, footprints=footprints, dy=dy, dx=dx)
