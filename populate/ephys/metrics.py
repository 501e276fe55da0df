"""Allen's quality and waveform metrics per unit (docs/methods.md), from the SortingAnalyzer and the
unit records, through the pure cores `allen_metrics` (quality) and `allen_waveforms` (waveform).

The inputs Allen reads from Kilosort are built from the analyzer: spike times (s from sample 0), unit per
spike (one template per unit), |spike amplitude| at the peak channel, and the projections of the random
spikes (up to 500 per unit) on each unit's 32 nearest channels (pc_feature_ind) onto 3 temporal principal
components shared by every channel, as Kilosort projects onto its global temporal PCs
(`temporal_pc_features`). Spike-train metrics use every spike; drift uses SpikeInterface's spike locations
(um) as depths.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from spikeinterface.core import SortingAnalyzer
from threadpoolctl import threadpool_limits

from brainobs.populate.ephys import allen_metrics, allen_waveforms
from brainobs.populate.ephys.presets import ALLEN_METRIC_PARAMS, WAVEFORM_METRIC_PARAMS

METRIC_COLUMNS = (
    "firing_rate",
    "presence_ratio",
    "isi_violations",
    "isi_violations_corrected",
    "amplitude_cutoff",
    "snr",
    *allen_metrics.PC_METRICS,
    "silhouette_score",
    "max_drift",
    "cumulative_drift",
    *allen_waveforms.WAVEFORM_COLUMNS,
)

NUM_PCA_COMPONENTS = 3  # Kilosort's pc_features, used by Allen's PC metrics
PC_CHUNK_SPIKES = 4096  # random spikes per step of the temporal PCA (86 MB of float64 at 32 channels x 82 samples)


def compute_unit_metrics(
    analyzer: SortingAnalyzer,
    units: pd.DataFrame,
    *,
    n_jobs: int = 1,
    params: dict = ALLEN_METRIC_PARAMS,
    waveform_params: dict = WAVEFORM_METRIC_PARAMS,
) -> pd.DataFrame:
    """All METRIC_COLUMNS, one row per unit (index unit_id); `units` holds unit_id, peak_channel, snr and
    mean_waveform (samples x every channel) per unit, as waveforms.unit_table gives. BLAS/OpenMP
    threads are capped at n_jobs: the many small SVDs, nearest-neighbour and silhouette passes ran ~10x slower
    with uncapped threads on a shared machine (400 s against 34 s for 30 units x 64 channels x 20 s)."""
    with threadpool_limits(limits=n_jobs):
        return _unit_metrics(analyzer, units, params, waveform_params)


def _unit_metrics(analyzer: SortingAnalyzer, units: pd.DataFrame, params: dict, waveform_params: dict) -> pd.DataFrame:
    units = units.set_index("unit_id").loc[list(analyzer.unit_ids)]
    quality = quality_metrics(analyzer, units["peak_channel"].to_numpy(), params)
    waveform = pd.DataFrame.from_dict(
        {
            u: allen_waveforms.waveform_metrics(
                np.asarray(row.mean_waveform).T, int(row.peak_channel), analyzer.sampling_frequency, waveform_params
            )
            if np.isfinite(np.asarray(row.mean_waveform)).all()
            else dict.fromkeys(allen_waveforms.WAVEFORM_COLUMNS, np.nan)
            for u, row in units.iterrows()
        },
        orient="index",
    )
    table = quality.join(units[["snr"]]).join(waveform)
    table.index.name = "unit_id"
    return table[list(METRIC_COLUMNS)]


def quality_metrics(analyzer: SortingAnalyzer, peak_channels: np.ndarray, params: dict) -> pd.DataFrame:
    """Allen's quality metrics (index unit_id, in analyzer.unit_ids order) from the analyzer's Kilosort-style
    arrays; peak_channels: each unit's peak channel index, in the same order."""
    sorting = analyzer.sorting
    fs = sorting.sampling_frequency
    unit_ids = list(sorting.unit_ids)
    spikes = sorting.to_spike_vector()
    times = spikes["sample_index"] / fs
    units = spikes["unit_index"]
    amplitudes = np.abs(analyzer.get_extension("spike_amplitudes").get_data())
    depths = np.asarray(analyzer.get_extension("spike_locations").get_data()["y"], dtype=float)
    train = allen_metrics.spike_train_metrics(times, units, amplitudes, depths, params)

    random = analyzer.get_extension("random_spikes").get_random_spikes()
    projections = temporal_pc_features(analyzer)  # (spikes, PCs, sparse channels)
    channels = analyzer.sparsity.unit_id_to_channel_indices
    pc_feature_ind = np.array([channels[u] for u in unit_ids], dtype=np.int64)
    width = pc_feature_ind.shape[1]
    present = np.unique(random["unit_index"])  # the clusters are unit indices, sorted
    pcs = allen_metrics.pc_feature_metrics(
        random["sample_index"] / fs,
        random["unit_index"],
        random["unit_index"],
        np.asarray(projections[:, :, :width], dtype=np.float32),
        pc_feature_ind,
        params,
        peak_channels=np.asarray(peak_channels)[present],
    )
    table = pcs.join(train)
    table.index = pd.Index([unit_ids[i] for i in table.index], name="unit_id")
    return table.drop(columns="peak_channel")


def temporal_pc_features(
    analyzer: SortingAnalyzer, n_components: int = NUM_PCA_COMPONENTS, chunk_spikes: int = PC_CHUNK_SPIKES
) -> np.ndarray:
    """(random spikes, n_components, sparse channels) float32: each random spike's waveform on its unit's sparse
    channels projected onto the n_components leading temporal principal components of all those waveforms
    (every spike on every channel of its unit, centred on their mean), one basis shared by every channel as
    Kilosort's global temporal PCs; 0 past a unit's channels. Exact PCA (eigenvectors of the float64
    covariance), read chunk_spikes spikes at a time."""
    waveforms = analyzer.get_extension("waveforms").get_data()  # (spikes, samples, channels), zero-padded
    unit_index = analyzer.get_extension("random_spikes").get_random_spikes()["unit_index"]
    channels = analyzer.sparsity.mask.sum(axis=1)[unit_index]
    valid = np.arange(waveforms.shape[2])[None, :] < channels[:, None]  # (spikes, channels)
    samples = waveforms.shape[1]
    total, gram = np.zeros(samples), np.zeros((samples, samples))
    for start in range(0, len(waveforms), chunk_spikes):
        block = _chunk_waveforms(waveforms, valid, start, chunk_spikes)
        total += block.sum(axis=0)
        gram += block.T @ block
    count = max(int(valid.sum()), 1)
    mean = total / count
    _, vectors = np.linalg.eigh(gram / count - np.outer(mean, mean))  # ascending eigenvalues
    components = vectors[:, ::-1][:, :n_components]
    features = np.zeros((len(waveforms), n_components, waveforms.shape[2]), dtype=np.float32)
    for start in range(0, len(waveforms), chunk_spikes):
        stop = start + chunk_spikes
        centred = np.asarray(waveforms[start:stop], dtype=np.float64) - mean[None, :, None]
        projected = np.einsum("nsc,sk->nkc", centred, components)
        features[start:stop] = np.where(valid[start:stop, None, :], projected, 0.0)
    return features


def _chunk_waveforms(waveforms: np.ndarray, valid: np.ndarray, start: int, size: int) -> np.ndarray:
    """(waveforms, samples) float64: the spikes start..start+size on their unit's channels, one row each."""
    block = np.asarray(waveforms[start : start + size], dtype=np.float64).transpose(0, 2, 1)
    return block[valid[start : start + size]]
