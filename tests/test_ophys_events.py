"""L0 event detection: the exact solver against brute force, the Allen wrapper, indicators, filtering."""

import itertools

import numpy as np
import pytest
from scipy.optimize import nnls

from brainobs.populate.ophys.events import (
    default_noise_multiplier,
    detect_events,
    filter_events,
    search_penalty,
)
from brainobs.populate.ophys.indicators import DECAY_TIMES, decay_time_s, gamma, indicator_key
from brainobs.populate.ophys.lzero import solve_l0
from brainobs.populate.scoring.traces import event_f1


def test_gamma_pinned_for_gcamp6f_at_31_hz():
    assert round(gamma(0.347, 31.0), 4) == 0.9112
    assert gamma(decay_time_s("Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt"), 31.0) == gamma(0.347, 31.0)


@pytest.mark.parametrize(
    ("description", "key", "decay"),
    [
        ("Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt", "GCaMP6f", 0.347),
        ("Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai94(TITL-GCaMP6s)/wt", "GCaMP6s", 0.738),
        ("Sst-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt", "Sst;Ai148", 0.464),
        ("Vip-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt", "Vip;Ai148", 0.52),
        ("Pvalb-IRES-Cre/wt;Ai162(TIT2L-GC6s-ICL-tTA2)/wt", "Pvalb;Ai162", 0.715),
        ("Slc32a1-IRES-Cre/wt;TIGRE-jGCaMP8s-IRES-tTA2_A8/wt", "jGCaMP8s", 0.7),
        ("Cux2-CreERT2/wt;Oi3(TIT2L-jGCaMP8m-WPRE-ICL-IRES-tTA2-WPRE)/wt", "jGCaMP8m", 0.4),
        ("GCaMP6f", "GCaMP6f", 0.347),
        ("wt/wt", "unknown", 0.7),
        (None, "unknown", 0.7),
    ],
)
def test_decay_time_lookup(description, key, decay):
    assert indicator_key(description) == key
    assert decay_time_s(description) == decay == DECAY_TIMES[key]


# ---------------------------------------------------------------- exact solver


def brute_force(y: np.ndarray, g: float, lam: float) -> tuple[float, set]:
    """Optimum over every changepoint set: NNLS of the AR(1) basis (c_0 >= 0, jumps >= 0) + lam per jump."""
    t = np.arange(y.size)
    best_cost, best_set = np.inf, set()
    for k in range(y.size):
        for jumps in itertools.combinations(range(1, y.size), k):
            columns = [g**t] + [np.where(t >= tau, g ** np.maximum(t - tau, 0), 0.0) for tau in jumps]
            residual = nnls(np.stack(columns, axis=1), y)[1]
            cost = 0.5 * residual**2 + lam * k
            if cost < best_cost - 1e-12:
                best_cost, best_set = cost, set(jumps)
    return best_cost, best_set


def objective(y: np.ndarray, c: np.ndarray, events: np.ndarray, lam: float) -> float:
    return 0.5 * float(np.sum((y - c) ** 2)) + lam * int(np.count_nonzero(events))


@pytest.mark.parametrize("g", [0.5, 0.8, 0.95])
@pytest.mark.parametrize("lam", [0.02, 0.2, 1.0])
def test_solver_equals_brute_force_optimum(g, lam):
    rng = np.random.default_rng(int(g * 100) + int(lam * 1000))
    for _ in range(6):
        n = int(rng.integers(3, 12))
        jumps = (rng.random(n) < 0.3) * rng.uniform(0.5, 2.0, n)
        true = np.zeros(n)
        for t in range(n):
            true[t] = (g * true[t - 1] if t else 0.0) + jumps[t]
        y = true + 0.3 * rng.standard_normal(n)
        best_cost, best_set = brute_force(y, g, lam)
        c, events = solve_l0(y, g, lam, 0.0)
        assert objective(y, c, events, lam) == pytest.approx(best_cost, rel=1e-9, abs=1e-12)
        assert set(np.flatnonzero(events)) == best_set
        assert np.all(c >= 0) and np.all(c[1:] >= g * c[:-1] - 1e-12)  # feasible
        np.testing.assert_allclose(events[1:], np.where(events[1:] > 0, c[1:] - g * c[:-1], 0.0), atol=1e-12)
        # the default calcium floor (1e-4) changes the optimum only by O(1e-4)
        c_floor, events_floor = solve_l0(y, g, lam)
        assert objective(y, c_floor, events_floor, lam) == pytest.approx(best_cost, abs=2e-3)


def test_solver_recovers_a_long_clean_spike_train_exactly():
    g = gamma(0.347, 31.0)
    n = 3000
    rng = np.random.default_rng(7)
    jumps = (rng.random(n) < 0.01) * rng.uniform(0.5, 1.5, n)
    jumps[0] = 0.0
    y = np.zeros(n)
    for t in range(n):
        y[t] = max(g * y[t - 1], 1e-4) if t else 1e-4
        y[t] += jumps[t]
    c, events = solve_l0(y, g, 0.01)
    np.testing.assert_array_equal(np.flatnonzero(events), np.flatnonzero(jumps))
    np.testing.assert_allclose(c, y, atol=1e-9)


# ---------------------------------------------------------------- Allen wrapper


def synthetic_dff(rng: np.random.Generator, fs: float, seconds: float, decay: float, noise: float = 0.05):
    n = int(fs * seconds)
    g = gamma(decay, fs)
    spikes = rng.random(n) < 0.3 / fs
    c = np.zeros(n)
    for t in range(n):
        c[t] = (g * c[t - 1] if t else 0.0) + spikes[t] * rng.uniform(0.4, 1.5)
    return c + rng.normal(0.0, noise, n), spikes


def test_noise_multiplier_defaults_by_frame_rate():
    assert default_noise_multiplier(31.0) == 2.0
    assert default_noise_multiplier(30.0) == 2.0
    assert default_noise_multiplier(11.0) == 2.6
    assert default_noise_multiplier(9.5) == 2.6
    with pytest.raises(ValueError, match="pass noise_multiplier explicitly"):
        default_noise_multiplier(60.0)
    with pytest.raises(ValueError, match="60.0 Hz"):
        detect_events(np.zeros((1, 100)), 60.0, 0.347)


def test_events_match_true_spikes_and_respect_the_minimum_size():
    rng = np.random.default_rng(11)
    fs = 31.0
    rows = [synthetic_dff(rng, fs, 120.0, 0.347) for _ in range(2)]
    dff = np.array([r[0] for r in rows])
    truth = np.array([r[1] for r in rows])
    result = detect_events(dff, fs, 0.347, n_workers=2)
    score = event_f1(result.events, truth)
    assert score.f1 > 0.9, score
    assert result.gamma == gamma(0.347, fs) and result.noise_multiplier == 2.0
    assert np.all(result.noise_std == pytest.approx(0.05 * 0.95, rel=0.1))
    assert np.all(result.lambdas > 0)
    for events, sigma in zip(result.events, result.noise_std, strict=True):
        assert events[events > 0].min() >= 2.0 * sigma
        assert np.all(events >= 0)


def test_search_penalty_finds_the_smallest_passing_lambda():
    rng = np.random.default_rng(12)
    trace, _ = synthetic_dff(rng, 31.0, 60.0, 0.347)
    g = gamma(0.347, 31.0)
    events, lam = search_penalty(trace, g, 0.1)
    assert events[events > 0].min() >= 0.1
    lower = solve_l0(trace, g, lam - 1.5e-4)[1]
    assert lower[lower > 0].min() < 0.1
    # a threshold no event can reach: keep the last non-empty solution, like Allen's search
    events, lam = search_penalty(trace, g, 100.0)
    assert np.count_nonzero(events) > 0 and events.max() < 100.0
    assert np.count_nonzero(solve_l0(trace, g, lam + 1e-4)[1]) == 0


def test_nan_rows_and_11_hz_default():
    rng = np.random.default_rng(13)
    trace, spikes = synthetic_dff(rng, 11.0, 300.0, 0.738)
    result = detect_events(np.vstack([trace, np.full(trace.size, np.nan)]), 11.0, 0.738)
    assert result.noise_multiplier == 2.6
    assert np.isnan(result.events[1]).all() and np.isnan(result.lambdas[1]) and np.isnan(result.noise_std[1])
    assert np.isnan(result.filtered_events[1]).all()
    assert event_f1(result.events[0], spikes).f1 > 0.8


def test_filtered_events_kernel_is_causal_normalised_half_normal():
    events = np.zeros((1, 60))
    events[0, 10] = 2.0
    filtered = filter_events(events, 31.0)[0]
    assert np.all(filtered[:10] == 0) and np.all(filtered[30:] == 0)
    kernel = np.exp(-0.5 * (np.arange(20) / 2.0) ** 2)
    np.testing.assert_allclose(filtered[10:30], 2.0 * kernel / kernel.sum())
    assert filtered.sum() == pytest.approx(2.0)
    wider = filter_events(events, 62.0)[0]  # the scale is (2/31 s) * fs frames
    kernel = np.exp(-0.5 * (np.arange(20) / 4.0) ** 2)
    np.testing.assert_allclose(wider[10:30], 2.0 * kernel / kernel.sum())
