"""Allen metric definitions on hand-computed spike trains, and where they differ from SpikeInterface's."""

from __future__ import annotations

import numpy as np
import pytest
from spikeinterface.metrics.quality import misc_metrics as si

from brainobs.populate.ephys import allen_metrics as am
from brainobs.populate.ephys import allen_waveforms as aw
from brainobs.populate.ephys.presets import ALLEN_METRIC_PARAMS, MEAN_WAVEFORM, UNIT_FILTER_PRESETS


def test_pinned_parameters():
    p = ALLEN_METRIC_PARAMS
    assert p["isi_threshold_s"] == 0.0015
    assert p["presence_num_bin_edges"] == 100
    assert (p["amplitude_cutoff_num_bins"], p["amplitude_cutoff_smoothing_bins"], p["amplitude_cutoff_max"]) == (
        500,
        3,
        0.5,
    )
    assert (p["pc_num_channels"], p["pc_max_spikes_per_unit"], p["nn_max_spikes"], p["nn_num_neighbors"]) == (
        13,
        500,
        10000,
        4,
    )
    assert (p["drift_interval_s"], p["drift_min_spikes_per_interval"]) == (100.0, 10)
    assert (p["epoch_start_s"], p["silhouette_max_spikes"], p["pc_feature_channels"], p["seed"]) == (
        0.0,
        10000,
        32,
        9999,
    )
    assert MEAN_WAVEFORM == {"samples_before_peak": 20, "num_samples": 82, "max_spikes": 100}


def test_firing_rate_uses_epoch_bounds_not_recording_duration():
    times = np.array([1.0, 2.0, 3.0, 11.0])
    assert am.firing_rate(times, 1.0, 11.0) == pytest.approx(0.4)  # 4 spikes / 10 s
    # SpikeInterface divides by the recording duration (here 20 s)
    assert len(times) / 20.0 == pytest.approx(0.2)
    assert np.isnan(am.firing_rate(times, 5.0, 5.0))


def test_presence_ratio_99_bins_over_100():
    always = 0.05 + 0.1 * np.arange(99)  # one spike in each 0.1 s bin between 0 and 9.9 s
    assert am.presence_ratio(always, 0.0, 9.9) == pytest.approx(0.99)
    # SpikeInterface's low-level function divides by the number of bins: 1.0
    assert si.presence_ratio(always, bin_edges=np.linspace(0.0, 9.9, 100)) == pytest.approx(1.0)
    first_half = always[:50]
    assert am.presence_ratio(first_half, 0.0, 9.9) == pytest.approx(0.50)


def test_isi_violations_hill_rate():
    times = np.array([0.0, 10.0, 10.001, 20.0, 30.0, 30.0005, 40.0, 50.0, 60.0, 100.0])
    rate, count = am.isi_violations(times, 0.0, 100.0)
    # v = 2, N = 10: (2 / (2 * 10 * 0.0015)) / (10 / 100) = 66.667 / 0.1
    assert count == 2
    assert rate == pytest.approx(666.6667, rel=1e-6)
    # min_isi drops 30.0005 first: v = 1, N = 9 -> (1 / (2 * 9 * 0.0009)) / (9 / 100)
    rate, count = am.isi_violations(times, 0.0, 100.0, min_isi_s=0.0006)
    assert (count, rate) == (1, pytest.approx(685.871, rel=1e-5))
    # SpikeInterface normalises by the recording duration (say 200 s): twice the Allen value here
    si_ratio, _, si_count = si.isi_violations([times], total_duration_s=200.0)
    assert si_count == 2 and si_ratio == pytest.approx(1333.333, rel=1e-6)


def test_amplitude_cutoff_truncated_gaussian():
    rng = np.random.default_rng(0)
    full = rng.normal(100.0, 10.0, 200_000)
    assert am.amplitude_cutoff(full) < 0.02
    # cut at mean - 1 sd: 15.9 % of the spikes missing. Allen's estimate is the mirrored tail over the
    # observed spikes, 0.159 / 0.841 = 0.189; SpikeInterface's is missing / (observed + missing) = 0.159.
    cut = full[full > 90.0]
    assert am.amplitude_cutoff(cut) == pytest.approx(0.189, abs=0.02)
    assert si.amplitude_cutoff(cut, num_histogram_bins=500) == pytest.approx(0.159, abs=0.02)
    # more than half missing: capped at 0.5
    assert am.amplitude_cutoff(full[full > 105.0]) == 0.5
    assert np.isnan(am.amplitude_cutoff(np.array([])))
    assert np.isfinite(am.amplitude_cutoff(np.ones(5)))  # numpy histograms a constant in +-0.5, as for Allen


def test_snr_on_hand_made_waveforms():
    waveforms = np.array([[0.0, -10.0, 5.0, 0.0], [0.0, -6.0, 3.0, 0.0]])
    # mean [0, -8, 4, 0]: range 12; residuals +-[0, 2, 1, 0]: std sqrt(10 / 8)
    assert aw.snr(waveforms) == pytest.approx(12 / (2 * np.sqrt(1.25)))
    assert np.isnan(aw.snr(np.zeros((3, 4))))


def test_drift_in_100_s_bins_with_10_spikes():
    times = np.concatenate([np.linspace(1, 99, 12), np.linspace(101, 199, 12), np.linspace(201, 299, 5)])
    times = np.concatenate([times, np.linspace(301, 399, 12), [100.0]])
    depths = np.concatenate([np.full(12, 10.0), np.full(12, 30.0), np.full(5, 90.0), np.full(12, 20.0), [500.0]])
    # medians 10, 30, (5 spikes: skipped), 20; the spike exactly on a bin edge belongs to no bin
    max_drift, cumulative = am.drift_metrics(times, depths, 0.0, 399.0)
    assert max_drift == 20.0
    assert cumulative == 20.0  # |30 - 10|; changes next to the skipped bin are not counted
    # no interval with 10 spikes: max_drift NaN, cumulative_drift 0 (Allen's nansum of nothing)
    max_drift, cumulative = am.drift_metrics(times[:5], depths[:5], 0.0, 399.0)
    assert np.isnan(max_drift) and cumulative == 0.0


def _one_channel_pcs(values):
    """pc_features (spikes, 1 PC, 1 channel) on channel 0 and pc_feature_ind for as many templates."""
    return np.asarray(values, dtype=np.float32)[:, None, None], np.zeros((3, 1), dtype=np.uint32)


def test_silhouette_is_worst_pair():
    pcs, ind = _one_channel_pcs([0.0, 2.0, 10.0, 12.0, 4.0, 6.0])
    labels = np.array([0, 0, 1, 1, 2, 2])
    scores = am.silhouette_scores(labels, labels, pcs, ind, np.random.RandomState(0))
    # pairs: 0-1 0.798, 0-2 0.467, 1-2 0.657 (worked by hand from the silhouette definition)
    assert scores[0] == pytest.approx((0.6 + 1 / 3) / 2, abs=1e-3)
    assert scores[1] == pytest.approx((0.6 + 5 / 7) / 2, abs=1e-3)
    assert scores[2] == pytest.approx(scores[0])
    two = am.silhouette_scores(labels[1:3], labels[1:3], pcs[1:3], ind, np.random.RandomState(0))
    assert np.isnan(two).all()  # one spike per unit: no pair with more than 2 spikes


def test_silhouette_equals_scikit_learn_pair_by_pair():
    """Distances within a cluster computed once and dot products over shared PC columns give scikit-learn's
    silhouette_score of every pair: units on distant channels, one unit of a single spike, one not sampled."""
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(3)
    n_units, n_channels = 7, 40
    templates = np.repeat(np.arange(n_units), [30, 25, 40, 1, 20, 35, 1])  # seed 3 samples unit 3, not unit 6
    ind = np.stack([(np.arange(8) + 5 * t) % n_channels for t in range(n_units)]).astype(np.uint32)
    pcs = rng.normal(size=(templates.size, 3, 8)).astype(np.float32) + templates[:, None, None]
    scores = am.silhouette_scores(templates, templates, pcs, ind, np.random.RandomState(3), max_spikes=120)

    picked = np.random.RandomState(3).permutation(templates.size)[:120]
    space = np.zeros((picked.size, n_channels * 3))
    for pc in range(3):
        space[np.arange(picked.size)[:, None], ind[templates[picked]].astype(int) + n_channels * pc] = pcs[picked, pc]
    labels = templates[picked]
    assert (labels == 3).sum() == 1 and not (labels == 6).any()
    expected = np.full(n_units, np.inf)
    for a in range(n_units):
        for b in range(a + 1, n_units):
            pair = np.isin(labels, (a, b))
            if pair.sum() > 2 and len(np.unique(labels[pair])) > 1:
                score = silhouette_score(space[pair], labels[pair])
                expected[a], expected[b] = min(expected[a], score), min(expected[b], score)
    expected[np.isinf(expected)] = np.nan  # unit 6: no pair
    np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-14)


def test_nearest_neighbours_count_three_not_four():
    """Allen's n_neighbors=4 includes the spike itself: 3 neighbours. A unit of 4 tight spikes next to 4
    far ones: each spike's 3 neighbours are its own unit's (hit rate 1); with 4 true neighbours one would
    belong to the other unit."""
    pcs = np.array([[0.0], [0.1], [0.2], [0.3], [5.0], [5.1], [5.2], [5.3]])
    labels = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    assert am.nearest_neighbor_rates(pcs, labels, 1, 10000, 4) == (1.0, 0.0)
    hit, _ = am.nearest_neighbor_rates(pcs, labels, 1, 10000, 5)
    assert hit == pytest.approx(0.75)


def test_spike_depths_weight_channels_by_positive_first_pc():
    pcs = np.zeros((2, 3, 3), dtype=np.float32)
    pcs[0, 0] = [1.0, 1.0, -5.0]  # negative PC1 does not count
    pcs[1, 0] = [0.0, 2.0, 0.0]
    ind = np.array([[4, 5, 6]], dtype=np.uint32)
    np.testing.assert_allclose(am.spike_depths(np.array([0, 0]), pcs, ind), [45.0, 50.0])


def test_release_presets_drop_noise_units():
    for name, conditions in UNIT_FILTER_PRESETS.items():
        assert ("quality", "==", "good") in conditions, name


def test_quality_metrics_refuse_mismatched_inputs():
    times, clusters = np.array([0.1, 0.2, 0.3]), np.array([0, 0, 1])
    pcs, ind = np.zeros((3, 3, 4), dtype=np.float32), np.zeros((2, 4), dtype=np.uint32)
    with pytest.raises(ValueError, match="amplitudes has 2 rows, spike_times 3"):
        am.quality_metrics(times, clusters, clusters, np.ones(2), pcs, ind)
    with pytest.raises(ValueError, match="as many channels as pc_feature_ind"):
        am.quality_metrics(times, clusters, clusters, np.ones(3), pcs, np.zeros((2, 5), dtype=np.uint32))
    with pytest.raises(ValueError, match="template 1 has no row in pc_feature_ind"):
        am.quality_metrics(times, clusters, clusters, np.ones(3), pcs, ind[:1])
