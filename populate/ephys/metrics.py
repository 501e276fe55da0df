"""Quality and waveform metrics per unit, under the Allen release names (docs/methods.md).

Allen definitions computed here (allen_metrics): firing_rate, presence_ratio, isi_violations,
amplitude_cutoff, snr, silhouette_score, max_drift, cumulative_drift. From SpikeInterface (standard
definitions): isolation_distance, l_ratio, d_prime, nn_hit_rate, nn_miss_rate, and the template
metrics, converted to Allen's units. docs/formats/ephys.md lists each column with its unit and source.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from spikeinterface.core import SortingAnalyzer

from brainobs.populate.ephys import allen_metrics
from brainobs.populate.ephys.presets import ALLEN_METRIC_PARAMS as P

METRIC_COLUMNS = (
    "firing_rate",
    "presence_ratio",
    "isi_violations",
    "amplitude_cutoff",
    "snr",
    "isolation_distance",
    "l_ratio",
    "d_prime",
    "nn_hit_rate",
    "nn_miss_rate",
    "silhouette_score",
    "max_drift",
    "cumulative_drift",
    "waveform_duration",
    "halfwidth",
    "PT_ratio",
    "repolarization_slope",
    "recovery_slope",
    "amplitude",
    "spread",
    "velocity_above",
    "velocity_below",
)

NUM_PCA_COMPONENTS = 3  # Kilosort's pc_features, used by Allen's PC metrics
SI_QUALITY_METRICS = ["mahalanobis", "d_prime", "nearest_neighbor"]
SI_TEMPLATE_METRICS = [
    "peak_to_trough_duration",
    "half_width",
    "waveform_ratios",
    "repolarization_slope",
    "recovery_slope",
    "spread",
    "velocity_fits",
]


def compute_unit_metrics(analyzer: SortingAnalyzer, units: pd.DataFrame, *, n_jobs: int = 1) -> pd.DataFrame:
    """All METRIC_COLUMNS, one row per unit (index unit_id); `units` is waveforms.unit_table's output.

    Adds the principal components (3 per channel, from the stored waveforms) to the analyzer first."""
    if not analyzer.has_extension("principal_components"):
        analyzer.compute(
            "principal_components", n_components=NUM_PCA_COMPONENTS, mode="by_channel_local", n_jobs=n_jobs,
            progress_bar=False,
        )  # fmt: skip
    allen = spike_train_metrics(analyzer).join(units.set_index("unit_id")[["snr", "amplitude"]])
    quality = _si_quality_metrics(analyzer, n_jobs)
    waveform = _si_template_metrics(analyzer)
    table = allen.join(quality).join(_silhouette(analyzer)).join(waveform)
    table.index.name = "unit_id"
    return table[list(METRIC_COLUMNS)]


def spike_train_metrics(analyzer: SortingAnalyzer) -> pd.DataFrame:
    """Allen's spike-train metrics: bounds are the first and last spike of all units."""
    sorting = analyzer.sorting
    fs = sorting.sampling_frequency
    trains = {u: sorting.get_unit_spike_train(u, segment_index=0) / fs for u in sorting.unit_ids}
    amplitudes = analyzer.get_extension("spike_amplitudes").get_data(outputs="by_unit")[0]
    depths = _spike_depths(analyzer)
    nonempty = [t for t in trains.values() if t.size]
    min_time = min((t.min() for t in nonempty), default=0.0)
    max_time = max((t.max() for t in nonempty), default=0.0)
    rows = {}
    for unit_id, times in trains.items():
        max_drift, cumulative_drift = allen_metrics.drift_metrics(times, depths[unit_id], min_time, max_time)
        rows[unit_id] = {
            "firing_rate": allen_metrics.firing_rate(times, min_time, max_time),
            "presence_ratio": allen_metrics.presence_ratio(times, min_time, max_time),
            "isi_violations": allen_metrics.isi_violations(times, min_time, max_time)[0],
            "amplitude_cutoff": allen_metrics.amplitude_cutoff(np.abs(amplitudes[unit_id])),
            "max_drift": max_drift,
            "cumulative_drift": cumulative_drift,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _spike_depths(analyzer: SortingAnalyzer) -> dict:
    """Unit id -> depth (um along the probe, y) of each spike, from SpikeInterface's spike locations."""
    locations = analyzer.get_extension("spike_locations").get_data(outputs="by_unit")[0]
    return {u: np.asarray(loc["y"], dtype=float) for u, loc in locations.items()}


def _si_quality_metrics(analyzer: SortingAnalyzer, n_jobs: int) -> pd.DataFrame:
    params = {"nearest_neighbor": {"max_spikes": P["nn_max_spikes"], "n_neighbors": P["nn_num_neighbors"]}}
    analyzer.compute(
        "quality_metrics", metric_names=SI_QUALITY_METRICS, metric_params=params, seed=P["seed"], n_jobs=n_jobs
    )
    metrics = analyzer.get_extension("quality_metrics").get_data()
    return metrics[["isolation_distance", "l_ratio", "d_prime", "nn_hit_rate", "nn_miss_rate"]]


def _silhouette(analyzer: SortingAnalyzer) -> pd.Series:
    """Allen's pairwise silhouette on the principal components, placed in whole-probe channel space."""
    projections, unit_index = analyzer.get_extension("principal_components").get_some_projections(
        channel_ids=None, unit_ids=analyzer.unit_ids
    )
    labels = np.asarray(analyzer.unit_ids)[unit_index]
    return pd.Series(allen_metrics.silhouette_scores(projections, labels), name="silhouette_score")


def _si_template_metrics(analyzer: SortingAnalyzer) -> pd.DataFrame:
    """SpikeInterface template metrics on the peak channel and the neighbourhood, in Allen's units."""
    analyzer.compute("template_metrics", metric_names=list(SI_TEMPLATE_METRICS), include_multi_channel_metrics=True)
    m = analyzer.get_extension("template_metrics").get_data()
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.DataFrame(
            {
                "waveform_duration": m["peak_to_trough_duration"] * 1e3,  # s -> ms
                "halfwidth": m["trough_half_width"] * 1e3,  # s -> ms
                "PT_ratio": m["main_peak_to_trough_ratio"],
                "repolarization_slope": m["repolarization_slope"] * 1e-6,  # uV/s -> V/s
                "recovery_slope": m["recovery_slope"] * 1e-6,  # uV/s -> V/s
                "spread": m["spread"],  # um
                # SpikeInterface fits a velocity in um/ms; Allen stores its inverse in s/m.
                "velocity_above": 1e3 / m["velocity_above"],
                "velocity_below": 1e3 / m["velocity_below"],
            },
            index=m.index,
        )
