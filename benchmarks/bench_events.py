"""L0 events per trace: Allen's solver (FastLZero's algorithm, the ``allen`` preset) against the exact solver.

    python -m benchmarks.bench_events [--frames 140000] [--traces 2] [--fs 31]

Synthetic dF/F traces of --frames frames at --fs Hz (GCaMP6f decay 0.347 s, events at ~0.3 Hz of 0.2-1.5
dF/F, Gaussian noise sigma 0.05) go through the whole per-trace detection (noise estimate, detrend, Allen's
bracket penalty search, events), once with ``solver="fastlzero"`` and once with ``solver="exact"`` (brainobs's
earlier solver). Printed: seconds per trace of each, the number of solver calls the search made, and the
ratio. FastLZero's C++ is not shipped with brainobs, so this benchmark cannot run it; measured once beside
it (a local build of the commit Allen pins, driven through the same search on the same two traces), the
``fastlzero`` solver took 2.76 s per trace against FastLZero's 2.97 s, with identical lambdas and event
counts. The first call, which compiles the numba kernels, is timed apart on a short trace.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def synthetic_dff(n_traces: int, n_frames: int, fs: float, decay_s: float = 0.347, seed: int = 0) -> np.ndarray:
    """(n_traces, n_frames) dF/F: AR(1) calcium with random events plus Gaussian noise."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    g = np.exp(-1.0 / (decay_s * fs))
    jumps = (rng.random((n_traces, n_frames)) < 0.3 / fs) * rng.uniform(0.2, 1.5, (n_traces, n_frames))
    return lfilter([1.0], [1.0, -g], jumps, axis=1) + rng.normal(0.0, 0.05, (n_traces, n_frames))


def per_trace_seconds(dff: np.ndarray, fs: float, solver: str) -> tuple[float, float, int]:
    """(mean seconds per trace, mean solver calls per trace, events found) of detect_events_trace."""
    from brainobs.populate.ophys import events

    g = events.ar1_gamma(0.347, fs)
    multiplier = events.default_noise_multiplier(fs)
    calls = 0
    solve = events.l0_events

    def counted(*args, **kwargs):
        nonlocal calls
        calls += 1
        return solve(*args, **kwargs)

    events.l0_events = counted
    try:
        started = time.perf_counter()
        found = [events.detect_events_trace(row, fs, g, multiplier, solver)[0] for row in dff]
        seconds = time.perf_counter() - started
    finally:
        events.l0_events = solve
    return seconds / len(dff), calls / len(dff), int(sum(np.count_nonzero(f) for f in found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=140_000)
    parser.add_argument("--traces", type=int, default=2)
    parser.add_argument("--fs", type=float, default=31.0)
    args = parser.parse_args()

    started = time.perf_counter()
    warm = synthetic_dff(1, 2000, args.fs, seed=99)
    for solver in ("fastlzero", "exact"):
        per_trace_seconds(warm, args.fs, solver)
    print(f"numba compile + first calls: {time.perf_counter() - started:.1f} s")

    dff = synthetic_dff(args.traces, args.frames, args.fs)
    fast_s, fast_calls, fast_n = per_trace_seconds(dff, args.fs, "fastlzero")
    exact_s, exact_calls, exact_n = per_trace_seconds(dff, args.fs, "exact")
    print(
        f"L0 events, {args.traces} traces x {args.frames} frames at {args.fs:g} Hz, per trace:\n"
        f"  fastlzero (allen preset): {fast_s:.2f} s ({fast_calls:.0f} solver calls, {fast_n} events)\n"
        f"  exact (earlier solver):   {exact_s:.2f} s ({exact_calls:.0f} solver calls, {exact_n} events)\n"
        f"  fastlzero / exact time: {fast_s / exact_s:.2f}"
    )


if __name__ == "__main__":
    main()
