"""Per-unit records from a sorting: spike times on the session clock, amplitudes, peak channel, mean waveform.

Spike amplitudes, locations and principal components go through one SpikeInterface SortingAnalyzer whose
sparsity is Kilosort's pc_feature_ind: the 32 channels (by index) nearest each unit's peak channel. The
mean waveform is read on every channel of the probe, as Allen's mean_waveforms module does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from spikeinterface.core import BaseRecording, BaseSorting, ChannelSparsity, SortingAnalyzer, create_sorting_analyzer

from brainobs.populate.ephys import allen_waveforms
from brainobs.populate.ephys.presets import ALLEN_METRIC_PARAMS, MEAN_WAVEFORM

UNIT_TABLE_COLUMNS = (
    "unit_id",
    "peak_channel",
    "num_spikes",
    "spike_times",
    "spike_amplitudes",
    "mean_waveform",
    "snr",
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
    """Each unit's pc_feature_channels (32) channels nearest its peak channel by index (all channels on a
    smaller probe): the window is shifted, not clipped, at the probe ends, so every unit has as many."""
    n_channels = len(channel_ids)
    width = min(ALLEN_METRIC_PARAMS["pc_feature_channels"], n_channels)
    mask = np.zeros((len(unit_ids), n_channels), dtype=bool)
    for row, peak in enumerate(main_channel_indices):
        start = min(max(0, int(peak) - width // 2), n_channels - width)
        mask[row, start : start + width] = True
    return ChannelSparsity(mask, unit_ids, channel_ids)


def unit_table(
    analyzer: SortingAnalyzer,
    *,
    t_start_s: float,
    seed: int = ALLEN_METRIC_PARAMS["seed"],
    traces: BaseRecording | None = None,
) -> pd.DataFrame:
    """One row per unit: unit_id, peak_channel, num_spikes, spike_times (s, session clock), spike_amplitudes
    (uV at the peak channel), mean_waveform (82 samples x every channel, uV, mean of up to 100 random
    spikes, `mean_waveform`), snr (Allen's, on those spikes' peak-channel waveforms).

    traces: the recording the waveforms are read from (default: the analyzer's)."""
    fs = analyzer.sampling_frequency
    sorting = analyzer.sorting
    traces = analyzer.recording if traces is None else traces
    amplitudes = analyzer.get_extension("spike_amplitudes").get_data(outputs="by_unit")[0]
    main = analyzer.get_main_channels(outputs="index", with_dict=True)
    rng = np.random.default_rng(seed)
    rows = []
    for unit_id in sorting.unit_ids:
        samples = sorting.get_unit_spike_train(unit_id, segment_index=0)
        spikes = spike_waveforms(traces, samples, rng)
        peak = int(main[unit_id])
        empty = np.full((MEAN_WAVEFORM["num_samples"], traces.get_num_channels()), np.nan)
        mean = spikes.mean(axis=0) if len(spikes) else empty
        rows.append(
            {
                "unit_id": unit_id,
                "peak_channel": peak,
                "num_spikes": int(samples.size),
                "spike_times": t_start_s + samples / fs,
                "spike_amplitudes": np.asarray(amplitudes[unit_id], dtype=np.float32),
                "mean_waveform": mean.astype(np.float32),
                "snr": allen_waveforms.snr(spikes[:, :, peak]) if len(spikes) > 1 else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=list(UNIT_TABLE_COLUMNS))


def spike_waveforms(traces: BaseRecording, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(spikes, 82 samples, every channel) uV around up to max_spikes (100) random spikes (20 samples before
    each); spikes whose window leaves the recording are skipped."""
    before, n = MEAN_WAVEFORM["samples_before_peak"], MEAN_WAVEFORM["num_samples"]
    scaled = traces.has_scaleable_traces()
    inside = samples[(samples >= before) & (samples - before + n <= traces.get_num_samples())]
    if len(inside) > MEAN_WAVEFORM["max_spikes"]:
        inside = np.sort(rng.choice(inside, MEAN_WAVEFORM["max_spikes"], replace=False))
    windows = [
        traces.get_traces(start_frame=int(s) - before, end_frame=int(s) - before + n, return_in_uV=scaled)
        for s in inside
    ]
    return np.asarray(windows, dtype=float).reshape(len(windows), n, traces.get_num_channels())
