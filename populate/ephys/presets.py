"""Neuropixels processing presets, as plain data (JSON-able; hashed into parameter tables).

Numbers that docs/methods.md describes (duplicate window, waveform window, metric parameters,
release filters) are written here once and pinned by tests.
"""

from __future__ import annotations

# SpikeInterface's own sorters' chain (0.105): 2nd-order Bessel band-pass run forward and backward, then a global
# common median reference from 32 channels (lupin and spykingcircus2 150-7000 Hz, tridesclous2 150-6000 Hz)
SORTER_CHAIN = {
    "filter": "bandpass",
    "freq_min": 150.0,
    "freq_max": 7000.0,
    "ftype": "bessel",
    "filter_order": 2,
    "common_reference": "median",
    "reference_min_channels": 32,
}

PREPROCESSING_PRESETS: dict[str, dict] = {
    # Allen: common-median reference before the sorter, which filters and whitens on its own.
    "allen": {"filter": "highpass", "freq_min": 300.0, "freq_max": None, "common_reference": "median"},
    "bandpass": {"filter": "bandpass", "freq_min": 300.0, "freq_max": 6000.0, "common_reference": "median"},
    # the sorters' own chains, for the presets that filter once for sorting and waveforms
    "lupin": SORTER_CHAIN,
    "spykingcircus2": SORTER_CHAIN,
    "tridesclous2": {**SORTER_CHAIN, "freq_max": 6000.0},
}

# The CPU default was chosen on a generated recording (docs/formats/ephys.md, "Sorter choice"): lupin reached
# the best accuracy per unit of time among the SpikeInterface CPU sorters and needs no extra package. It filters
# once: brainobs runs lupin's own chain (PREPROCESSING_PRESETS["lupin"]), whitens it as lupin does (local,
# 100 um) and holds it in memory for the sorter and, unwhitened, for the waveforms. Every CPU preset filters
# once; tridesclous2 and spykingcircus2 need the `hdbscan` package. kilosort4 filters the raw traces itself on
# the GPU, and its waveforms are on the `allen` 300 Hz high-pass chain.
SORTER_PRESETS: dict[str, dict] = {
    "cpu_default": {
        "sorter_name": "lupin",
        "params": {"seed": 0},
        "requires_gpu": False,
        "requires_packages": [],
        "preprocessing": "lupin",
        "shared_whitening_radius_um": 100.0,
    },
    # both filter once as cpu_default does, each on its own chain, whitened as it whitens (local, 100 um)
    "tridesclous2": {
        "sorter_name": "tridesclous2",
        "params": {"seed": 0},
        "requires_gpu": False,
        "requires_packages": ["hdbscan"],
        "preprocessing": "tridesclous2",
        "shared_whitening_radius_um": 100.0,
    },
    "spykingcircus2": {
        "sorter_name": "spykingcircus2",
        "params": {"seed": 0, "apply_motion_correction": False},
        "requires_gpu": False,
        "requires_packages": ["hdbscan"],
        "preprocessing": "spykingcircus2",
        "shared_whitening_radius_um": 100.0,
    },
    "kilosort4": {"sorter_name": "kilosort4", "params": {}, "requires_gpu": True, "requires_packages": ["kilosort"]},
}

DUPLICATE_REMOVAL = {
    "within_unit_window_s": 0.000166,
    "between_unit_window_s": 0.000166,
    "between_unit_channel_distance": 5,
}

MEAN_WAVEFORM = {"samples_before_peak": 20, "num_samples": 82, "max_spikes": 100}

ALLEN_METRIC_PARAMS = {
    "epoch_start_s": 0.0,  # Allen's complete_session epoch (0, inf): a spike at exactly 0 s is not counted
    "isi_threshold_s": 0.0015,
    "min_isi_s": 0.0,
    "presence_num_bin_edges": 100,
    "amplitude_cutoff_num_bins": 500,
    "amplitude_cutoff_smoothing_bins": 3,
    "amplitude_cutoff_max": 0.5,
    "pc_num_channels": 13,
    "pc_feature_channels": 32,  # Kilosort's pc_feature_ind width: channels nearest a unit's peak with PCs
    "pc_max_spikes_per_unit": 500,
    "nn_max_spikes": 10000,
    "nn_num_neighbors": 4,  # sklearn's n_neighbors, the spike itself included: 3 true neighbours
    "silhouette_max_spikes": 10000,
    "drift_interval_s": 100.0,
    "drift_min_spikes_per_interval": 10,
    "seed": 9999,
}

# Allen's mean-waveform metrics (ecephys_spike_sorting mean_waveforms defaults): 82 samples upsampled to 200
WAVEFORM_METRIC_PARAMS = {
    "upsampling_factor": 200 / 82,
    "spread_threshold": 0.12,
    "site_range": 16,
    "site_spacing_m": 10e-6,
    "slope_window": 20,
    "snr_spikes": 100,  # single-spike waveforms on the peak channel for snr (Allen: the extracted spikes)
}

# Rule-based noise clusters (ecephys_spike_sorting noise_templates defaults). Locations are sample indices
# of the 82-sample mean waveform (20 before the trough), as of Kilosort's templates (trough near 20);
# wavelet_width 5 is Allen's wavelet_index 2 of the widths 1, 3, 5, ...
NOISE_TEMPLATE_PARAMS = {
    "smoothed_template_amplitude_threshold": 0.2,
    "template_amplitude_threshold": 0.2,
    "smoothed_template_filter_width": 2,
    "min_spread_threshold": 2,
    "mid_spread_threshold": 16,
    "max_spread_threshold": 25,
    "min_temporal_peak_location": 10,
    "max_temporal_peak_location": 30,
    "template_shape_channel_range": 12,
    "wavelet_width": 5,
    "min_wavelet_peak_height": 0.0,
    "min_wavelet_peak_loc": 15,
    "max_wavelet_peak_loc": 25,
    "channel_amplitude_thresh": 0.25,
    "peak_height_thresh": 0.2,
    "peak_prominence_thresh": 0.2,
    "peak_channel_range": 24,
    "peak_locs_std_thresh": 3.5,
}

# Release unit filters (query-time presets): (column, operator, value), all must hold.
UNIT_FILTER_PRESETS: dict[str, list[tuple[str, str, object]]] = {
    "visual_coding": [
        ("amplitude_cutoff", "<=", 0.1),
        ("presence_ratio", ">=", 0.95),
        ("isi_violations", "<=", 0.5),
        ("quality", "==", "good"),
        ("in_brain", "==", True),
    ],
    # AllenSDK Visual Behavior Neuropixels get_units_table defaults: out-of-brain units dropped, no metric limit;
    # noise clusters are never released
    "visual_behavior": [("in_brain", "==", True), ("quality", "==", "good")],
}
