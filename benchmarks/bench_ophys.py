"""2-photon processing: our pipeline against bare suite2p, dF/F + events per ROI-hour, and peak memory.

    python -m benchmarks.bench_ophys [--frames 2000] [--size 512] [--cells 220] [--rois 50] [--hours 1.0]
        [--paramset enhanced] [--skip suite2p]

One experiment of the `benchmark` preset (a one-session, one-plane survey with its movie size and cell count
unless overridden) is generated into a temporary folder. Then, each in a fresh child process whose
environment sets the glibc malloc variables (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=17179869184,
MALLOC_TOP_PAD_=1073741824):

- ours: the manifest is ingested into an embedded PostgreSQL under a temporary BRAINOBS_HOME, then
  MotionCorrection .. EventDetection are populated with the --paramset preset (default
  ``allen_short_movies``: Allen's, the dF/F window clamped to the short movie) and timed (ingest and server
  start-up are not counted);
- suite2p: ``suite2p.run_s2p`` on the movie's folder with its default settings (``torch_device`` "cpu",
  ``fs`` the movie's frame rate): registration, detection, extraction, classification, deconvolution.

The figure of merit is ours / suite2p (target <= 1.0). Peak memory is each child's ru_maxrss over the movie's
bytes (target <= 3; the registered movie is read through a memory map, so its resident pages count).
dF/F plus events is timed in this process on --rois synthetic neuropil-corrected traces of --hours hours at
31 Hz (GCaMP6f transients on a drifting baseline, shot noise), reported in seconds per ROI-hour, after a first
call on one short trace that compiles the numba kernels (timed and printed apart).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import SHORT_MOVIE_PRESET, ingested_survey, load_average, peak_bytes, populate, run_child

OPHYS_TABLES = ["MotionCorrection", "Segmentation", "Fluorescence", "Demixing", "NeuropilCorrection"]
OPHYS_TABLES += ["DeltaFOverF", "EventDetection"]


def generate_movie(folder: Path, frames: int, size: int, cells: int) -> tuple[Path, float]:
    """A one-experiment survey with the `benchmark` preset's movie; returns (manifest, seconds)."""
    from brainobs.ingest.synthetic import generate_survey
    from brainobs.ingest.synthetic.presets import SubjectPlan

    started = time.perf_counter()
    one = (SubjectPlan(indicator="GCaMP6f", sessions=1),)
    summary = generate_survey(
        folder, "benchmark", seed=0, subjects=one, height=size, width=size, n_frames=frames, n_cells=cells
    )
    return summary.manifest, time.perf_counter() - started


def child_pipeline(manifest: Path, home: Path, paramset: str) -> dict:
    """Ingest, then time the ophys tables' populate with ``paramset``; the embedded server is stopped at the end."""
    from brainobs.schemas.ophys import EventDetection, Segmentation

    with ingested_survey(manifest, home, "benchophys_") as settings:
        load = load_average()
        per_table = {}
        for table in OPHYS_TABLES:
            started = time.perf_counter()
            populate(dataclasses.replace(settings, ophys_paramset=paramset), [table])
            per_table[table] = round(time.perf_counter() - started, 1)
        seconds = sum(per_table.values())
        if len(EventDetection()) != 1:
            raise RuntimeError("EventDetection has no row")
        n_rois = int(Segmentation.fetch1("n_rois"))
        return {"seconds": seconds, "per_table": per_table, "peak_bytes": peak_bytes(), "load": load, "n_rois": n_rois}


def child_suite2p(movie_folder: Path, out: Path) -> dict:
    """suite2p.run_s2p with its defaults on the folder's TIFF (torch on the CPU, fs from the manifest)."""
    import suite2p
    import yaml

    frame_rate = yaml.safe_load((movie_folder.parents[1] / "manifest.yaml").read_text())["experiments"][0]
    settings = {"torch_device": "cpu", "fs": float(frame_rate["frame_rate"])}
    db = {"data_path": [str(movie_folder)], "save_path0": str(out), "fast_disk": str(out)}
    load = load_average()
    started = time.perf_counter()
    suite2p.run_s2p(db=db, settings=settings)
    seconds = time.perf_counter() - started
    n_rois = int(np.load(out / "suite2p" / "plane0" / "iscell.npy").shape[0])
    return {"seconds": seconds, "peak_bytes": peak_bytes(), "load": load, "n_rois": n_rois}


def realistic_traces(n_rois: int, n_frames: int, fs: float, seed: int = 0) -> np.ndarray:
    """Neuropil-corrected GCaMP6f-like traces: Poisson spikes, exponential transients, drift and noise."""
    rng = np.random.default_rng(seed)
    kernel = np.exp(-np.arange(int(3 * fs)) / (0.347 * fs))
    traces = np.empty((n_rois, n_frames))
    drift = np.linspace(0.0, 1.0, n_frames)
    for i in range(n_rois):
        spikes = rng.poisson(rng.lognormal(0.0, 0.6) / fs, n_frames)
        calcium = np.convolve(spikes, kernel)[:n_frames] * 0.25
        f0 = rng.uniform(200, 600) * (1.0 - 0.05 * drift)
        traces[i] = f0 * (1.0 + calcium) + rng.normal(0, 0.08 * f0.mean(), n_frames)
    return traces


def dff_events_seconds(n_rois: int, hours: float, fs: float = 31.0) -> dict:
    """Seconds of compute_dff and detect_events on (n_rois, hours * 3600 * fs) traces, and per ROI-hour."""
    from brainobs.populate.ophys.dff import compute_dff
    from brainobs.populate.ophys.events import detect_events

    traces = realistic_traces(n_rois, int(hours * 3600 * fs), fs)
    started = time.perf_counter()  # first calls compile the numba kernels: timed apart, on one 11-minute trace
    detect_events(compute_dff(traces[:1, : int(660 * fs)], fs).dff, fs, 0.347)
    warm_up_s = time.perf_counter() - started
    load = load_average()
    started = time.perf_counter()
    result = compute_dff(traces, fs)
    dff_s = time.perf_counter() - started
    started = time.perf_counter()
    events = detect_events(result.dff, fs, 0.347)
    events_s = time.perf_counter() - started
    roi_hours = n_rois * hours
    n_events = int(np.count_nonzero(events.events))
    return {
        "dff_s": dff_s, "events_s": events_s, "warm_up_s": warm_up_s, "roi_hours": roi_hours, "n_events": n_events,
        "load": load,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512, help="movie height and width, px")
    parser.add_argument("--cells", type=int, default=220)
    parser.add_argument("--rois", type=int, default=50, help="traces for the dF/F + events timing")
    parser.add_argument("--hours", type=float, default=1.0, help="length of each trace, hours at 31 Hz")
    parser.add_argument("--paramset", default=SHORT_MOVIE_PRESET, help="ophys preset of our pipeline")
    parser.add_argument("--skip", choices=["movie", "suite2p", "traces"], action="append", default=[])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "pipeline":
            print(json.dumps(child_pipeline(Path(rest[0]), Path(rest[1]), rest[2])), flush=True)
        else:
            print(json.dumps(child_suite2p(*map(Path, rest))), flush=True)
        return

    if "movie" not in args.skip:
        with tempfile.TemporaryDirectory(prefix="bench-ophys-") as tmp:
            manifest, gen_s = generate_movie(Path(tmp) / "data", args.frames, args.size, args.cells)
            movie = next((Path(tmp) / "data").rglob("ophys_experiment_*.tif"))
            movie_bytes = 2 * args.frames * args.size**2
            print(
                f"movie {args.size}x{args.size}x{args.frames} uint16 ({movie_bytes / 1e9:.2f} GB, {args.cells} cells) "
                f"generated in {gen_s:.0f} s (load {load_average()})",
                flush=True,
            )
            ours = run_child("benchmarks.bench_ophys", "pipeline", manifest, Path(tmp) / "home", args.paramset)
            print(
                f"ours ({args.paramset}, MotionCorrection..EventDetection into tables): {ours['seconds']:.1f} s, "
                f"{ours['n_rois']} ROIs, peak RSS {ours['peak_bytes'] / 1e9:.2f} GB (load before {ours['load']}, "
                f"after {load_average()})",
                flush=True,
            )
            print("  per table: " + ", ".join(f"{name} {s:.1f} s" for name, s in ours["per_table"].items()), flush=True)
            print(f"peak memory / movie bytes: ours {ours['peak_bytes'] / movie_bytes:.2f}x (target <= 3)", flush=True)
            if "suite2p" not in args.skip:
                bare = run_child("benchmarks.bench_ophys", "suite2p", movie.parent, Path(tmp) / "s2p")
                print(
                    f"bare suite2p.run_s2p (defaults, cpu): {bare['seconds']:.1f} s, {bare['n_rois']} ROIs, peak RSS "
                    f"{bare['peak_bytes'] / 1e9:.2f} GB (load before {bare['load']}, after {load_average()})",
                    flush=True,
                )
                print(
                    f"ours / suite2p: {ours['seconds'] / bare['seconds']:.2f}x (target <= 1.0); peak memory / movie "
                    f"bytes: suite2p {bare['peak_bytes'] / movie_bytes:.2f}x",
                    flush=True,
                )
    if "traces" not in args.skip:
        t = dff_events_seconds(args.rois, args.hours)
        print(
            f"dF/F + events on {args.rois} ROIs x {args.hours:g} h at 31 Hz ({t['n_events']} events): dF/F "
            f"{t['dff_s']:.1f} s, events {t['events_s']:.1f} s, {(t['dff_s'] + t['events_s']) / t['roi_hours']:.2f} "
            f"s per ROI-hour (dF/F {t['dff_s'] / t['roi_hours']:.2f}, events {t['events_s'] / t['roi_hours']:.2f}; "
            f"load before {t['load']}, after {load_average()}; first calls on one 11-min trace, numba compilation "
            f"included: {t['warm_up_s']:.1f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
