"""Spike sorting: our SpikeSorting (and UnitMetrics) against a plain run_sorter on the raw binary file.

    python -m benchmarks.bench_ephys [--quick] [--channels 64 384] [--cores 1 2] [--seconds 60]
                                     [--preset cpu_default tridesclous2 spykingcircus2] [--repeats 2]

For each channel count one generated Neuropixels recording (a one-probe survey with the `benchmark` preset's
recording unless overridden) is written into a temporary folder. Then, for each preset and core count, each
run in a fresh child process pinned to that many CPUs (sched_setaffinity) whose environment sets the glibc
malloc variables (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=17179869184, MALLOC_TOP_PAD_=1073741824):

- ours: the manifest is ingested into an embedded PostgreSQL under a temporary BRAINOBS_HOME, EphysRecording
  is populated (not timed) and paired with the preset's SortingParamSet row, then SpikeSorting (the sorter
  in the worker's process, on the raw traces or, for a preset that filters once, on brainobs's held traces,
  then duplicate removal, brainobs's preprocessing held in memory, mean
  waveforms, amplitudes, SortingAnalyzer, rows) and UnitMetrics (the 23 Allen metrics) are populated and
  timed one after the other, with BRAINOBS_EPHYS_JOBS set to the core count; the sorter's own run time (its
  spikeinterface_log.json) is printed next to SpikeSorting's, so the rest is what brainobs adds;
- bare: what a user runs instead: ``spikeinterface.read_binary`` on the same int16 file, the probe attached
  (``set_probe(..., in_place=False)``), handed to ``spikeinterface.sorters.run_sorter`` with the preset's
  sorter and parameters, n_jobs and BLAS/OpenMP threads set to the core count. No brainobs preprocessing.

Both sortings are scored against the generated truth (``score_sorting``; ours from the stored Unit rows,
after duplicate removal, through ``api.score_units_against_truth``, and the sorter's own output folder beside
them): well-detected units at accuracy >= 0.8, false positives, mean accuracy. Each (preset, cores) pair
runs --repeats times, ours and bare alternating; the ratios are of the medians, the spread is max - min over
the repeats. Peak memory is `PeakMemory`'s, the same for both: the measured process and its descendants (job
workers), without the PostgreSQL server. Targets: SpikeSorting / bare <= 1.1 (SpikeSorting + UnitMetrics is
printed too), peak memory ours / bare <= 1.2, equal accuracy within the spread. The default presets are the CPU ones
(cpu_default: lupin; tridesclous2 and spykingcircus2, which need hdbscan), each filtering once. --quick:
cpu_default only, 64 channels x 10 s, 1 core, 2 repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import ingested_survey, load_average, populate, run_child
from brainobs.populate.ephys.presets import SORTER_PRESETS
from brainobs.populate.ephys.sorting import sorter_problems


class PeakMemory:
    """The peak memory of this process and its descendants (job workers, a sorter's own processes), the embedded
    PostgreSQL server left out: the largest of (a) their summed proportional set sizes (Pss: shared pages, such
    as a sorter's shared-memory cache, split among the processes that map them), sampled every 0.2 s, and (b)
    the exact ru_maxrss of this process and of its largest finished child. Linux only."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self) -> int:
        """Bytes, up to now."""
        self.sampled = max(self.sampled, _tree_pss(os.getpid()))
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        return max(self.sampled, own, children)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sampled = max(self.sampled, _tree_pss(os.getpid()))


def _tree_pss(pid: int) -> int:
    """Summed Pss of ``pid`` and its descendants (postgres processes excluded), in bytes; 0 for a process gone."""
    proc = Path("/proc") / str(pid)
    try:
        if proc.joinpath("comm").read_text().startswith("postgres"):
            return 0
        pss = next(int(line.split()[1]) * 1024 for line in proc.joinpath("smaps_rollup").read_text().splitlines()
                   if line.startswith("Pss:"))  # fmt: skip
        children = [int(c) for task in proc.joinpath("task").iterdir() for c in (task / "children").read_text().split()]
    except (OSError, StopIteration, ValueError):
        return 0
    return pss + sum(_tree_pss(child) for child in children)


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


def child_pipeline(manifest: Path, home: Path, preset: str, cores: int) -> dict:
    from brainobs import api
    from brainobs.populate.ephys.spike_sorting import SORTER_FOLDER
    from brainobs.schemas import stores
    from brainobs.schemas.ephys import EphysRecording, SortingParamSet, SortingSelection, SpikeSorting, UnitMetrics
    from brainobs.schemas.params import select_new

    if home.exists():  # a populated database would make SpikeSorting a no-op
        raise RuntimeError(f"{home} exists: each run needs a fresh BRAINOBS_HOME")
    os.environ["BRAINOBS_EPHYS_JOBS"] = str(cores)
    with ingested_survey(manifest, home, "benchephys_") as settings:
        populate(settings, ["EphysRecording"])
        paramset = paramset_for(preset)
        # the populate above paired the recording with the default parameter set: only the preset's is sorted
        (SortingSelection - {"sorting_paramset": paramset}).delete(prompt=False)
        select_new(EphysRecording, SortingSelection, SortingParamSet, paramset)
        load = load_average()
        seconds, peaks = {}, {}
        with PeakMemory() as memory:
            for table in ("SpikeSorting", "UnitMetrics"):
                started = time.perf_counter()
                populate(settings, [table])
                seconds[table] = time.perf_counter() - started
                peaks[table] = memory.peak()  # the peak so far: up to and including this table
        if len(UnitMetrics()) != 1:
            raise RuntimeError("UnitMetrics has no row")
        sorting = SpikeSorting.fetch1()
        log = stores.root() / sorting["output_dir"] / SORTER_FOLDER / "spikeinterface_log.json"
        sorter_log = json.loads(log.read_text())
        seconds["sorter"] = sorter_log["run_time"]
        if sorter_log["sorter_name"] != SORTER_PRESETS[preset]["sorter_name"]:
            raise RuntimeError(f"SpikeSorting ran {sorter_log['sorter_name']}, not preset {preset!r}'s sorter")
        score = api.score_units_against_truth(sorting["session_id"], manifest.parent, sorting["probe_name"],
                                              sorting["sorting_paramset"])  # fmt: skip
        own = sorter_own_score(manifest, log.parent)
        return {
            "seconds": seconds, "peak_bytes": peaks["UnitMetrics"], "peaks": peaks, "load": load,
            "n_units": int(sorting["n_units"]), "accuracy": score.summary(), "sorter_accuracy": own,
        }  # fmt: skip


def sorter_own_score(manifest: Path, sorter_folder: Path) -> dict:
    """The sorter's own output (its folder, before brainobs's curation) scored against the truth."""
    import spikeinterface.sorters as ss
    import yaml

    from brainobs.ingest.synthetic.ephys import load_probe_truth
    from brainobs.ingest.synthetic.scoring.ephys import score_sorting

    probe_row = yaml.safe_load(manifest.read_text())["probe_insertions"][0]
    truth, truth_units = load_probe_truth(manifest.parent, probe_row["session_id"], probe_row["probe_name"])
    return score_sorting(ss.read_sorter_folder(sorter_folder), truth, truth_units).summary()


def paramset_for(preset: str) -> str:
    """The SortingParamSet row that holds sorter preset ``preset``'s parameters (found by their hash)."""
    from brainobs.schemas.ephys import SortingParamSet, sorting_params
    from brainobs.schemas.params import params_hash

    SortingParamSet.insert_defaults()
    row = SortingParamSet & {"param_hash": params_hash(sorting_params(preset))}
    if not row:
        raise ValueError(f"no SortingParamSet row holds sorter preset {preset!r}")
    return row.fetch1("sorting_paramset")


def child_bare(manifest: Path, work: Path, preset: str, cores: int) -> dict:
    import json as json_module

    import probeinterface
    import spikeinterface as si
    import spikeinterface.sorters as ss
    import yaml
    from threadpoolctl import threadpool_limits

    from brainobs.ingest.synthetic.ephys import load_probe_truth
    from brainobs.ingest.synthetic.scoring.ephys import score_sorting

    probe_row = yaml.safe_load(manifest.read_text())["probe_insertions"][0]
    root = manifest.parent
    path = root / probe_row["recording_path"]
    sidecar = json_module.loads(path.with_suffix(".json").read_text())
    raw = si.read_binary(
        path, sampling_frequency=sidecar["sampling_rate"], dtype=sidecar["dtype"], num_channels=sidecar["num_channels"]
    )
    probe = probeinterface.read_probeinterface(root / probe_row["probe_file"]).probes[0]
    recording = raw.set_probe(probe, in_place=False)
    sorter = SORTER_PRESETS[preset]
    params = {**sorter["params"], "job_kwargs": {"n_jobs": cores}}
    load = load_average()
    started = time.perf_counter()
    with PeakMemory() as memory, threadpool_limits(limits=cores):
        sorting = ss.run_sorter(
            sorter["sorter_name"], recording, folder=str(work), remove_existing_folder=True, verbose=False, **params
        )
    seconds = time.perf_counter() - started
    peak = memory.peak()
    truth_sorting, truth_units = load_probe_truth(root, probe_row["session_id"], probe_row["probe_name"])
    accuracy = score_sorting(sorting, truth_sorting, truth_units).summary()
    return {
        "seconds": seconds, "peak_bytes": peak, "load": load, "n_units": len(sorting.unit_ids),
        "accuracy": accuracy,
    }  # fmt: skip


QUICK = {"channels": [64], "cores": [1], "seconds": 10.0, "preset": ["cpu_default"], "repeats": 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"a short check: {QUICK}")
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 384])
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=2)
    cpu_presets = [name for name, preset in SORTER_PRESETS.items() if not preset["requires_gpu"]]
    parser.add_argument(
        "--preset", nargs="+", default=cpu_presets, choices=sorted(SORTER_PRESETS), metavar="PRESET",
        help=f"sorter presets to measure, each through the pipeline and bare (of {sorted(SORTER_PRESETS)})",
    )  # fmt: skip
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, manifest, work, preset, cores = args.child
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: int(cores)])
        run = child_pipeline if kind == "pipeline" else child_bare
        print(json.dumps(run(Path(manifest), Path(work), preset, int(cores))), flush=True)
        return
    if args.quick:
        vars(args).update(QUICK)
    unavailable = {preset: problems for preset in args.preset if (problems := sorter_problems(preset))}
    if unavailable:
        parser.error(f"cannot run here: {unavailable}")
    if max(args.cores) > len(os.sched_getaffinity(0)):
        parser.error(f"--cores {max(args.cores)}: this process may use {len(os.sched_getaffinity(0))} CPUs")

    for channels in args.channels:
        with tempfile.TemporaryDirectory(prefix="bench-ephys-") as tmp:
            manifest, gen_s = generate_recording(Path(tmp) / "data", channels, args.seconds)
            data_bytes = 2 * channels * int(args.seconds * 30000)
            print(
                f"recording {channels} channels x {args.seconds:g} s at 30 kHz ({data_bytes / 1e9:.2f} GB int16) "
                f"generated in {gen_s:.0f} s (load {load_average()})",
                flush=True,
            )
            for preset in args.preset:
                for cores in args.cores:
                    label = f"{preset}, {channels} ch, {cores} core{'s' if cores > 1 else ''}"
                    measure(label, preset, cores, manifest, Path(tmp) / f"{preset}-{cores}", args.repeats)


def measure(label: str, preset: str, cores: int, manifest: Path, work: Path, repeats: int) -> None:
    """Ours and bare, alternating, `repeats` times; prints each run, then the ratios and spreads."""
    ours, bare = [], []
    for repeat in range(repeats):
        run = run_child("benchmarks.bench_ephys", "pipeline", manifest, work / f"home{repeat}", preset, cores)
        ours.append(run)
        print(
            f"[{label}] ours #{repeat + 1}: SpikeSorting {run['seconds']['SpikeSorting']:.1f} s (the sorter "
            f"{run['seconds']['sorter']:.1f} s of it), UnitMetrics "
            f"{run['seconds']['UnitMetrics']:.1f} s, peak memory {run['peaks']['SpikeSorting'] / 1e9:.2f} GB after "
            f"SpikeSorting, {run['peak_bytes'] / 1e9:.2f} GB in all, "
            f"{_accuracy(run['accuracy'])}; the sorter's own output: {_accuracy(run['sorter_accuracy'])} (load "
            f"before {run['load']})",
            flush=True,
        )
        run = run_child("benchmarks.bench_ephys", "bare", manifest, work / f"bare{repeat}", preset, cores)
        bare.append(run)
        print(
            f"[{label}] bare #{repeat + 1}: run_sorter {run['seconds']:.1f} s, peak memory "
            f"{run['peak_bytes'] / 1e9:.2f} GB, {_accuracy(run['accuracy'])} (load before {run['load']})",
            flush=True,
        )
    sorting_s = [r["seconds"]["SpikeSorting"] for r in ours]
    total_s = [r["seconds"]["SpikeSorting"] + r["seconds"]["UnitMetrics"] for r in ours]
    bare_s = [r["seconds"] for r in bare]
    bare_peak = statistics.median(r["peak_bytes"] for r in bare)
    sorting_memory = statistics.median(r["peaks"]["SpikeSorting"] for r in ours) / bare_peak
    memory = statistics.median(r["peak_bytes"] for r in ours) / bare_peak
    print(
        f"[{label}] SpikeSorting / bare: {_ratio(sorting_s, bare_s)} (target <= 1.1); with UnitMetrics: "
        f"{_ratio(total_s, bare_s)}; peak memory ours / bare: SpikeSorting {sorting_memory:.2f}x (target <= 1.2), "
        f"with UnitMetrics {memory:.2f}x",
        flush=True,
    )
    own = [r["seconds"]["SpikeSorting"] - r["seconds"]["sorter"] for r in ours]
    share = [o / r["seconds"]["sorter"] for o, r in zip(own, ours, strict=True)]
    print(
        f"[{label}] SpikeSorting beyond the sorter's own run time (preprocessing, curation, rows): "
        f"{statistics.median(own):.1f} s, {statistics.median(share):.0%} of the sorter's time in the same run "
        f"({min(share):.0%}-{max(share):.0%}; less load-bound than the ratio to bare)",
        flush=True,
    )
    for key in ("num_well_detected", "num_false_positive", "mean_accuracy"):
        print(f"[{label}] {key}: ours {_spread(ours, key)}, bare {_spread(bare, key)}", flush=True)


def _ratio(ours: list[float], bare: list[float]) -> str:
    spread = f"ours {min(ours):.1f}-{max(ours):.1f} s, bare {min(bare):.1f}-{max(bare):.1f} s"
    return f"{statistics.median(ours) / statistics.median(bare):.2f}x ({spread})"


def _spread(runs: list[dict], key: str) -> str:
    values = [r["accuracy"][key] for r in runs]
    return f"{statistics.median(values):.3g} (spread {max(values) - min(values):.3g})"


def _accuracy(summary: dict) -> str:
    return (
        f"{summary['num_well_detected']} of {summary['num_truth_units']} well detected, "
        f"{summary['num_false_positive']} false positives, mean accuracy {summary['mean_accuracy']:.3f}"
    )


if __name__ == "__main__":
    main()
