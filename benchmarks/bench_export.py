"""Export time per NWB file against writing the same arrays through raw h5py.

    python -m benchmarks.bench_export [--quick] [--rois 100] [--frames 20000] [--units 600] [--seconds 2400]
                                      [--repeats 3]

For each file kind (ophys experiment, ecephys session) the full export -- bundle digest, build, pynwb
write, read-back verification, sha256 and rename -- is timed against a raw h5py write of every dataset the
NWB file holds (its cached schema aside), with the same dtypes, chunks, compression and shuffle. The
ratio export / raw is the figure of merit (target <= 1.5); write / raw leaves out the read-back
verification (shapes and dtypes of every array, values in full up to 8 MiB and on a sample of blocks above,
file sha256). Best of --repeats. --quick: half the sizes, best of 2.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from brainobs.export.bundles import (
    UNIT_METRICS,
    BehaviorBundle,
    ChannelTable,
    EcephysSessionBundle,
    ImagingPlaneInfo,
    LickData,
    MotionCorrectionData,
    OphysExperimentBundle,
    ProbeInfo,
    ProjectionImages,
    RewardData,
    RoiTable,
    RoiTraces,
    RunningSpeedData,
    SessionInfo,
    SubjectInfo,
    UnitTable,
)
from brainobs.export.writer import WriteResult, export_ecephys_session, export_ophys_experiment

START = datetime(2024, 3, 5, 9, 30, tzinfo=UTC)
SUBJECT = SubjectInfo(
    "409296", "F", "Slc17a7-IRES2-Cre/wt;Ai93(TITL-GCaMP6f)/wt", date_of_birth=START - timedelta(days=120)
)
SESSION = SessionInfo("951410079", START, "benchmark session", institution="Allen Institute for Brain Science")


def _times(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    return 1.0 + np.arange(n) / rate + rng.normal(0, 1e-4, n)


def behavior(seconds: float, rng: np.random.Generator) -> BehaviorBundle:
    running = _times(int(seconds * 60), 60.0, rng)
    flashes = np.arange(1.0, seconds - 1, 0.75)
    trials = np.arange(1.0, seconds - 8, 8.0)
    lick_times = np.sort(rng.uniform(1, seconds - 1, int(seconds)))
    return BehaviorBundle(
        running_speed=RunningSpeedData(running, np.abs(rng.normal(10, 5, running.size))),
        licks=LickData(lick_times, np.round(lick_times * 60).astype(np.int64)),
        rewards=RewardData(trials[::3] + 0.5, np.full(trials[::3].size, 0.005), np.zeros(trials[::3].size, bool)),
        stimulus_presentations=pd.DataFrame(
            {
                "start_time": flashes,
                "stop_time": flashes + 0.25,
                "stimulus_block": np.zeros(flashes.size, int),
                "image_name": rng.choice(["im065", "im077", "im062", "omitted"], flashes.size),
                "is_change": rng.random(flashes.size) < 0.1,
            }
        ),
        trials=pd.DataFrame(
            {
                "start_time": trials,
                "stop_time": trials + 7.5,
                "outcome": rng.choice(["hit", "miss", "aborted", "false_alarm"], trials.size),
                "change_time": trials + 3.0,
            }
        ),
    )


def ophys_bundle(n_roi: int, n_frames: int, fov: int = 512, seed: int = 0) -> OphysExperimentBundle:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:fov, :fov]
    centres = rng.uniform(20, fov - 20, (n_roi, 2))
    masks = np.stack([(yy - cy) ** 2 + (xx - cx) ** 2 <= 36 for cy, cx in centres])
    corner = np.floor(centres - 6).astype(int)
    dff = (rng.normal(0, 0.05, (n_frames, n_roi)) + (rng.random((n_frames, n_roi)) < 0.01)).astype(np.float64)
    events = np.where(rng.random((n_frames, n_roi)) < 0.01, rng.random((n_frames, n_roi)), 0.0)
    image = rng.normal(100, 10, (fov, fov)).astype(np.float32)
    return OphysExperimentBundle(
        subject=SUBJECT,
        session=SESSION,
        plane=ImagingPlaneInfo(1, "GCaMP6f", 31.0, "VISp", 175.0, 0.78),
        rois=RoiTable(
            cell_roi_id=np.arange(n_roi) + 1080000000,
            cell_specimen_id=np.arange(n_roi) + 1086000000,
            x=corner[:, 1],
            y=corner[:, 0],
            width=np.full(n_roi, 13),
            height=np.full(n_roi, 13),
            valid_roi=np.ones(n_roi, bool),
            image_mask=masks,
            r=rng.uniform(0.5, 1, n_roi),
            rmse=rng.uniform(5, 10, n_roi),
        ),
        traces=RoiTraces(
            timestamps=_times(n_frames, 31.0, rng),
            dff=dff,
            corrected=400 * (1 + dff),
            demixed=420 * (1 + dff),
            neuropil=rng.normal(200, 5, (n_frames, n_roi)),
            events=events,
            lambdas=rng.uniform(0, 1, n_roi),
            noise_stds=rng.uniform(0, 1, n_roi),
        ),
        motion=MotionCorrectionData(
            rng.integers(-5, 5, n_frames).astype(np.int32), rng.integers(-5, 5, n_frames).astype(np.int32), 5, 5, 5, 5
        ),
        images=ProjectionImages(image, image, masks.any(axis=0)),
        behavior=behavior(n_frames / 31.0, rng),
    )


def ecephys_bundle(n_units: int, seconds: float, seed: int = 0) -> EcephysSessionBundle:
    rng = np.random.default_rng(seed)
    probes = (ProbeInfo("probeA", "Neuropixels 1.0 probe A"), ProbeInfo("probeB", "Neuropixels 1.0 probe B"))
    n_channels = 384
    numbers = np.tile(np.arange(n_channels), 2)
    channel_ids = np.arange(2 * n_channels) + 850000000
    rates = rng.lognormal(1.0, 1.0, n_units)
    spike_times = tuple(np.sort(rng.uniform(0.1, seconds, rng.poisson(rate * seconds) + 1)) for rate in rates)
    peak = rng.choice(channel_ids[2:-2], n_units)
    return EcephysSessionBundle(
        subject=SUBJECT,
        session=SESSION,
        probes=probes,
        channels=ChannelTable(
            channel_ids,
            np.repeat(["probeA", "probeB"], n_channels),
            numbers,
            20.0 * (numbers // 2),
            np.where(numbers % 2 == 0, 43.0, 11.0),
            np.repeat(["VISp", "LGd"], n_channels),
        ),
        units=UnitTable(
            unit_id=np.arange(n_units) + 950000000,
            peak_channel_id=peak,
            quality=rng.choice(["good", "noise"], n_units),
            spike_times=spike_times,
            spike_amplitudes=tuple(rng.normal(1e-4, 1e-5, t.size) for t in spike_times),
            waveform_mean=rng.normal(0, 1e-5, (n_units, 82, 5)),
            waveform_channel_ids=peak[:, None] + np.arange(-2, 3),
            waveform_rate_hz=30000.0,
            metrics=pd.DataFrame({name: rng.random(n_units) for name in UNIT_METRICS}),
        ),
        behavior=behavior(seconds, rng),
    )


def raw_h5py_seconds(nwb_path: Path, raw_path: Path) -> float:
    """Time writing every dataset of the NWB file (outside its cached schema) through raw h5py."""
    arrays = []
    with h5py.File(nwb_path, "r") as nwb:

        def collect(name: str, item) -> None:
            if isinstance(item, h5py.Dataset) and not name.startswith("specifications"):
                arrays.append((name, item[()], item.chunks, item.compression, item.compression_opts, item.shuffle))

        nwb.visititems(collect)
    clock = time.perf_counter()
    with h5py.File(raw_path, "w") as raw:
        for name, data, chunks, compression, level, shuffle in arrays:
            raw.create_dataset(
                name, data=data, chunks=chunks, compression=compression, compression_opts=level, shuffle=shuffle
            )
    return time.perf_counter() - clock


def measure(kind: str, export, bundle, folder: Path, repeats: int) -> dict[str, float | str]:
    """Best of `repeats` runs of the export and of the raw write (the machine may be shared)."""
    path = folder / f"{kind}.nwb"
    runs: list[dict[str, float]] = []
    for _ in range(repeats):
        clock = time.perf_counter()
        result: WriteResult = export(bundle, path)
        stages = dict(result.seconds)
        stages["export"] = time.perf_counter() - clock
        stages["raw"] = raw_h5py_seconds(path, folder / f"{kind}_raw.h5")
        runs.append(stages)
    best = {stage: min(run[stage] for run in runs) for stage in runs[0]}
    write = min(run["build"] + run["write"] for run in runs)
    return {
        "file": kind,
        "MB": round(result.size / 1e6, 1),
        "export_s": round(best["export"], 2),
        "build+write_s": round(write, 2),
        "read_back_s": round(best["verify"], 2),
        "sha256+fsync_s": round(best["sha256"] + best["fsync"], 2),
        "raw_h5py_s": round(best["raw"], 2),
        "export/raw": round(best["export"] / best["raw"], 2),
        "write/raw": round(write / best["raw"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=100)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--units", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=2400.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50 ROIs x 10000 frames, 300 units x 1200 s, best of 2")
    args = parser.parse_args()
    if args.quick:
        vars(args).update(rois=50, frames=10000, units=300, seconds=1200.0, repeats=2)
    with tempfile.TemporaryDirectory(prefix="bench_export_") as folder:
        rows = [
            measure("ophys", export_ophys_experiment, ophys_bundle(args.rois, args.frames), Path(folder), args.repeats),
            measure(
                "ecephys", export_ecephys_session, ecephys_bundle(args.units, args.seconds), Path(folder), args.repeats
            ),
        ]
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
