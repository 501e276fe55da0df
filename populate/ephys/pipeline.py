"""From a sorter's output to unit records and metrics: duplicate removal, waveforms, metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from spikeinterface.core import BaseRecording, BaseSorting, SortingAnalyzer
from threadpoolctl import threadpool_limits

from brainobs.populate.ephys.duplicates import remove_duplicate_spikes
from brainobs.populate.ephys.metrics import METRIC_COLUMNS, compute_unit_metrics
from brainobs.populate.ephys.noise import quality_labels
from brainobs.populate.ephys.presets import NOISE_TEMPLATE_PARAMS
from brainobs.populate.ephys.waveforms import UNIT_TABLE_COLUMNS, build_analyzer, peak_channels, unit_table

UNIT_COLUMNS = (*UNIT_TABLE_COLUMNS, "duplicates_removed", "quality")


@dataclass
class CuratedUnits:
    """units: UNIT_COLUMNS, one row per unit; metrics: METRIC_COLUMNS indexed by unit_id; sorting: without
    duplicates; analyzer: None when no unit is left."""

    units: pd.DataFrame
    metrics: pd.DataFrame
    sorting: BaseSorting
    analyzer: SortingAnalyzer | None


def curate_units(
    recording: BaseRecording,
    sorting: BaseSorting,
    *,
    t_start_s: float | None = None,
    analyzer_folder: Path | None = None,
    n_jobs: int = 1,
    with_metrics: bool = True,
    traces: BaseRecording | None = None,
    noise_params: dict = NOISE_TEMPLATE_PARAMS,
) -> CuratedUnits:
    """Remove duplicate spikes, then extract per-unit records and metrics from the preprocessed recording.

    t_start_s (session-clock time of sample 0) defaults to the recording's start time, which open_recording
    sets from the files. Units left without spikes are dropped; a sorting without units gives empty tables.
    quality is "noise" where the mean waveform fails Allen's rule-based noise checks (`noise.is_noise`,
    noise_params), else "good".
    BLAS/OpenMP threads are capped at n_jobs. with_metrics=False leaves metrics empty (compute them later
    from the analyzer saved in analyzer_folder with compute_unit_metrics). traces: a faster copy of recording
    (`preprocessing.held_in_memory`) read for every computation; the analyzer keeps recording's provenance.
    """
    t_start_s = recording.get_start_time() if t_start_s is None else t_start_s
    with threadpool_limits(limits=n_jobs):
        return _curate(
            recording, sorting, t_start_s, analyzer_folder, n_jobs, with_metrics, traces or recording, noise_params
        )


def _curate(
    recording: BaseRecording,
    sorting: BaseSorting,
    t_start_s: float,
    analyzer_folder: Path | None,
    n_jobs: int,
    with_metrics: bool,
    traces: BaseRecording,
    noise_params: dict,
) -> CuratedUnits:
    sorting = _with_spikes(sorting)
    channels = peak_channels(traces, sorting) if sorting.get_num_units() else {}
    cleaned, removed = remove_duplicate_spikes(sorting, channels)
    cleaned = _with_spikes(cleaned)  # a unit can lose every spike to another unit's earlier copies
    if cleaned.get_num_units() == 0:
        units = pd.DataFrame(columns=list(UNIT_COLUMNS))
        metrics = pd.DataFrame(columns=list(METRIC_COLUMNS), index=pd.Index([], name="unit_id"))
        return CuratedUnits(units=units, metrics=metrics, sorting=cleaned, analyzer=None)
    analyzer = build_analyzer(
        recording, cleaned, main_channels=channels, folder=analyzer_folder, n_jobs=n_jobs, traces=traces
    )
    units = unit_table(analyzer, t_start_s=t_start_s, traces=traces)
    units["duplicates_removed"] = units["unit_id"].map(removed).astype(int)
    units["quality"] = quality_labels(list(units["mean_waveform"]), noise_params)
    if with_metrics:
        metrics = compute_unit_metrics(analyzer, units, n_jobs=n_jobs)
    else:
        metrics = pd.DataFrame(columns=list(METRIC_COLUMNS), index=pd.Index(units["unit_id"], name="unit_id"))
    return CuratedUnits(units=units, metrics=metrics, sorting=cleaned, analyzer=analyzer)


def _with_spikes(sorting: BaseSorting) -> BaseSorting:
    counts = sorting.count_num_spikes_per_unit()
    return sorting.select_units([u for u in sorting.unit_ids if counts[u] > 0])
