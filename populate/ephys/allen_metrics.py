"""Allen's unit quality metrics (ecephys_spike_sorting quality_metrics, docs/methods.md), on
Kilosort-layout inputs: spike times (s), cluster and template per spike, amplitudes, pc_features
(spikes x PCs x channels) and pc_feature_ind (templates x channels, each template's channels ordered by
distance from its peak).

`quality_metrics` reproduces `calculate_metrics` for one epoch: spikes at or before the epoch start are
dropped (Allen's complete_session epoch is (0, inf), so a spike at t = 0 is not counted); `min_time` and
`max_time` are the first and last spike of ALL units in the epoch. The random draws follow Allen's order
from one legacy `RandomState(seed)`, so subsampled results equal Allen's too.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.distance import cdist
from scipy.stats import chi2
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.neighbors import NearestNeighbors

from brainobs.populate.ephys.presets import ALLEN_METRIC_PARAMS as P

QUALITY_COLUMNS = (
    "peak_channel",
    "firing_rate",
    "presence_ratio",
    "isi_violations",
    "isi_violations_corrected",
    "amplitude_cutoff",
    "isolation_distance",
    "l_ratio",
    "d_prime",
    "nn_hit_rate",
    "nn_miss_rate",
    "silhouette_score",
    "max_drift",
    "cumulative_drift",
)
PC_METRICS = ("isolation_distance", "l_ratio", "d_prime", "nn_hit_rate", "nn_miss_rate")


def firing_rate(spike_times: np.ndarray, min_time: float, max_time: float) -> float:
    """Spikes per second between the epoch's first and last spike (NaN for a zero-length epoch)."""
    duration = max_time - min_time
    return float(len(spike_times) / duration) if duration > 0 else float("nan")


def presence_ratio(
    spike_times: np.ndarray, min_time: float, max_time: float, num_bin_edges: int = P["presence_num_bin_edges"]
) -> float:
    """Fraction of the num_bin_edges - 1 (99) equal bins between min and max time that hold a spike, divided
    by num_bin_edges (100), so a unit present throughout scores 0.99."""
    counts, _ = np.histogram(spike_times, np.linspace(min_time, max_time, num_bin_edges))
    return float(np.count_nonzero(counts) / num_bin_edges)


def _without_duplicates(spike_times: np.ndarray, min_isi_s: float) -> np.ndarray:
    train = np.sort(np.asarray(spike_times, dtype=float))
    return np.delete(train, np.flatnonzero(np.diff(train) <= min_isi_s) + 1)


def isi_violations(
    spike_times: np.ndarray,
    min_time: float,
    max_time: float,
    isi_threshold_s: float = P["isi_threshold_s"],
    min_isi_s: float = P["min_isi_s"],
) -> tuple[float, int]:
    """Hill et al. (2011) contamination rate and the violation count.

    Spikes within min_isi_s of the previous one are dropped first. rate = (v / (2 N (threshold - min_isi)))
    / (N / (max_time - min_time)), with v the ISIs below threshold; it can exceed 1.
    """
    train = _without_duplicates(spike_times, min_isi_s)
    n = train.size
    violations = int(np.count_nonzero(np.diff(train) < isi_threshold_s))
    if n == 0 or max_time <= min_time:
        return float("nan"), violations
    violation_rate = violations / (2 * n * (isi_threshold_s - min_isi_s))
    return float(violation_rate / firing_rate(train, min_time, max_time)), violations


def isi_violations_corrected(
    spike_times: np.ndarray,
    min_time: float,
    max_time: float,
    isi_threshold_s: float = P["isi_threshold_s"],
    min_isi_s: float = P["min_isi_s"],
) -> float:
    """Llobet et al. (2022) contamination for Poisson contamination: 1 - sqrt(1 - v T / (N^2 (thr - min_isi))),
    NaN where the square root's argument is negative (above about 50% contamination) or N = 0."""
    train = _without_duplicates(spike_times, min_isi_s)
    n = train.size
    if n == 0:
        return float("nan")
    violations = np.count_nonzero(np.diff(train) < isi_threshold_s)
    with np.errstate(invalid="ignore"):
        return float(1 - np.sqrt(1 - violations * (max_time - min_time) / (n**2 * (isi_threshold_s - min_isi_s))))


def amplitude_cutoff(
    amplitudes: np.ndarray,
    num_bins: int = P["amplitude_cutoff_num_bins"],
    smoothing_bins: float = P["amplitude_cutoff_smoothing_bins"],
    cap: float = P["amplitude_cutoff_max"],
) -> float:
    """Estimated fraction of spikes missed below the detection threshold (Hill et al. 2011).

    Density histogram of the amplitudes in num_bins bins, Gaussian-smoothed (sigma in bins); from the peak
    upwards, the first bin whose density is closest to the lowest-amplitude bin's marks the mirror of the
    cut; the mass from it upwards (times bin width) is the missing fraction, capped at `cap`.
    """
    amplitudes = np.asarray(amplitudes, dtype=float)
    if amplitudes.size == 0:
        return float("nan")
    density, edges = np.histogram(amplitudes, num_bins, density=True)
    pdf = gaussian_filter1d(density, smoothing_bins)
    peak = int(np.argmax(pdf))
    mirror = peak + int(np.argmin(np.abs(pdf[peak:] - pdf[0])))
    bin_width = float(np.mean(np.diff(edges[:-1])))
    return float(min(pdf[mirror:].sum() * bin_width, cap))


def spike_depths(spike_templates: np.ndarray, pc_features: np.ndarray, pc_feature_ind: np.ndarray) -> np.ndarray:
    """Each spike's depth: the channel indices of its template weighted by max(PC1, 0)^2, times 10 (um per
    channel row, Allen's get_spike_depths). NaN for a spike with no positive first PC."""
    power = np.clip(np.asarray(pc_features)[:, 0, :], 0, None) ** 2
    channels = np.asarray(pc_feature_ind)[np.asarray(spike_templates)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(channels * power, 1) / np.sum(power, 1) * 10


def drift_metrics(
    spike_times: np.ndarray,
    depths: np.ndarray,
    min_time: float,
    max_time: float,
    interval_s: float = P["drift_interval_s"],
    min_spikes: int = P["drift_min_spikes_per_interval"],
) -> tuple[float, float]:
    """(max_drift, cumulative_drift) in the units of `depths` (um), rounded to 0.01.

    Median depth in consecutive interval_s bins starting at min_time (spikes strictly inside a bin), bins
    with fewer than min_spikes spikes NaN; max_drift = range of the medians (NaN when every bin is NaN),
    cumulative_drift = sum of the absolute changes between adjacent bins (a change next to a NaN bin is
    not counted; 0 when every bin is NaN), as Allen.
    """
    spike_times, depths = np.asarray(spike_times, dtype=float), np.asarray(depths, dtype=float)
    medians = []
    for start in np.arange(min_time, max_time, interval_s):
        inside = (spike_times > start) & (spike_times < start + interval_s)
        medians.append(np.median(depths[inside]) if inside.sum() >= min_spikes else np.nan)
    medians = np.asarray(medians)
    max_drift = np.nanmax(medians) - np.nanmin(medians) if np.isfinite(medians).any() else np.nan
    cumulative = np.nansum(np.abs(np.diff(medians)))
    return float(np.around(max_drift, 2)), float(np.around(cumulative, 2))


def cluster_peak_channels(
    spike_clusters: np.ndarray, spike_templates: np.ndarray, pc_features: np.ndarray, pc_feature_ind: np.ndarray
) -> np.ndarray:
    """Per cluster (sorted ids): the median over its templates of each template's peak channel, the channel
    of pc_feature_ind with the largest mean first PC; cast to uint16 as Allen."""
    template_ids = np.unique(spike_templates)
    template_peaks = np.zeros(len(template_ids), dtype=np.uint16)
    for i, template in enumerate(template_ids):
        mean_pc1 = np.mean(pc_features[spike_templates == template, 0, :], 0)
        template_peaks[i] = pc_feature_ind[template, np.argmax(mean_pc1)]
    cluster_ids = np.unique(spike_clusters)
    peaks = np.zeros(len(cluster_ids), dtype=np.uint16)
    for i, cluster in enumerate(cluster_ids):
        templates = np.unique(spike_templates[spike_clusters == cluster])
        peaks[i] = np.median(template_peaks[np.isin(template_ids, templates)])
    return peaks


def _unit_pcs(rng, unit, spike_clusters, spike_templates, pc_feature_ind, pc_features, channels, subsample):
    """PCs (spikes x PCs x channels) of up to `subsample` random spikes of one unit on `channels`; None when
    one of its templates lacks one of the channels (Allen's get_unit_pcs)."""
    spikes = rng.permutation(np.flatnonzero(spike_clusters == unit))[:subsample]
    blocks = []
    for template in np.unique(spike_templates[spikes]):
        rows = spikes[spike_templates[spikes] == template]
        template_channels = pc_feature_ind[template, :]
        if not np.isin(channels, template_channels).all():
            return None
        columns = [int(np.flatnonzero(template_channels == c)[0]) for c in channels]
        blocks.append(pc_features[rows][:, :, columns])
    return np.concatenate(blocks) if blocks else None


def mahalanobis_metrics(pcs: np.ndarray, labels: np.ndarray, unit) -> tuple[float, float]:
    """(isolation_distance, l_ratio) of `unit` among the rows of pcs (Schmitzer-Torbert et al. 2005)."""
    own, other = pcs[labels == unit], pcs[labels != unit]
    mean = np.mean(own, 0)[None]
    try:
        inverse = np.linalg.inv(np.cov(own.T))
    except np.linalg.LinAlgError:
        return float("nan"), float("nan")
    d_other = np.sort(cdist(mean, other, "mahalanobis", VI=inverse)[0])
    d_own = cdist(mean, own, "mahalanobis", VI=inverse)[0]
    n = min(len(own), len(other))
    if n < 2:
        return float("nan"), float("nan")
    l_ratio = np.sum(1 - chi2.cdf(d_other**2, own.shape[1])) / d_own.shape[0]
    return float(d_other[n - 1] ** 2), float(l_ratio)


def lda_d_prime(pcs: np.ndarray, labels: np.ndarray, unit) -> float:
    """d' between `unit` and the rest along sklearn's one-component LDA projection (Hill et al. 2011)."""
    own = labels == unit
    projected = LinearDiscriminantAnalysis(n_components=1).fit_transform(pcs, own)
    a, b = projected[own], projected[~own]
    return float((np.mean(a) - np.mean(b)) / np.sqrt(0.5 * (np.std(a) ** 2 + np.std(b) ** 2)))


def nearest_neighbor_rates(
    pcs: np.ndarray, labels: np.ndarray, unit, max_spikes: int, n_neighbors: int
) -> tuple[float, float]:
    """(hit_rate, miss_rate) (Chung et al. 2017) as Allen: `n_neighbors` includes the spike itself, which is
    dropped, so n_neighbors=4 counts 3 neighbours; above max_spikes rows, every (total/max)-th row is kept."""
    own = labels == unit
    x = np.concatenate((pcs[own], pcs[~own]), 0)
    n = int(own.sum())
    ratio = max_spikes / x.shape[0]
    if ratio < 1:
        x = x[np.arange(0, x.shape[0] - 1, 1 / ratio).astype(int)]
        n = int(n * ratio)
    _, neighbors = NearestNeighbors(n_neighbors=n_neighbors, algorithm="ball_tree").fit(x).kneighbors(x)
    return float(np.mean(neighbors[:n, 1:] < n)), float(np.mean(neighbors[n:, 1:] < n))


def pc_metrics(
    spike_clusters: np.ndarray,
    spike_templates: np.ndarray,
    pc_features: np.ndarray,
    pc_feature_ind: np.ndarray,
    peaks: np.ndarray,
    rng: np.random.RandomState,
    params: dict = P,
) -> dict[str, np.ndarray]:
    """PC_METRICS per cluster (sorted ids), each on the spikes of the clusters whose peak lies within
    +-pc_num_channels//2 of this cluster's peak (clipped to the channels), up to pc_max_spikes_per_unit of this
    cluster and proportionally fewer of the others. NaN unless there are more than 10 spikes, another unit
    and more than 20 of this unit's."""
    half = params["pc_num_channels"] // 2
    top = int(np.max(pc_feature_ind))
    cluster_ids = np.unique(spike_clusters)
    counts = {c: int(np.sum(spike_clusters == c)) for c in cluster_ids}
    out = {name: np.full(len(cluster_ids), np.nan) for name in PC_METRICS}
    for i, cluster in enumerate(cluster_ids):
        peak = int(peaks[i])
        channels = np.arange(peak - min(peak, half), peak + (top - peak if peak + half > top else half) + 1)
        neighbours = cluster_ids[np.isin(peaks, channels)]
        limit = params["pc_max_spikes_per_unit"]
        blocks, labels = [], []
        for other in neighbours:
            subsample = int(counts[other] / counts[cluster] * limit) if counts[cluster] > limit else counts[other]
            pcs = _unit_pcs(
                rng, other, spike_clusters, spike_templates, pc_feature_ind, pc_features, channels, subsample
            )
            if pcs is not None:
                blocks.append(pcs.astype(np.float64))
                labels.append(np.full(len(pcs), other, dtype=float))
        if not blocks:
            continue
        pcs = np.concatenate(blocks).reshape(-1, pc_features.shape[1] * channels.size)
        labels = np.concatenate(labels)
        own = labels == cluster
        if pcs.shape[0] > 10 and not own.all() and own.sum() > 20:
            out["isolation_distance"][i], out["l_ratio"][i] = mahalanobis_metrics(pcs, labels, cluster)
            out["d_prime"][i] = lda_d_prime(pcs, labels, cluster)
            out["nn_hit_rate"][i], out["nn_miss_rate"][i] = nearest_neighbor_rates(
                pcs, labels, cluster, params["nn_max_spikes"], params["nn_num_neighbors"]
            )
    return out


def silhouette_scores(
    spike_clusters: np.ndarray,
    spike_templates: np.ndarray,
    pc_features: np.ndarray,
    pc_feature_ind: np.ndarray,
    rng: np.random.RandomState,
    max_spikes: int = P["silhouette_max_spikes"],
) -> np.ndarray:
    """Per cluster (sorted ids): its worst silhouette score against any other cluster (NaN without a pair).

    Up to max_spikes random spikes are placed in whole-probe PC space (channel + n_channels * pc); each pair
    of clusters is scored on its spikes alone, as scikit-learn's silhouette_score of the pair (pairs with at
    most 2 spikes or one label skipped). Each cluster's distances within itself are computed once and reused
    for all its pairs, and a pair's dot products run over the PC columns both clusters use."""
    n_spikes = len(spike_clusters)
    picked = rng.permutation(n_spikes)[:max_spikes]
    n_pcs, n_channels = pc_features.shape[1], int(np.max(pc_feature_ind)) + 1
    space = np.zeros((max_spikes, n_channels * n_pcs))
    rows = np.arange(len(picked))[:, None]
    channels = pc_feature_ind[spike_templates[picked]].astype(np.int64)
    for pc in range(n_pcs):
        space[rows, channels + n_channels * pc] = pc_features[picked, pc, :]
    labels = spike_clusters[picked]
    space = space[: len(labels)]
    cluster_ids = np.unique(spike_clusters)
    members = [np.flatnonzero(labels == cluster) for cluster in cluster_ids]
    squared = np.einsum("ij,ij->i", space, space)
    used = [np.flatnonzero((space[rows] != 0).any(axis=0)) for rows in members]
    within = [
        _distances(space, squared, rows, rows, dims).sum(axis=1) for rows, dims in zip(members, used, strict=True)
    ]
    scores = np.full((len(cluster_ids), len(cluster_ids)), np.nan)
    for a in range(len(cluster_ids)):
        for b in range(a + 1, len(cluster_ids)):
            rows_a, rows_b = members[a], members[b]
            if rows_a.size and rows_b.size and rows_a.size + rows_b.size > 2:
                across = _distances(space, squared, rows_a, rows_b, np.intersect1d(used[a], used[b]))
                samples = np.concatenate(
                    [
                        _silhouette_samples(within[a], rows_a.size, across.sum(axis=1), rows_b.size),
                        _silhouette_samples(within[b], rows_b.size, across.sum(axis=0), rows_a.size),
                    ]
                )
                scores[a, b] = samples.mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.array(
            [np.nanmin([np.nanmin(scores[:, i]), np.nanmin(scores[i, :])]) for i in range(len(cluster_ids))]
        )


def _distances(
    space: np.ndarray, squared: np.ndarray, rows: np.ndarray, cols: np.ndarray, dims: np.ndarray
) -> np.ndarray:
    """Euclidean distances between spikes ``rows`` and ``cols`` of ``space``, computed as scikit-learn's
    euclidean_distances does (-2 x.y + |x|^2 + |y|^2, clipped at 0, a spike's distance to itself 0), with the
    dot products over ``dims``, the only columns where both sides may be non-zero."""
    d2 = -2 * (space[np.ix_(rows, dims)] @ space[np.ix_(cols, dims)].T)
    d2 += squared[rows][:, None]
    d2 += squared[cols][None, :]
    np.maximum(d2, 0, out=d2)
    if rows is cols:
        np.fill_diagonal(d2, 0)
    return np.sqrt(d2)


def _silhouette_samples(within: np.ndarray, n_own: int, across: np.ndarray, n_other: int) -> np.ndarray:
    """scikit-learn's per-spike silhouette for two clusters: (b - a) / max(a, b), with a the mean distance to
    the spike's own cluster (itself left out), b to the other; 0 for a cluster of one spike."""
    with np.errstate(divide="ignore", invalid="ignore"):
        own = within / (n_own - 1)
        other = across / n_other
        return np.nan_to_num((other - own) / np.maximum(own, other))


TRAIN_COLUMNS = (
    "firing_rate",
    "presence_ratio",
    "isi_violations",
    "isi_violations_corrected",
    "amplitude_cutoff",
    "max_drift",
    "cumulative_drift",
)
PC_COLUMNS = ("peak_channel", *PC_METRICS, "silhouette_score")


def _empty(cluster_ids: np.ndarray, columns) -> pd.DataFrame:
    return pd.DataFrame(index=pd.Index(cluster_ids, name="cluster_id"), columns=list(columns), dtype=float)


def spike_train_metrics(
    spike_times: np.ndarray, spike_clusters: np.ndarray, amplitudes: np.ndarray, depths: np.ndarray, params: dict = P
) -> pd.DataFrame:
    """TRAIN_COLUMNS per cluster id (sorted), on the spikes after params["epoch_start_s"]; depths (one per
    spike) feed the drift metrics. Bounds are the first and last epoch spike of all clusters."""
    spike_times, spike_clusters = np.asarray(spike_times, dtype=float), np.asarray(spike_clusters)
    amplitudes, depths = np.asarray(amplitudes, dtype=float), np.asarray(depths, dtype=float)
    _same_length("spike_times", spike_times, spike_clusters=spike_clusters, amplitudes=amplitudes, depths=depths)
    table = _empty(np.unique(spike_clusters), TRAIN_COLUMNS)
    epoch = spike_times > params["epoch_start_s"]
    times, clusters, amplitudes, depths = spike_times[epoch], spike_clusters[epoch], amplitudes[epoch], depths[epoch]
    if times.size == 0:
        return table
    t0, t1 = float(times.min()), float(times.max())
    threshold, min_isi = params["isi_threshold_s"], params["min_isi_s"]
    for cluster in np.unique(clusters):
        own = clusters == cluster
        train = times[own]
        table.loc[cluster, "firing_rate"] = firing_rate(train, t0, t1)
        table.loc[cluster, "presence_ratio"] = presence_ratio(train, t0, t1)
        table.loc[cluster, "isi_violations"] = isi_violations(train, t0, t1, threshold, min_isi)[0]
        table.loc[cluster, "isi_violations_corrected"] = isi_violations_corrected(train, t0, t1, threshold, min_isi)
        table.loc[cluster, "amplitude_cutoff"] = amplitude_cutoff(amplitudes[own])
        table.loc[cluster, ["max_drift", "cumulative_drift"]] = drift_metrics(
            train, depths[own], t0, t1, params["drift_interval_s"], params["drift_min_spikes_per_interval"]
        )
    return table


def pc_feature_metrics(
    spike_times: np.ndarray,
    spike_clusters: np.ndarray,
    spike_templates: np.ndarray,
    pc_features: np.ndarray,
    pc_feature_ind: np.ndarray,
    params: dict = P,
    *,
    peak_channels: np.ndarray | None = None,
) -> pd.DataFrame:
    """PC_COLUMNS per cluster id (sorted), on the spikes after params["epoch_start_s"]: peak channel, the
    PC metrics, then the silhouette score, drawing from one RandomState(params["seed"]) in Allen's order.

    peak_channels (one per sorted cluster id) replaces Allen's peak from the largest mean first PC, which
    only holds for Kilosort's template PCs."""
    spike_times, spike_clusters = np.asarray(spike_times, dtype=float), np.asarray(spike_clusters)
    spike_templates, pc_features = np.asarray(spike_templates), np.asarray(pc_features)
    pc_feature_ind = np.asarray(pc_feature_ind)
    _check_pc_inputs(spike_times, spike_clusters, spike_templates, pc_features, pc_feature_ind)
    table = _empty(np.unique(spike_clusters), PC_COLUMNS)
    epoch = spike_times > params["epoch_start_s"]
    clusters, templates, pcs = spike_clusters[epoch], spike_templates[epoch], pc_features[epoch]
    if clusters.size == 0:
        return table
    rng = np.random.RandomState(params["seed"])
    if peak_channels is None:
        peaks = cluster_peak_channels(clusters, templates, pcs, pc_feature_ind)
    else:
        if len(peak_channels) != len(table):
            raise ValueError(f"quality metrics: {len(peak_channels)} peak channels for {len(table)} clusters")
        peaks = np.asarray(peak_channels, dtype=np.uint16)[np.isin(table.index, clusters)]
    found = pc_metrics(clusters, templates, pcs, pc_feature_ind, peaks, rng, params)
    found["silhouette_score"] = silhouette_scores(
        clusters, templates, pcs, pc_feature_ind, rng, params["silhouette_max_spikes"]
    )
    found["peak_channel"] = peaks
    for name, values in found.items():
        table.loc[np.unique(clusters), name] = values
    return table


def _check_pc_inputs(spike_times, spike_clusters, spike_templates, pc_features, pc_feature_ind) -> None:
    _same_length("spike_times", spike_times, spike_clusters=spike_clusters, spike_templates=spike_templates,
                 pc_features=pc_features)  # fmt: skip
    if pc_features.ndim != 3 or pc_feature_ind.ndim != 2 or pc_feature_ind.shape[1] != pc_features.shape[2]:
        raise ValueError(
            f"quality metrics: pc_features {pc_features.shape} must be spikes x PCs x channels with as many "
            f"channels as pc_feature_ind {pc_feature_ind.shape} (templates x channels)"
        )
    if spike_templates.size and spike_templates.max() >= len(pc_feature_ind):
        raise ValueError(f"quality metrics: template {spike_templates.max()} has no row in pc_feature_ind")


def _same_length(name: str, reference: np.ndarray, **arrays: np.ndarray) -> None:
    for other, array in arrays.items():
        if len(array) != len(reference):
            raise ValueError(f"quality metrics: {other} has {len(array)} rows, {name} {len(reference)}")


def quality_metrics(
    spike_times: np.ndarray,
    spike_clusters: np.ndarray,
    spike_templates: np.ndarray,
    amplitudes: np.ndarray,
    pc_features: np.ndarray,
    pc_feature_ind: np.ndarray,
    *,
    depths: np.ndarray | None = None,
    params: dict = P,
) -> pd.DataFrame:
    """QUALITY_COLUMNS, one row per cluster id (index cluster_id, sorted), as Allen's calculate_metrics.

    depths: each spike's depth for the drift metrics; default spike_depths() from the PCs (Allen's).
    """
    if depths is None:
        arrays = [np.asarray(a) for a in (spike_times, spike_clusters, spike_templates, pc_features, pc_feature_ind)]
        _check_pc_inputs(*arrays)
        depths = spike_depths(spike_templates, pc_features, pc_feature_ind)
    pcs = pc_feature_metrics(spike_times, spike_clusters, spike_templates, pc_features, pc_feature_ind, params)
    train = spike_train_metrics(spike_times, spike_clusters, amplitudes, depths, params)
    return pcs.join(train)[list(QUALITY_COLUMNS)]
