"""L0 event detection: the exact solver against brute force, the Allen wrapper, indicators, filtering."""

import itertools

import numpy as np
import pytest
from scipy.optimize import nnls

from brainobs.ingest.synthetic.scoring.traces import event_f1
from brainobs.populate.ophys.events import (
    default_noise_multiplier,
    detect_events,
    filter_events,
    l0_events,
    search_penalty,
    trace_noise_estimate,
)
from brainobs.populate.ophys.indicators import ALLEN_DECAY_TIMES, UnknownGenotypeError, decay_time_s, gamma
from brainobs.populate.ophys.lzero import solve_l0
from brainobs.populate.ophys.lzero_fast import estimate_spikes, event_magnitudes


def test_gamma_pinned_for_gcamp6f_at_31_hz():
    assert round(gamma(0.347, 31.0), 4) == 0.9112
    assert gamma(0.347, 31.0) == pytest.approx(np.exp(-1 / (0.347 * 31.0)), rel=1e-14)
    assert gamma(decay_time_s("Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt"), 31.0) == gamma(0.347, 31.0)


@pytest.mark.parametrize(
    ("genotype", "decay"),
    [
        ("Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt", 0.347),
        ("Rbp4-Cre_KL100/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/Ai93(TITL-GCaMP6f)", 0.495),  # homozygous
        ("Rbp4-Cre_KL100/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt", 0.404),
        ("Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai94(TITL-GCaMP6s)/wt", 0.738),
        ("Vip-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt", 0.52),
        ("Cux2-CreERT2/wt;Oi3(TIT2L-jGCaMP8m-WPRE-ICL-IRES-tTA2-WPRE)/wt", 0.4),
        ("wt/wt", 0.7),
    ],
)
def test_decay_time_is_allens_exact_genotype_entry(genotype, decay):
    assert decay_time_s(genotype) == decay == ALLEN_DECAY_TIMES[genotype]
    assert decay_time_s(genotype, 1.5) == decay  # a genotype in the table overrides an explicit value (Allen)


def test_decay_table_has_allens_41_keys_and_no_substring_rules():
    assert len(ALLEN_DECAY_TIMES) == 41
    for near_miss in ("GCaMP6f", "Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)", "wt/wt "):
        with pytest.raises(UnknownGenotypeError, match="not in Allen's decay-time table"):
            decay_time_s(near_miss)
    assert decay_time_s("Foo-Cre/wt;Ai999/wt", 0.5) == 0.5  # unknown genotype, explicit decay time
    assert decay_time_s("", 0.5) == decay_time_s(None, 0.5) == 0.5
    with pytest.raises(UnknownGenotypeError, match="no full genotype and no decay time"):
        decay_time_s(None)
    with pytest.raises(ValueError, match="must be positive"):
        decay_time_s(None, 0.0)


def test_synthetic_lines_use_allens_genotypes():
    from brainobs.ingest.synthetic.presets import INDICATOR_LINES

    for line in INDICATOR_LINES.values():
        assert decay_time_s(line.full_genotype) == line.decay_time_s


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


def _clean_spike_train(n: int = 3000) -> tuple[float, np.ndarray, np.ndarray]:
    """(gamma, trace, jumps): a noiseless calcium trace with spikes of 0.5-1.5 on 1% of frames, floored at 1e-4."""
    g = gamma(0.347, 31.0)
    rng = np.random.default_rng(7)
    jumps = (rng.random(n) < 0.01) * rng.uniform(0.5, 1.5, n)
    jumps[0] = 0.0
    y = np.zeros(n)
    for t in range(n):
        y[t] = max(g * y[t - 1], 1e-4) if t else 1e-4
        y[t] += jumps[t]
    return g, y, jumps


def test_solver_recovers_a_long_clean_spike_train_exactly():
    g, y, jumps = _clean_spike_train()
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
    assert default_noise_multiplier(16.0) == 2.6  # both rules hold; Allen tests ~11 Hz first
    with pytest.raises(ValueError, match="set events_noise_multiplier explicitly"):
        default_noise_multiplier(60.0)
    with pytest.raises(ValueError, match="60.0 Hz"):
        detect_events(np.zeros((1, 100)), 60.0, 0.347)


def test_noise_estimate_uses_scipys_normal_mad():
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 0.1, 5000)
    assert trace_noise_estimate(x, 31) == pytest.approx(0.1, rel=0.05)
    assert np.isnan(trace_noise_estimate(np.ones(100), 31))  # nothing left after the positive cut


@pytest.mark.parametrize("solver", ["fastlzero", "exact"])
def test_events_match_true_spikes_and_respect_the_minimum_size(solver):
    rng = np.random.default_rng(11)
    fs = 31.0
    rows = [synthetic_dff(rng, fs, 120.0, 0.347) for _ in range(2)]
    dff = np.array([r[0] for r in rows])
    truth = np.array([r[1] for r in rows])
    result = detect_events(dff, fs, 0.347, n_workers=2, solver=solver)
    score = event_f1(result.events, truth)
    assert score.f1 > 0.9, score
    assert result.gamma == gamma(0.347, fs) and result.noise_multiplier == 2.0
    assert result.halflife == pytest.approx(np.log(2) * 0.347)
    assert np.all(result.noise_std == pytest.approx(0.05, rel=0.1))
    assert np.all(result.lambdas > 0)
    for events, sigma in zip(result.events, result.noise_std, strict=True):
        assert events[events > 0].min() >= 2.0 * sigma
        assert np.all(events >= 0)


def test_unknown_solver_is_refused():
    with pytest.raises(ValueError, match="unknown L0 solver 'cvx'"):
        detect_events(np.zeros((1, 100)), 31.0, 0.347, solver="cvx")


def test_bracket_search_lands_on_allens_grid_and_keeps_the_last_nonempty_solution():
    rng = np.random.default_rng(12)
    trace, _ = synthetic_dff(rng, 31.0, 60.0, 0.347)
    g = gamma(0.347, 31.0)

    def solve(p):
        return l0_events(trace, g, p)

    events, lam = search_penalty(trace, 0.1, solve)
    assert events[events > 0].min() >= 0.1
    assert round(lam / 1e-4) * 1e-4 == pytest.approx(lam, abs=1e-12)  # a multiple of the finest step
    lower = solve(lam - 1e-4)
    assert lower[lower > 0].min() < 0.1  # one grid step less is too small
    # a threshold no event reaches: the last non-empty solution, one step below where events vanish
    events, lam = search_penalty(trace, 100.0, solve)
    assert np.count_nonzero(events) > 0 and events.max() < 100.0
    assert np.count_nonzero(solve(lam + 1e-4)) == 0
    # no event at any penalty (Allen's search never ends): no events, NaN penalty
    events, lam = search_penalty(np.zeros(50), 0.1, lambda p: np.zeros(50))
    assert np.isnan(lam) and not events.any()


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


# ---------------------------------------------------------------- FastLZero (Allen's solver)


def published_segment_fit(y: np.ndarray, g: float, eps: float) -> np.ndarray:
    """FastLZero's refit of one segment, written out directly: every prefix length, residuals summed."""
    n = y.size
    best, best_fit = np.inf, None
    for length in range(1, n + 1):
        k = np.arange(length)
        weights = g ** (k - (length - 1))  # fit value c_k = end * g^-(length-1-k)
        end = float(np.dot(y[:length], weights) / np.dot(weights, weights))
        if (end > eps / g and length < n) or end < eps:
            end = eps
        fit = np.full(n, eps)
        fit[:length] = end * weights
        rss = 0.5 * float(np.sum((y - fit) ** 2))
        if rss < best:
            best, best_fit = rss, fit
    return best_fit


def test_fastlzero_recovers_a_clean_spike_train():
    g, y, jumps = _clean_spike_train()
    events = event_magnitudes(y, g, 0.01)
    np.testing.assert_array_equal(np.flatnonzero(events), np.flatnonzero(jumps))
    # a magnitude is c[s] - gamma c[s-1]; after the floor that is the jump plus EPS (1 - gamma)
    np.testing.assert_allclose(events[jumps > 0], jumps[jumps > 0], atol=1e-4 * (1 - g) + 1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_fastlzero_calcium_is_the_published_segment_refit(seed):
    rng = np.random.default_rng(seed)
    g = 0.9
    y = np.zeros(400)
    for t in range(1, y.size):
        y[t] = g * y[t - 1] + (rng.random() < 0.03) * rng.uniform(0.5, 1.5)
    y += rng.normal(0.0, 0.1, y.size)
    spikes, calcium = estimate_spikes(y, g, 0.05, 1e-4)
    assert spikes.size > 3 and np.all(np.diff(spikes) > 0) and spikes[0] > 0
    bounds = [0, *spikes.tolist(), y.size]
    for start, end in itertools.pairwise(bounds):
        np.testing.assert_allclose(calcium[start:end], published_segment_fit(y[start:end], g, 1e-4), rtol=1e-9)
    magnitudes = event_magnitudes(y, g, 0.05, 1e-4)
    np.testing.assert_allclose(magnitudes[spikes], np.maximum(calcium[spikes] - g * calcium[spikes - 1], 0.0))
    assert np.count_nonzero(magnitudes) == np.count_nonzero(magnitudes[spikes])


def test_fastlzero_and_exact_solver_agree_on_well_separated_events():
    rng = np.random.default_rng(5)
    g = gamma(0.347, 31.0)
    y = np.zeros(2000)
    for t in range(1, y.size):
        y[t] = g * y[t - 1] + (t % 150 == 10) * 1.0
    y += rng.normal(0.0, 0.02, y.size)
    fast, exact = event_magnitudes(y, g, 0.1), solve_l0(y, g, 0.1)[1]
    np.testing.assert_array_equal(np.flatnonzero(fast), np.flatnonzero(exact))
    np.testing.assert_allclose(fast[fast > 0], exact[exact > 0], rtol=0.05)
