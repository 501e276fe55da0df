"""SpikeSorting's computation in one call: the sorter on the raw traces, then brainobs's preprocessing held once
in memory for duplicate removal, mean waveforms, amplitudes, noise labels and the SortingAnalyzer."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from spikeinterface.core import BaseRecording

from brainobs.populate.ephys.pipeline import curate_units
from brainobs.populate.ephys.preprocessing import held_in_memory, preprocess, sorter_input
from brainobs.populate.ephys.sorting import run_sorter

SORTER_FOLDER = "sorter"  # under output_dir: what the sorter wrote
ANALYZER_FOLDER = "analyzer"  # under output_dir: the SortingAnalyzer that UnitMetrics opens


def spike_sorting(raw: BaseRecording, params: Mapping, output_dir: Path, *, n_jobs: int = 1) -> pd.DataFrame:
    """Sort the raw recording with ``params`` (a SortingParamSet's: preprocessing, sorter, noise) and return one
    row per unit (`pipeline.UNIT_COLUMNS`); the sorter's files go to output_dir/sorter, the SortingAnalyzer to
    output_dir/analyzer (both replaced if present).

    The sorter (`sorting.run_sorter`, in this process) filters the raw traces itself; only once it has
    returned, and its memory is back with the system, is brainobs's chain computed, held in memory within
    BRAINOBS_EPHYS_CACHE_BYTES (`preprocessing.held_in_memory`, lazy chunked reads above it), for every pass
    of the curation (`pipeline.curate_units`; metrics are UnitMetrics's). Uses n_jobs cores throughout.
    """
    analyzer_folder = output_dir / ANALYZER_FOLDER
    if analyzer_folder.exists():
        shutil.rmtree(analyzer_folder)
    sorting = run_sorter(sorter_input(raw), params["sorter"], output_dir / SORTER_FOLDER, n_jobs=n_jobs)
    recording = preprocess(raw, params["preprocessing"])
    with held_in_memory(recording, n_jobs=n_jobs) as traces:
        curated = curate_units(
            recording, sorting, analyzer_folder=analyzer_folder, n_jobs=n_jobs, with_metrics=False, traces=traces,
            noise_params=params["noise"],
        )  # fmt: skip
    return curated.units
