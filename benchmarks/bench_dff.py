"""dF/F speed: brainobs against a faithful reference of Allen's algorithm on one long trace.

    python -m benchmarks.bench_dff [--frames 140000] [--fs 31] [--reference-frames N] [--min-ratio 100]

The reference is written here from the description in brainobs/allen_vectors/README.md (section `dff`), the
way Allen's ophys_etl code computes it: scipy's median and percentile filters, and a baseline that is a
per-frame ``np.nanmedian`` of each reflect-padded window (NaN runs interpolated). brainobs computes the same
numbers with an O(T log T) running median; the run checks that both agree (1e-9 relative) and prints the
speed ratio. ``--reference-frames`` times the reference on that many leading output frames of the full trace
and scales that per-frame part (the same cost for every frame) to the whole trace; by default the reference
runs on the whole trace. Exits 1 when brainobs is less than ``--min-ratio`` times faster.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.ndimage import median_filter, percentile_filter

from brainobs.populate.ophys.dff import compute_dff_trace, window_frames


def _robust_std(x: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(x - np.median(x))))


def reference_noise_std(x: np.ndarray, filter_length: int) -> float:
    if np.isnan(x).any():
        return float("nan")
    noise = x - median_filter(x, filter_length)
    kept = noise[noise < 1.5 * np.abs(noise.min())]
    return _robust_std(kept[np.abs(kept) < 2.5 * _robust_std(kept)])


def reference_nanmedian_filter(x: np.ndarray, window: int, n_out: int | None = None) -> np.ndarray:
    """Per-frame ``np.nanmedian`` over reflect-padded windows (the first ``n_out`` frames), NaNs interpolated."""
    half = window // 2
    padded = np.pad(x, half, mode="symmetric")
    n_out = x.size if n_out is None else n_out
    out = np.array([np.nanmedian(padded[i : i + window]) for i in range(n_out)])
    missing = np.isnan(out)
    if missing.any() and not missing.all():
        frames = np.arange(out.size)
        out[missing] = np.interp(frames[missing], frames[~missing], out[~missing])
    return out


def reference_inactive(trace: np.ndarray, long_window: int, short_window: int) -> tuple[np.ndarray, float]:
    """(the trace with its active frames set to NaN, sigma_F), as Allen computes them."""
    sigma_f = reference_noise_std(trace, short_window)
    low = percentile_filter(trace, size=long_window, percentile=10)
    inactive = trace.copy()
    inactive[trace > low + 3 * sigma_f] = np.nan
    return inactive, sigma_f


def synthetic_trace(n_frames: int, fs: float, seed: int = 0) -> np.ndarray:
    """Baseline drift, noise and calcium transients: a neuropil-corrected trace of about an hour at 31 Hz."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / fs
    spikes = (rng.random(n_frames) < 0.01) * rng.uniform(20.0, 80.0, n_frames)
    calcium = np.convolve(spikes, np.exp(-np.arange(int(3 * fs)) / (0.7 * fs)))[:n_frames]
    return 200.0 + 20.0 * np.sin(2 * np.pi * t / 1800.0) + calcium + rng.normal(0.0, 5.0, n_frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=140_000, help="trace length in frames")
    parser.add_argument("--fs", type=float, default=31.0, help="frame rate, Hz")
    parser.add_argument("--reference-frames", type=int, default=None, help="time the reference on this many frames")
    parser.add_argument("--min-ratio", type=float, default=100.0, help="fail below this speed ratio")
    args = parser.parse_args()

    trace = synthetic_trace(args.frames, args.fs)
    long_window, short_window = window_frames(args.fs, 600.0), window_frames(args.fs, 3.333)
    compute_dff_trace(trace[: 2 * long_window], long_window, short_window)  # compiles the running median
    started = time.perf_counter()
    ours, sigma, _ = compute_dff_trace(trace, long_window, short_window)
    ours_s = time.perf_counter() - started

    n_out = args.reference_frames
    scale = 1.0 if n_out is None else args.frames / n_out
    started = time.perf_counter()
    inactive, sigma_f = reference_inactive(trace, long_window, short_window)
    prelude_s = time.perf_counter() - started
    started = time.perf_counter()
    baseline = reference_nanmedian_filter(inactive, long_window, n_out)  # the per-frame cost: scaled
    reference = (trace[: baseline.size] - baseline) / np.maximum(baseline, sigma_f)
    per_frame_s = time.perf_counter() - started
    reference_s = prelude_s + scale * per_frame_s
    np.testing.assert_allclose(ours[: reference.size], reference, rtol=1e-9, atol=1e-12)
    if n_out is None:
        started = time.perf_counter()
        np.testing.assert_allclose(sigma, reference_noise_std(reference, short_window), rtol=1e-9)
        reference_s += time.perf_counter() - started
    timed = "the whole trace" if n_out is None else f"{n_out} frames, scaled x{scale:.1f}"
    print(
        f"dF/F of one {args.frames}-frame trace at {args.fs:g} Hz (windows {long_window}/{short_window} frames): "
        f"brainobs {ours_s:.3f} s, Allen reference {reference_s:.1f} s ({timed}); "
        f"brainobs is {reference_s / ours_s:.0f}x faster; outputs agree to 1e-9"
    )
    if reference_s / ours_s < args.min_ratio:
        raise SystemExit(f"brainobs dF/F is less than {args.min_ratio:g}x faster than the reference")


if __name__ == "__main__":
    main()
