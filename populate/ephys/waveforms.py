"""Per-unit records from a sorting: spike times on the session clock, amplitudes, peak channel, mean waveform.

Everything goes through one SpikeInterface SortingAnalyzer whose sparsity is Allen's neighbourhood: the
13 channels (by index) centred on each unit's peak channel, clipped at the probe ends.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from spikeinterface.core import BaseRecording, BaseSorting, ChannelSparsity, SortingAnalyzer, create_sorting_analyzer

from brainobs.populate.ephys import allen_metrics
from brainobs.populate.ephys.presets import ALLEN_METRIC_PARAMS, MEAN_WAVEFORM

UNIT_TABLE_COLUMNS = (
    "unit_id",
    "peak_channel",
    "num_spikes",
    "spike_times",
    "spike_amplitudes",
    "mean_waveform",
    "waveform_channels",
    "snr",
    "amplitude",
)


def peak_channels(recording: BaseRecording, sorting: BaseSorting, *, seed: int = 0) -> dict:
    """Unit id -> index of the channel with the largest peak-to-peak template (100 spikes per unit)."""
    analyzer = create_sorting_analyzer(
        sorting,
        recording,
        sparse=False,
        peak_mode="peak_to_peak",
        seed=seed,
        num_spikes_for_main_channel=MEAN_WAVEFORM["max_spikes"],
        job_kwargs={"progress_bar": False},
    )
    return {u: int(c) for u, c in analyzer.get_main_channels(outputs="index", with_dict=True).items()}


def build_analyzer(
    recording: BaseRecording,
    sorting: BaseSorting,
    *,
    main_channels: dict | None = None,
    seed: int = ALLEN_METRIC_PARAMS["seed"],
    folder: Path | None = None,
    n_jobs: int = 1,
    traces: BaseRecording | None = None,
) -> SortingAnalyzer:
    """A SortingAnalyzer with the extensions our metrics need, in memory or in `folder`.

    Random spikes (500 per unit), waveforms of 82 samples with 20 before the peak, templates, spike
    amplitudes and spike locations (for drift): every pass over the traces. The principal components, which
    only the metrics use, are `metrics.compute_unit_metrics`'s to add.
    main_channels (unit id -> peak channel index) defaults to peak_channels(). traces: a faster copy of
    recording (`preprocessing.held_in_memory`) read by the computations; the analyzer records
    recording's provenance.
    """
    channels = peak_channels(traces or recording, sorting, seed=seed) if main_channels is None else main_channels
    main = np.array([channels[u] for u in sorting.unit_ids])
    sparsity = allen_sparsity(sorting.unit_ids, recording.channel_ids, main)
    analyzer = create_sorting_analyzer(
        sorting,
        recording,
        format="memory" if folder is None else "binary_folder",
        folder=folder,
        sparsity=sparsity,
        main_channel_indices=main,
        seed=seed,
        overwrite=True,
    )
    if traces is not None and traces is not recording:
        analyzer.set_temporary_recording(traces)
    fs = recording.sampling_frequency
    before, after = (
        MEAN_WAVEFORM["samples_before_peak"],
        MEAN_WAVEFORM["num_samples"] - MEAN_WAVEFORM["samples_before_peak"],
    )
    job_kwargs = {"n_jobs": n_jobs, "progress_bar": False}
    analyzer.compute("random_spikes", max_spikes_per_unit=ALLEN_METRIC_PARAMS["pc_max_spikes_per_unit"], seed=seed)
    analyzer.compute("waveforms", ms_before=before / fs * 1e3, ms_after=after / fs * 1e3, **job_kwargs)
    analyzer.compute("templates", operators=["average", "std"])
    analyzer.compute(["spike_amplitudes", "spike_locations"], **job_kwargs)
    return analyzer


def allen_sparsity(unit_ids, channel_ids, main_channel_indices: np.ndarray) -> ChannelSparsity:
    """Each unit's 13 channels (by index) centred on its peak channel, clipped at the ends."""
    half = ALLEN_METRIC_PARAMS["pc_num_channels"] // 2
    mask = np.zeros((len(unit_ids), len(channel_ids)), dtype=bool)
    for row, peak in enumerate(main_channel_indices):
        mask[row, max(0, peak - half) : peak + half + 1] = True
    return ChannelSparsity(mask, unit_ids, channel_ids)


def unit_table(analyzer: SortingAnalyzer, *, t_start_s: float, seed: int = ALLEN_METRIC_PARAMS["seed"]) -> pd.DataFrame:
    """One row per unit: unit_id, peak_channel, num_spikes, spike_times (s, session clock), spike_amplitudes
    (uV at the peak channel), mean_waveform (82 samples x neighbourhood channels, uV, mean of up to 100
    spikes), waveform_channels (channel indices of mean_waveform's columns), snr (Allen), amplitude (uV)."""
    fs = analyzer.sampling_frequency
    sorting = analyzer.sorting
    amplitudes = analyzer.get_extension("spike_amplitudes").get_data(outputs="by_unit")[0]
    waveforms_ext = analyzer.get_extension("waveforms")
    main = analyzer.get_main_channels(outputs="index", with_dict=True)
    rng = np.random.default_rng(seed)
    rows = []
    for unit_id in sorting.unit_ids:
        samples = sorting.get_unit_spike_train(unit_id, segment_index=0)
        channels = analyzer.sparsity.unit_id_to_channel_indices[unit_id]
        waveforms = waveforms_ext.get_waveforms_one_unit(unit_id, force_dense=False)
        if len(waveforms) > MEAN_WAVEFORM["max_spikes"]:
            waveforms = waveforms[np.sort(rng.choice(len(waveforms), MEAN_WAVEFORM["max_spikes"], replace=False))]
        mean_waveform = (
            waveforms.mean(axis=0) if len(waveforms) else np.full((MEAN_WAVEFORM["num_samples"], len(channels)), np.nan)
        )
        peak_column = int(np.flatnonzero(channels == main[unit_id])[0])
        rows.append(
            {
                "unit_id": unit_id,
                "peak_channel": int(main[unit_id]),
                "num_spikes": int(samples.size),
                "spike_times": t_start_s + samples / fs,
                "spike_amplitudes": np.asarray(amplitudes[unit_id], dtype=np.float32),
                "mean_waveform": mean_waveform.astype(np.float32),
                "waveform_channels": np.asarray(channels, dtype=np.int32),
                "snr": allen_metrics.snr(waveforms[:, :, peak_column]) if len(waveforms) > 1 else float("nan"),
                "amplitude": float(np.ptp(mean_waveform, axis=0).max()),
            }
        )
    return pd.DataFrame(rows, columns=list(UNIT_TABLE_COLUMNS))
