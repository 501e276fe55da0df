"""Spike sorting: our SpikeSorting (and UnitMetrics) against the bare sorter call, per recorded minute.

    python -m benchmarks.bench_ephys [--channels 384] [--seconds 60] [--preset cpu_default [PRESET ...]]

One generated Neuropixels recording (a one-probe survey with the `benchmark` preset's recording unless
overridden) is written into a temporary folder. Then, each in a fresh child process whose environment sets
the glibc malloc variables (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=17179869184,
MALLOC_TOP_PAD_=1073741824):

- ours: the manifest is ingested into an embedded PostgreSQL under a temporary BRAINOBS_HOME, EphysRecording
  is populated (not timed) and paired with the preset's SortingParamSet row, then SpikeSorting
  (preprocessing held in memory, sorter, duplicate removal, mean waveforms, SortingAnalyzer, rows) and
  UnitMetrics (the 23 Allen metrics) are populated and timed one after the other;
- bare: the same recording, through the same lazy preprocessing (``preprocess``, "allen" preset), handed to
  ``spikeinterface.sorters.run_sorter`` with the preset's sorter and parameters, one job and one BLAS/OpenMP
  thread, as our SpikeSorting gives it.

Both sortings are scored against the generated truth (``score_sorting``; ours from the stored Unit rows,
after duplicate removal, through ``api.score_units_against_truth``): well-detected units at accuracy >= 0.8,
false positives, high-SNR fraction. Each preset given is measured in turn on the same recording. The
figure of merit is SpikeSorting / bare (target <= 1.1): what wrapping the sorter call in a table costs.
UnitMetrics is work the bare call does not do; it is timed apart and shown added too. Also seconds per
recorded minute and each child's peak RSS (ru_maxrss) against the recording's int16 bytes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks import ingested_survey, load_average, peak_bytes, populate, run_child
from brainobs.populate.ephys.presets import SORTER_PRESETS
from brainobs.populate.ephys.sorting import sorter_problems


def generate_recording(folder: Path, channels: int, seconds: float) -> tuple[Path, float]:
    """A survey of one ecephys session with one probe; returns (manifest, seconds)."""
    from brainobs.ingest.synthetic import generate_survey
    from brainobs.ingest.synthetic.presets import SubjectPlan

    started = time.perf_counter()
    one = (SubjectPlan(sessions=0, ecephys_sessions=1),)
    summary = generate_survey(
        folder, "benchmark", seed=0, subjects=one, ephys_num_channels=channels, ephys_duration_s=seconds
    )
    return summary.manifest, time.perf_counter() - started


def child_pipeline(manifest: Path, home: Path, preset: str) -> dict:
    from brainobs import api
    from brainobs.schemas.ephys import EphysRecording, SortingParamSet, SortingSelection, SpikeSorting, UnitMetrics
    from brainobs.schemas.params import select_new

    with ingested_survey(manifest, home, "benchephys_") as settings:
        populate(settings, ["EphysRecording"])
        select_new(EphysRecording, SortingSelection, SortingParamSet, paramset_for(preset))
        load = load_average()
        seconds = {}
        for table in ("SpikeSorting", "UnitMetrics"):
            started = time.perf_counter()
            populate(settings, [table])
            seconds[table] = time.perf_counter() - started
        if len(UnitMetrics()) != 1:
            raise RuntimeError("UnitMetrics has no row")
        sorting = SpikeSorting.fetch1()
        score = api.score_units_against_truth(sorting["session_id"], manifest.parent, sorting["probe_name"],
                                              sorting["sorting_paramset"])  # fmt: skip
        return {
            "seconds": seconds, "peak_bytes": peak_bytes(), "load": load, "n_units": int(sorting["n_units"]),
            "accuracy": score.summary(),
        }  # fmt: skip


def paramset_for(preset: str) -> str:
    """The SortingParamSet row that holds sorter preset ``preset``'s parameters (found by their hash)."""
    from brainobs.schemas.ephys import SortingParamSet, sorting_params
    from brainobs.schemas.params import params_hash

    SortingParamSet.insert_defaults()
    row = SortingParamSet & {"param_hash": params_hash(sorting_params(preset))}
    if not row:
        raise ValueError(f"no SortingParamSet row holds sorter preset {preset!r}")
    return row.fetch1("sorting_paramset")


def child_bare(manifest: Path, work: Path, preset: str) -> dict:
    import spikeinterface.sorters as ss
    import yaml
    from threadpoolctl import threadpool_limits

    from brainobs.ingest.ephys_files import open_recording
    from brainobs.ingest.synthetic.ephys import load_probe_truth
    from brainobs.populate.ephys.preprocessing import preprocess
    from brainobs.populate.ephys.presets import SORTER_PRESETS
    from brainobs.populate.scoring.ephys import score_sorting

    probe = yaml.safe_load(manifest.read_text())["probe_insertions"][0]
    root = manifest.parent
    recording = open_recording(
        probe["recording_format"], root / probe["recording_path"], root / probe["probe_file"],
        probe["sampling_rate"], probe["num_channels"],
    )  # fmt: skip
    sorter = SORTER_PRESETS[preset]
    params = {**sorter["params"], "job_kwargs": {"n_jobs": 1}}
    load = load_average()
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        sorting = ss.run_sorter(
            sorter["sorter_name"], preprocess(recording, "allen"), folder=str(work), remove_existing_folder=True,
            verbose=False, **params,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    truth_sorting, truth_units = load_probe_truth(root, probe["session_id"], probe["probe_name"])
    accuracy = score_sorting(sorting, truth_sorting, truth_units).summary()
    return {
        "seconds": seconds, "peak_bytes": peak_bytes(), "load": load, "n_units": len(sorting.unit_ids),
        "accuracy": accuracy,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=384)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--preset", nargs="+", default=["cpu_default"], choices=sorted(SORTER_PRESETS), metavar="PRESET",
        help=f"sorter presets to measure, each through the pipeline and bare (of {sorted(SORTER_PRESETS)})",
    )  # fmt: skip
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, manifest, work, preset = args.child
        run = child_pipeline if kind == "pipeline" else child_bare
        print(json.dumps(run(Path(manifest), Path(work), preset)), flush=True)
        return
    unavailable = {preset: problems for preset in args.preset if (problems := sorter_problems(preset))}
    if unavailable:
        parser.error(f"cannot run here: {unavailable}")

    with tempfile.TemporaryDirectory(prefix="bench-ephys-") as tmp:
        manifest, gen_s = generate_recording(Path(tmp) / "data", args.channels, args.seconds)
        data_bytes = 2 * args.channels * int(args.seconds * 30000)
        print(
            f"recording {args.channels} channels x {args.seconds:g} s at 30 kHz ({data_bytes / 1e9:.2f} GB int16) "
            f"generated in {gen_s:.0f} s (load {load_average()})",
            flush=True,
        )
        for preset in args.preset:
            measure(preset, manifest, Path(tmp) / preset, data_bytes, args.seconds / 60)


def measure(preset: str, manifest: Path, work: Path, data_bytes: int, minutes: float) -> None:
    """Our SpikeSorting and UnitMetrics, then the bare sorter, for one sorter preset; prints the comparison."""
    ours = run_child("benchmarks.bench_ephys", "pipeline", manifest, work / "home", preset)
    sorting_s, metrics_s = ours["seconds"]["SpikeSorting"], ours["seconds"]["UnitMetrics"]
    print(
        f"[{preset}] ours: SpikeSorting {sorting_s:.1f} s ({ours['n_units']} units, {sorting_s / minutes:.1f} s per "
        f"recorded minute), UnitMetrics {metrics_s:.1f} s ({metrics_s / minutes:.1f} s per recorded minute); peak RSS "
        f"{ours['peak_bytes'] / 1e9:.2f} GB (load before {ours['load']}, after {load_average()})",
        flush=True,
    )
    print(f"[{preset}] accuracy of our units against the truth: {ours['accuracy']}", flush=True)
    bare = run_child("benchmarks.bench_ephys", "bare", manifest, work / "bare", preset)
    print(
        f"[{preset}] bare run_sorter: {bare['seconds']:.1f} s, {bare['n_units']} units, "
        f"{bare['seconds'] / minutes:.1f} s per recorded minute, peak RSS {bare['peak_bytes'] / 1e9:.2f} GB "
        f"(load before {bare['load']}, after {load_average()})",
        flush=True,
    )
    print(f"[{preset}] accuracy of the bare sorting against the truth: {bare['accuracy']}", flush=True)
    print(
        f"[{preset}] SpikeSorting / bare sorter: {sorting_s / bare['seconds']:.2f}x (target <= 1.1); with "
        f"UnitMetrics: {(sorting_s + metrics_s) / bare['seconds']:.2f}x; peak memory / recording bytes: ours "
        f"{ours['peak_bytes'] / data_bytes:.2f}x, bare {bare['peak_bytes'] / data_bytes:.2f}x",
        flush=True,
    )


if __name__ == "__main__":
    main()
