"""Conformance adapters for Allen's Neuropixels vectors (`brainobs conformance`): each runs one case's
inputs through the same core functions the UnitMetrics table calls and returns every stored output.

An adapter takes (the case's JSON sidecar, its inputs without the `in_` prefix) and returns the outputs
without the `out_` prefix.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from brainobs.populate.ephys import allen_metrics, allen_waveforms
from brainobs.populate.ephys.presets import ALLEN_METRIC_PARAMS, WAVEFORM_METRIC_PARAMS

# Allen's output name -> brainobs column, where they differ
QUALITY_NAMES = {"cluster_peak_channel": "peak_channel"}
WAVEFORM_NAMES = {"duration": "waveform_duration"}
# brainobs parameter -> the case's scalar of the same meaning
QUALITY_PARAMS = {
    "isi_threshold_s": "isi_threshold",
    "min_isi_s": "min_isi",
    "pc_num_channels": "num_channels_to_compare",
    "pc_max_spikes_per_unit": "max_spikes_for_unit",
    "nn_max_spikes": "max_spikes_for_nn",
    "nn_num_neighbors": "n_neighbors",
    "silhouette_max_spikes": "n_silhouette",
    "drift_interval_s": "drift_metrics_interval_s",
    "drift_min_spikes_per_interval": "drift_metrics_min_spikes_per_interval",
    "seed": "random_seed",
}
WAVEFORM_PARAMS = {name: name for name in ("upsampling_factor", "spread_threshold", "site_range", "site_spacing_m")}


def case_params(defaults: dict, scalars: dict, names: dict[str, str]) -> dict:
    """``defaults`` with each parameter of ``names`` taken from the case's scalar it names."""
    return {**defaults, **{param: scalars[scalar] for param, scalar in names.items()}}


def quality_metrics(meta: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ecephys_spike_sorting calculate_metrics on one probe, with the case's parameters."""
    s = meta["scalars"]
    params = {**case_params(ALLEN_METRIC_PARAMS, s, QUALITY_PARAMS), "epoch_start_s": float(s["epoch"][1])}
    table = allen_metrics.quality_metrics(
        inputs["spike_times"],
        inputs["spike_clusters"],
        inputs["spike_templates"],
        inputs["amplitudes"],
        inputs["pc_features"],
        inputs["pc_feature_ind"],
        params=params,
    )
    outputs = {name: table[QUALITY_NAMES.get(name, name)].to_numpy(dtype=float) for name in meta["outputs"]
               if QUALITY_NAMES.get(name, name) in table.columns}  # fmt: skip
    outputs["cluster_id"] = table.index.to_numpy(dtype=np.int64)
    outputs["cluster_peak_channel"] = table["peak_channel"].to_numpy().astype(np.int64)
    outputs["spike_depths"] = allen_metrics.spike_depths(
        inputs["spike_templates"], inputs["pc_features"], inputs["pc_feature_ind"]
    )
    return outputs


def waveform_metrics(meta: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ecephys_spike_sorting calculate_waveform_metrics per unit on its mean waveform, and snr on its
    single-spike waveforms."""
    s = meta["scalars"]
    params = case_params(WAVEFORM_METRIC_PARAMS, s, WAVEFORM_PARAMS)
    channel_map = np.asarray(inputs["channel_map"])
    rows = []
    for waveform, peak in zip(inputs["waveforms"], inputs["peak_channel"], strict=True):
        local_peak = int(np.argmin(np.abs(channel_map - peak)))
        rows.append(allen_waveforms.waveform_metrics(waveform[channel_map], local_peak, s["sample_rate_hz"], params))
    outputs = {name: np.array([row[WAVEFORM_NAMES.get(name, name)] for row in rows]) for name in meta["outputs"]
               if name != "snr"}  # fmt: skip
    outputs["snr"] = np.array([allen_waveforms.snr(spikes) for spikes in inputs["snr_spikes"]])
    return outputs


ADAPTERS: dict[str, Callable[[dict, dict[str, np.ndarray]], dict[str, np.ndarray]]] = {
    "quality_metrics": quality_metrics,
    "waveform_metrics": waveform_metrics,
}
