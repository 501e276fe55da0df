"""SpikeSorting's computation in one call: the sorter on the raw traces (or, for a preset that shares its
filtering, on brainobs's held traces), then brainobs's preprocessing held once in memory for duplicate removal,
mean waveforms, amplitudes, noise labels and the SortingAnalyzer."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from spikeinterface.core import BaseRecording, BaseSorting
from threadpoolctl import threadpool_limits

from brainobs.populate.ephys.pipeline import curate_units
from brainobs.populate.ephys.preprocessing import held_for_sorter, held_in_memory, preprocess, sorter_input
from brainobs.populate.ephys.sorting import resolve_sorter_preset, run_sorter, shares_traces

SORTER_FOLDER = "sorter"  # under output_dir: what the sorter wrote
ANALYZER_FOLDER = "analyzer"  # under output_dir: the SortingAnalyzer that UnitMetrics opens


def spike_sorting(raw: BaseRecording, params: Mapping, output_dir: Path, *, n_jobs: int = 1) -> pd.DataFrame:
    """Sort the raw recording with ``params`` (a SortingParamSet's: preprocessing, sorter, noise) and return one
    row per unit (`pipeline.UNIT_COLUMNS`); the sorter's files go to output_dir/sorter, the SortingAnalyzer to
    output_dir/analyzer (both replaced if present).

    A preset that shares the sorter's filtering (`sorting.shares_traces`) filters once: brainobs's chain,
    whitened, is held in memory within BRAINOBS_EPHYS_CACHE_BYTES (`preprocessing.held_for_sorter`), the sorter
    reads it, and the same arrays, unwhitened in place, serve every pass of the curation. Otherwise, or when the
    traces do not fit, the sorter (`sorting.run_sorter`, in this process) filters the raw traces itself, and
    only once it has returned, and its memory is back with the system, is brainobs's chain computed, held in
    memory within the same bound (`preprocessing.held_in_memory`, lazy chunked reads above it), for the
    curation (`pipeline.curate_units`; metrics are UnitMetrics's). Uses n_jobs cores throughout.
    """
    analyzer_folder = output_dir / ANALYZER_FOLDER
    if analyzer_folder.exists():
        shutil.rmtree(analyzer_folder)
    sorter = resolve_sorter_preset(params["sorter"])
    sorter_folder = output_dir / SORTER_FOLDER
    recording = preprocess(raw, params["preprocessing"])
    if shares_traces(sorter):
        radius_um, seed = sorter["shared_whitening_radius_um"], sorter.get("params", {}).get("seed")
        shared = held_for_sorter(recording, radius_um=radius_um, seed=seed, n_jobs=n_jobs)
        with threadpool_limits(limits=n_jobs), shared as held:  # BLAS: the whitening matrix, the unwhitening
            if held is not None:
                sorting = run_sorter(held.whitened, sorter, sorter_folder, n_jobs=n_jobs, preprocessed=True)
                held.record_in(sorter_folder)
                traces = held.unwhiten()
                return _curated_units(recording, sorting, analyzer_folder, params, n_jobs, traces)
    sorting = run_sorter(sorter_input(raw), sorter, sorter_folder, n_jobs=n_jobs)
    with held_in_memory(recording, n_jobs=n_jobs) as traces:
        return _curated_units(recording, sorting, analyzer_folder, params, n_jobs, traces)


def _curated_units(
    recording: BaseRecording,
    sorting: BaseSorting,
    analyzer_folder: Path,
    params: Mapping,
    n_jobs: int,
    traces: BaseRecording | None,
) -> pd.DataFrame:
    curated = curate_units(
        recording, sorting, analyzer_folder=analyzer_folder, n_jobs=n_jobs, with_metrics=False, traces=traces,
        noise_params=params["noise"],
    )  # fmt: skip
    return curated.units
