"""Rigid registration in bounded memory equals suite2p's (reference image, shifts) and keeps memory bounded."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from suite2p.registration import rigid as s2p_rigid
from suite2p.registration.register import (
    compute_filters_and_norm,
    pick_initial_reference,
    register_frames,
)
from suite2p.registration.register import (
    compute_reference as s2p_compute_reference,
)

from brainobs.populate.ophys import rigid

SETTINGS = {"norm_frames": True, "smooth_sigma": 1.15, "spatial_taper": 3.45, "maxregshift": 0.2}
CPU = torch.device("cpu")


def shifted_frames(n_frames: int, size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Poisson frames of one blob field, each rolled by a random (dy, dx) in [-6, 6]; returns (frames, shifts)."""
    rng = np.random.default_rng(seed)
    field = np.zeros((size + 40, size + 40))
    for _ in range(40):
        y, x = rng.integers(0, size + 40, 2)
        field[max(0, y - 3) : y + 3, max(0, x - 3) : x + 3] += rng.uniform(200, 800)
    shifts = rng.integers(-6, 7, (n_frames, 2))
    frames = np.empty((n_frames, size, size), np.int16)
    for i, (dy, dx) in enumerate(shifts):
        image = np.roll(field, (dy, dx), axis=(0, 1))[20 : 20 + size, 20 : 20 + size]
        frames[i] = rng.poisson(image * rng.uniform(0.5, 1.5) + 300)
    return frames, shifts


def test_search_window_is_suite2ps():
    assert rigid.search_window(0.2, (512, 512)) == 102
    assert rigid.search_window(0.2, (512, 96)) == 19
    assert rigid.search_window(0.9, (40, 60)) == 20  # never beyond half the smaller side


def test_phase_correlation_equals_suite2ps():
    frames, _ = shifted_frames(40)
    filters = compute_filters_and_norm(frames[0], False, 1.15, 3.45, block_size=None, device=CPU)[:3]
    dy, dx, peak = rigid.phase_correlate(frames, filters, rigid.search_window(0.2, frames.shape[1:]))
    theirs = s2p_rigid.phasecorr(torch.from_numpy(frames), filters[2], filters[0], filters[1], 0.2, 0)
    np.testing.assert_array_equal(dy, theirs[0].numpy())
    np.testing.assert_array_equal(dx, theirs[1].numpy())
    np.testing.assert_allclose(peak, theirs[2].numpy(), atol=1e-5)


def test_initial_reference_equals_suite2ps(monkeypatch):
    frames, _ = shifted_frames(60, seed=1)
    monkeypatch.setattr(rigid, "WORK_BYTES", 60 * 4 * 1000)  # Gram matrix over 1000-pixel chunks
    np.testing.assert_array_equal(rigid.initial_reference(frames), pick_initial_reference(torch.from_numpy(frames)))


def test_reference_equals_suite2ps_on_one_batch():
    frames, _ = shifted_frames(120, seed=2)
    settings = {**SETTINGS, "batch_size": 500, "smooth_sigma_time": 0}
    theirs = s2p_compute_reference(frames.copy(), settings=settings, device=CPU)
    ours = rigid.compute_reference(frames.copy(), SETTINGS)
    np.testing.assert_array_equal(ours, theirs)


def test_rigid_shifts_equal_register_frames_and_recover_truth():
    frames, truth = shifted_frames(150, seed=3)
    reference = rigid.compute_reference(frames.copy(), SETTINGS)
    dy, dx, peak = rigid.rigid_shifts(frames, reference, SETTINGS)
    offsets = register_frames(
        frames, reference, batch_size=64, norm_frames=True, smooth_sigma=1.15, spatial_taper=3.45, nonrigid=False,
        maxregshift=0.2, smooth_sigma_time=0, device=CPU, apply_shifts=False,
    )[3]  # fmt: skip
    np.testing.assert_array_equal(dy, offsets[0])
    np.testing.assert_array_equal(dx, offsets[1])
    np.testing.assert_allclose(peak, offsets[2], atol=1e-5)
    relative = truth - truth[0]  # the reference sits at an arbitrary offset
    np.testing.assert_array_equal(np.c_[dy - dy[0], dx - dx[0]], relative)


@pytest.mark.parametrize("n_frames", [200, 400])
def test_reference_memory_is_bounded_by_the_work_buffers(monkeypatch, n_frames):
    """suite2p holds float64 copies of the whole stack (8x its bytes and more); we hold fixed-size buffers."""
    frames, _ = shifted_frames(n_frames, size=128, seed=4)
    work = 1 << 20
    monkeypatch.setattr(rigid, "WORK_BYTES", work)
    tracemalloc.start()
    try:
        rigid.compute_reference(frames, SETTINGS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * work + 0.1 * frames.nbytes, f"peak {peak / 1e6:.1f} MB for a {frames.nbytes / 1e6:.1f} MB stack"


def test_peak_offset_finds_the_vertex_of_a_sampled_gaussian():
    true = np.array([-0.45, -0.2, 0.0, 0.13, 0.4])
    samples = [np.exp(-((k - true) ** 2) / (2 * 1.6**2)) for k in (-1, 0, 1)]
    np.testing.assert_allclose(rigid.peak_offset(*samples), true, atol=1e-9)
    # a sample that is not positive falls back to the parabola; a flat or dipping triple gives 0
    assert rigid.peak_offset(np.array([-0.1]), np.array([1.0]), np.array([0.5]))[0] > 0
    assert rigid.peak_offset(np.array([1.0]), np.array([1.0]), np.array([1.0]))[0] == 0.0


PHOTONS = 4.0  # background photons per pixel


def dim_subpixel_frames(n_frames: int, size: int = 96, seed: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dim Poisson frames (a few photons per pixel) of one soft-blob field moved by sub-pixel (dy, dx) in
    [-2, 2] (Fourier shift); returns (frames, the noiseless field as reference, shifts)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    field = np.full((size, size), PHOTONS)
    for y, x in rng.uniform(8, size - 8, (30, 2)):
        field += 3 * PHOTONS * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8.0)
    shifts = rng.uniform(-2, 2, (n_frames, 2))
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :]
    spectrum = np.fft.fft2(field)
    frames = np.empty((n_frames, size, size), np.int16)
    for i, (dy, dx) in enumerate(shifts):
        moved = np.fft.ifft2(spectrum * np.exp(-2j * np.pi * (fy * dy + fx * dx))).real
        frames[i] = rng.poisson(np.clip(moved, 0, None))
    return frames, np.round(field).astype(np.int16), shifts


def test_partial_whitening_locates_dim_frames_better_than_phase_correlation():
    frames, reference, truth = dim_subpixel_frames(200)
    settings = {**SETTINGS, "norm_frames": False}  # the noiseless reference would clip the noisy frames

    def error(whitening: float) -> float:
        dy, dx, _ = rigid.rigid_shifts(frames, reference, settings, subpixel=True, whitening=whitening)
        return float(np.sqrt(np.mean((dy - truth[:, 0]) ** 2 + (dx - truth[:, 1]) ** 2)))

    phase, partial = error(1.0), error(0.25)
    assert partial < 0.85 * phase, (partial, phase)
    # whitening 1 is suite2p's phase correlation, unchanged
    dy, dx, _ = rigid.rigid_shifts(frames, reference, settings, whitening=1.0)
    np.testing.assert_array_equal((dy, dx), rigid.rigid_shifts(frames, reference, settings)[:2])
