"""Rigid registration in bounded memory: suite2p's reference-image algorithm and per-frame phase correlation.

suite2p ``compute_reference`` on n frames holds a float64 copy of them all (8x their int16 bytes) for the
seed search and three more copies while refining: 11x a 2000-frame movie. Allen builds the reference from up
to 5000 frames, so we run the same algorithm on the int16 stack itself, with work buffers of fixed size:

1. seed: the frame whose mean correlation with its 19 best-correlated other frames is highest (frames
   centred on their own mean; the Gram matrix is accumulated over pixel chunks, float32 products summed in
   float64); the initial reference is the mean of the 20 centred frames best correlated with it;
2. ``REFINEMENT_ITERATIONS`` times: every frame is phase-correlated against the reference and rolled into
   place; the new reference is the mean of the ``max(2, int(n * (1 + i) / 16))`` best-correlated frames,
   re-centred by their rounded mean shift.

One deliberate difference: suite2p 1.1 ranks frames by the correlations of its last batch only (its
``cmax`` is overwritten batch by batch); we rank all frames. On a stack of one batch the two are the same.

`rigid_shifts` is suite2p ``register_frames``'s rigid pass (frames clipped to the reference's 1st-99th
percentile range, then phase-correlated) without its other work: same shifts, and memory bounded by
``WORK_BYTES`` instead of a batch of complex frames.

Phase correlation uses suite2p's taper masks and smoothed reference spectrum (``compute_filters_and_norm``),
in float32 like suite2p, with real FFTs from scipy (one worker per torch thread) and two parallel numba
kernels for the element-wise steps: the spectra of real frames are Hermitian, so the correlation map equals
suite2p's complex-FFT map at a fraction of the cost. It runs on the CPU whatever the torch device.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import scipy.fft
import torch

REFINEMENT_ITERATIONS = 8
SEED_NEIGHBOURS = 20  # the seed frame and its 19 best-correlated frames
WORK_BYTES = 1 << 26  # float32 bytes per work buffer (64 MiB)
EPS = 1e-5  # suite2p's regulariser of the spectrum's magnitude


@numba.njit(parallel=True, cache=True)
def _tapered(frames: np.ndarray, mask_mul: np.ndarray, mask_offset: np.ndarray, out: np.ndarray) -> None:
    """out = frames * mask_mul + mask_offset, in float32."""
    for k in numba.prange(frames.shape[0]):
        for i in range(frames.shape[1]):
            for j in range(frames.shape[2]):
                out[k, i, j] = np.float32(frames[k, i, j]) * mask_mul[i, j] + mask_offset[i, j]


@numba.njit(parallel=True, cache=True)
def _whiten_against(spectrum: np.ndarray, reference: np.ndarray, power: float) -> None:
    """spectrum = spectrum / (|spectrum| ** power + EPS) * reference, in place (phase correlation's cross
    spectrum when power is 1)."""
    eps = np.float32(EPS)
    for k in numba.prange(spectrum.shape[0]):
        for i in range(spectrum.shape[1]):
            for j in range(spectrum.shape[2]):
                re, im = spectrum[k, i, j].real, spectrum[k, i, j].imag
                magnitude = np.sqrt(re * re + im * im)
                if power != 1.0:
                    magnitude = magnitude**power
                scale = np.float32(1.0) / (magnitude + eps)
                ref_re, ref_im = reference[i, j].real, reference[i, j].imag
                spectrum[k, i, j] = complex((re * ref_re - im * ref_im) * scale, (re * ref_im + im * ref_re) * scale)


def peak_offset(below: np.ndarray, peak: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Sub-pixel position of a sampled peak relative to its centre sample, in [-0.5, 0.5]: the vertex of the
    Gaussian through the three samples (exact for a Gaussian peak, which the smoothed phase correlation is
    near its maximum); the parabola through them where a sample is not positive."""
    below, peak, above = (np.asarray(v, np.float64) for v in (below, peak, above))
    positive = (below > 0) & (peak > 0) & (above > 0)
    logs = [np.log(np.where(positive, v, 1.0)) for v in (below, peak, above)]
    values = [np.where(positive, lg, v) for lg, v in zip(logs, (below, peak, above), strict=True)]
    curvature = values[0] - 2 * values[1] + values[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curvature < 0, 0.5 * (values[0] - values[2]) / curvature, 0.0)
    return np.clip(np.nan_to_num(offset), -0.5, 0.5)


def phase_correlate(
    frames: Any,
    filters: tuple,
    max_shift: int,
    clip: tuple[float, float] | None = None,
    subpixel: bool = False,
    whitening: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer (dy, dx) shifts and peak correlation of each frame against a reference; with ``subpixel``,
    float shifts refined by `peak_offset` on the correlation map around the integer peak, per axis.

    ``frames``: int16, sliced along frames (an array, or a movie read a batch at a time). ``filters`` are
    suite2p's (maskMul, maskOffset, cfRefImg) of the reference (``compute_filters_and_norm``), the reference
    spectrum whitened to the same ``whitening`` power as the frames' (1: phase correlation; `rigid_shifts`);
    frames are clipped to ``clip`` (suite2p's norm_frames range) first; shifts are searched within
    +-``max_shift`` px.
    A positive dy means the frame's content sits lower than the reference's; rolling the frame by (-dy, -dx)
    aligns it. Only the rows of the correlation map inside the search window are transformed back.
    """
    n_frames, height, width = frames.shape
    mask_mul, mask_offset, reference_spectrum = (f.resolve_conj().cpu().numpy() for f in filters)
    mask_mul, mask_offset = mask_mul.astype(np.float32), mask_offset.astype(np.float32)
    half_spectrum = np.ascontiguousarray(reference_spectrum[:, : width // 2 + 1], dtype=np.complex64)
    workers = torch.get_num_threads()
    batch = max(1, WORK_BYTES // (4 * height * width))
    shift_type = np.float64 if subpixel else np.int64
    dy, dx = np.empty(n_frames, shift_type), np.empty(n_frames, shift_type)
    peak = np.empty(n_frames, np.float32)
    side = 2 * max_shift + 1
    data = np.empty((batch, height, width), np.float32)
    for start in range(0, n_frames, batch):
        stop = min(start + batch, n_frames)
        tapered = data[: stop - start]
        batch_frames = np.asarray(frames[start:stop])
        if clip is not None:
            batch_frames = np.clip(batch_frames, *clip)
        _tapered(np.ascontiguousarray(batch_frames), mask_mul, mask_offset, tapered)
        spectrum = scipy.fft.rfft2(tapered, workers=workers)
        _whiten_against(spectrum, half_spectrum, float(whitening))
        spectrum = scipy.fft.ifft(spectrum, axis=1, workers=workers, overwrite_x=True)
        spectrum = np.concatenate((spectrum[:, height - max_shift :], spectrum[:, : max_shift + 1]), axis=1)
        correlation = scipy.fft.irfft(spectrum, n=width, axis=2, workers=workers)
        window = np.concatenate((correlation[:, :, width - max_shift :], correlation[:, :, : max_shift + 1]), axis=2)
        flat = window.reshape(stop - start, -1)
        best = np.argmax(flat, axis=1)
        rows = np.arange(stop - start)
        peak[start:stop] = flat[rows, best]
        y, x = best // side, best % side
        dy[start:stop], dx[start:stop] = y - max_shift, x - max_shift
        if subpixel:
            inner_y, inner_x = (y > 0) & (y < side - 1), (x > 0) & (x < side - 1)
            yb, ya, xb, xa = (
                np.maximum(y - 1, 0),
                np.minimum(y + 1, side - 1),
                np.maximum(x - 1, 0),
                np.minimum(x + 1, side - 1),
            )
            centre = window[rows, y, x]
            dy[start:stop] += np.where(inner_y, peak_offset(window[rows, yb, x], centre, window[rows, ya, x]), 0.0)
            dx[start:stop] += np.where(inner_x, peak_offset(window[rows, y, xb], centre, window[rows, y, xa]), 0.0)
    return dy, dx, peak


def search_window(maxregshift: float, frame_shape: tuple[int, int]) -> int:
    """suite2p's half-width of the shift search: ``min(round(maxregshift * min side), min side // 2)``."""
    smallest = min(frame_shape)
    return int(min(np.round(maxregshift * smallest), smallest // 2))


def _pixel_chunk(n_frames: int) -> int:
    return max(1, WORK_BYTES // (4 * n_frames))


def initial_reference(stack: np.ndarray) -> np.ndarray:
    """Mean of the 20 centred frames best correlated with the most typical frame (int16, truncated)."""
    n_frames = stack.shape[0]
    flat = stack.reshape(n_frames, -1)
    means = flat.mean(axis=1, dtype=np.float64)
    gram = np.zeros((n_frames, n_frames))
    chunk = _pixel_chunk(n_frames)
    for start in range(0, flat.shape[1], chunk):
        centred = flat[:, start : start + chunk].astype(np.float32) - means[:, None].astype(np.float32)
        gram += centred @ centred.T
    norms = np.sqrt(np.diag(gram))
    correlation = gram / np.outer(norms, norms)
    best_neighbours = -np.sort(-correlation, axis=1)[:, 1:SEED_NEIGHBOURS]
    seed = int(np.argmax(best_neighbours.mean(axis=1)))
    chosen = np.argsort(-correlation[seed], kind="stable")[:SEED_NEIGHBOURS]
    total = np.zeros(flat.shape[1])
    for index in chosen:
        total += flat[index] - means[index]
    return (total / len(chosen)).reshape(stack.shape[1:]).astype(np.int16)


def _mean_of(stack: np.ndarray, indices: np.ndarray) -> np.ndarray:
    total = np.zeros(stack.shape[1:])
    for start in range(0, len(indices), 64):
        total += stack[np.sort(indices[start : start + 64])].sum(axis=0, dtype=np.float64)
    return total / len(indices)


def compute_reference(stack: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """Reference image (int16) of an int16 ``stack`` of frames, which is registered to it in place.

    ``settings`` holds suite2p's ``smooth_sigma``, ``spatial_taper`` and ``maxregshift``.
    """
    from suite2p.registration.register import compute_filters_and_norm

    n_frames = stack.shape[0]
    max_shift = search_window(settings["maxregshift"], stack.shape[1:])
    reference = initial_reference(stack)
    for iteration in range(REFINEMENT_ITERATIONS):
        filters = compute_filters_and_norm(
            reference, False, settings["smooth_sigma"], settings["spatial_taper"], block_size=None,
            device=torch.device("cpu"),
        )[:3]  # fmt: skip
        dy, dx, peak = phase_correlate(stack, filters, max_shift)
        for index in np.flatnonzero((dy != 0) | (dx != 0)):
            stack[index] = np.roll(stack[index], (-dy[index], -dx[index]), axis=(0, 1))
        n_best = max(2, int(n_frames * (1.0 + iteration) / (2 * REFINEMENT_ITERATIONS)))
        best = np.argsort(-peak, kind="stable")[:n_best]
        recentre = (int(np.round(dy[best].mean())), int(np.round(dx[best].mean())))
        reference = np.roll(_mean_of(stack, best), recentre, axis=(0, 1)).astype(np.int16)
    return reference


def rigid_shifts(
    frames: Any, reference: np.ndarray, settings: dict[str, Any], subpixel: bool = False, whitening: float = 1.0
) -> tuple:
    """suite2p ``register_frames``'s rigid shifts (dy, dx, peak correlation) of every frame of ``frames``
    (int16, sliced along frames) against ``reference``; float shifts refined to sub-pixel with ``subpixel``
    (the integer part, rounded, is suite2p's shift).

    ``settings``: ``norm_frames``, ``smooth_sigma``, ``spatial_taper``, ``maxregshift``. ``whitening`` below 1
    divides the frame's and the reference's spectra by their magnitude to that power instead of the whole
    magnitude (1, suite2p's phase correlation; 0, plain cross-correlation): partial whitening, which keeps more
    of the weight that strong spatial frequencies carry when photon noise dominates the weak ones."""
    from suite2p.registration.register import compute_filters_and_norm

    masks_and_norm = compute_filters_and_norm(
        reference, settings["norm_frames"], settings["smooth_sigma"], settings["spatial_taper"], block_size=None,
        device=torch.device("cpu"),
    )  # fmt: skip
    filters, (rmin, rmax) = masks_and_norm[:3], masks_and_norm[-2:]
    clip = (rmin, rmax) if rmin > -np.inf else None
    if whitening != 1.0:  # suite2p's spectrum is conj(R) / |R| * gaussian: give back |R| ** (1 - whitening)
        clipped = np.clip(reference, *clip) if clip else reference
        magnitude = np.abs(np.fft.fft2(np.asarray(clipped, np.float64))) ** (1.0 - whitening)
        filters = (*filters[:2], filters[2] * torch.from_numpy(magnitude))
    max_shift = search_window(settings["maxregshift"], reference.shape)
    return phase_correlate(frames, filters, max_shift, clip=clip, subpixel=subpixel, whitening=whitening)
