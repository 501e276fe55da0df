"""dF/F: window lengths, noise_std, the exact NaN-aware running median, baseline and speed."""

import time

import numpy as np
import pytest
from scipy.ndimage import median_filter

from brainobs.populate.ophys.dff import (
    clamped_long_window_s,
    compute_dff,
    compute_dff_clamped,
    compute_dff_trace,
    nanmedian_filter,
    noise_std,
    window_frames,
)


@pytest.mark.parametrize(("fs", "long", "short"), [(31.0, 18601, 103), (30.0, 18001, 101), (11.0, 6601, 37)])
def test_window_frames_pinned_by_the_reference(fs, long, short):
    assert window_frames(fs, 600.0) == long
    assert window_frames(fs, 3.333) == short


@pytest.mark.parametrize(("long", "short"), [(100, 11), (0, 11), (-3, 11), (1001, 11), (101, 12)])
def test_bad_windows_are_errors(long, short):
    trace = np.random.default_rng(0).normal(100.0, 1.0, 1000)
    with pytest.raises(ValueError, match="window"):
        compute_dff_trace(trace, long, short)


def test_a_window_as_long_as_the_trace_is_an_error_as_in_allen():
    trace = np.random.default_rng(0).normal(100.0, 1.0, 1001)
    with pytest.raises(ValueError, match="long baseline window of 1001 frames for a trace of 1001 frames"):
        compute_dff_trace(trace, 1001, 11)
    dff, sigma, _ = compute_dff_trace(trace, 999, 11)
    assert np.isfinite(dff).all() and sigma > 0


def test_nan_and_constant_traces_follow_allen():
    rng = np.random.default_rng(1)
    partial = 100.0 + rng.normal(0.0, 1.0, 500)
    partial[3] = np.nan
    traces = np.vstack([np.full(500, np.nan), partial, np.full(500, 100.0)])
    result = compute_dff(traces, fs=31.0, long_window_s=10.0)
    # all NaN: returned unchanged; partial NaN: the noise sigma is NaN, so dF/F and sigma_dff are all NaN;
    # constant: no residual survives the noise cuts, the sigma is NaN and so is the dF/F
    assert np.isnan(result.dff).all() and np.isnan(result.sigma_dff).all()
    assert result.num_small_baseline_frames.tolist() == [0, 0, 0]


def test_long_window_longer_than_the_trace_names_the_fix():
    with pytest.raises(ValueError, match="long baseline window of 18601 frames"):
        compute_dff(np.ones((1, 1000)), fs=31.0)


def test_noise_std_is_robust_to_positive_transients():
    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, 2.0, 20000)
    clean = noise_std(noise, 31)
    assert clean == pytest.approx(2.0 * 0.95, rel=0.03)  # the 2.5-sigma cut and the median filter bias it ~5% low
    with_transients = noise.copy()
    for start in range(500, 20000, 1000):
        with_transients[start : start + 60] += 30.0 * np.exp(-np.arange(60) / 10.0)
    assert noise_std(with_transients, 31) == pytest.approx(clean, rel=0.05)
    assert np.isnan(noise_std(np.append(noise, np.nan), 31))
    assert np.isnan(noise_std(np.ones(100), 11))  # Allen: nothing survives the cuts


def slow_nanmedian_filter(x: np.ndarray, window: int) -> np.ndarray:
    half = window // 2
    padded = np.concatenate((x[:half][::-1], x, x[x.size - half :][::-1]))
    out = np.array(
        [
            np.nanmedian(padded[i : i + window]) if np.isfinite(padded[i : i + window]).any() else np.nan
            for i in range(x.size)
        ]
    )
    missing = np.isnan(out)
    out[missing] = np.interp(np.flatnonzero(missing), np.flatnonzero(~missing), out[~missing])
    return out


def test_nanmedian_filter_equals_the_slow_exact_reference():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, 700)
    x[rng.random(700) < 0.3] = np.nan  # scattered NaNs (even and odd counts per window)
    x[300:360] = np.nan  # a NaN run longer than the window: interpolated
    x[:25] = np.nan
    x[np.arange(0, 700, 7)] = np.round(x[np.arange(0, 700, 7)], 1)  # ties
    for window in (1, 5, 31, 51, 699):
        np.testing.assert_allclose(nanmedian_filter(x, window), slow_nanmedian_filter(x, window), rtol=0, atol=1e-12)
    clean = rng.normal(0.0, 1.0, 400)
    np.testing.assert_allclose(nanmedian_filter(clean, 41), median_filter(clean, 41, mode="reflect"))


def test_constant_plus_transient_gives_zero_baseline_and_the_right_peak():
    rng = np.random.default_rng(3)
    fs, n_frames = 31.0, 4000
    trace = 100.0 + rng.normal(0.0, 1.0, n_frames)
    kernel = 50.0 * np.exp(-np.arange(200) / 15.0)
    trace[2000:2200] += kernel  # peak dF/F = 0.5
    trace[3000:3200] += kernel * 2  # peak dF/F = 1.0
    result = compute_dff(trace[None], fs, long_window_s=60.0, short_window_s=3.333)
    dff = result.dff[0]
    quiet = np.r_[0:1900, 2400:2900, 3400:4000]
    assert abs(np.median(dff[quiet])) < 0.005
    assert np.std(dff[quiet]) == pytest.approx(0.01, rel=0.1)
    assert dff[2000] == pytest.approx(0.5, abs=0.04)
    assert dff[3000] == pytest.approx(1.0, abs=0.04)
    assert result.sigma_dff[0] == pytest.approx(0.01, rel=0.1)
    assert result.num_small_baseline_frames[0] == 0
    assert (result.long_window, result.short_window) == (1861, 103)


def test_small_baseline_frames_are_counted():
    rng = np.random.default_rng(4)
    trace = 0.5 + rng.normal(0.0, 1.0, 3000)  # baseline below the noise sigma everywhere
    result = compute_dff(trace[None], 31.0, long_window_s=20.0)
    assert result.num_small_baseline_frames[0] == 3000
    np.testing.assert_allclose(np.median(result.dff[0]), 0.0, atol=0.1)


def test_an_hour_long_trace_with_the_default_windows_is_fast():
    rng = np.random.default_rng(5)
    trace = 100.0 + rng.normal(0.0, 1.0, 140_000)
    compute_dff(trace[None, :20_000], 31.0)  # compiles the running median
    start = time.perf_counter()
    result = compute_dff(trace[None], 31.0)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"dF/F of a 140k-frame trace took {elapsed:.1f} s"
    assert abs(np.median(result.dff)) < 0.01


def test_the_allen_preset_refuses_short_movies_and_the_short_movie_preset_clamps_the_window():
    from brainobs.populate.ophys.params import OPHYS_PRESETS

    allen, short = OPHYS_PRESETS["allen"][0], OPHYS_PRESETS["allen_short_movies"][0]

    def long_window_s(preset: dict, n_frames: int, fs: float) -> tuple[float, bool]:
        return clamped_long_window_s(preset["dff_long_window_s"], n_frames, fs, preset["dff_clamp_long_window"])

    assert {k for k in allen if allen[k] != short[k]} == {"dff_clamp_long_window"}
    assert long_window_s(allen, 18602, 31.0) == (600.0, False)
    with pytest.raises(ValueError, match="allen_short_movies"):
        long_window_s(allen, 18601, 31.0)  # Allen: the window must be shorter than the trace
    seconds, clamped = long_window_s(short, 6000, 31.0)
    assert clamped and window_frames(31.0, seconds) == 5999
    assert long_window_s(short, 20000, 31.0) == (600.0, False)
    result, clamped = compute_dff_clamped(np.ones((2, 300)) + np.arange(300), 31.0, 600.0, 3.333, True)
    assert clamped and result.long_window == 299 and result.dff.shape == (2, 300)
