"""Allen's mean-waveform metrics and the rule-based noise labels on hand-made waveforms."""

from __future__ import annotations

import numpy as np
import pytest

from brainobs.populate.ephys import allen_waveforms as aw
from brainobs.populate.ephys import noise

FS = 30000.0
SAMPLES = np.arange(82)
CHANNELS = np.arange(64)


def spike(trough=20.0, width=2.0, rebound=0.4):
    return -np.exp(-0.5 * ((SAMPLES - trough) / width) ** 2) + rebound * np.exp(
        -0.5 * ((SAMPLES - trough - 12) / 5) ** 2
    )


def unit(peak=30, reach=3.0, delay_per_channel=0.0, amplitude=100.0):
    """samples x channels: a spike on every channel, Gaussian in channel around `peak`, its trough moved by
    delay_per_channel samples per channel above the peak."""
    columns = [
        spike(20 + delay_per_channel * max(c - peak, 0)) * np.exp(-0.5 * ((c - peak) / reach) ** 2) for c in CHANNELS
    ]
    return amplitude * np.array(columns).T


def test_one_dimensional_features_of_a_trough_first_spike():
    m = aw.waveform_metrics(unit().T, 30, FS)
    assert m["amplitude"] == pytest.approx(140.0, rel=0.02)  # trough -100 to rebound +40
    assert 0.2 < m["waveform_duration"] < 0.6  # trough to the rebound peak, 12 samples = 0.4 ms
    assert 0.1 < m["halfwidth"] < 0.2  # 2.355 sigma = 4.7 samples = 0.157 ms
    assert m["PT_ratio"] == pytest.approx(0.4, rel=0.05)
    assert m["repolarization_slope"] > 0 and m["recovery_slope"] < 0


def test_spread_counts_every_second_site_and_skips_channel_zero():
    narrow, wide = aw.waveform_metrics(unit(reach=2.0).T, 30, FS), aw.waveform_metrics(unit(reach=6.0).T, 30, FS)
    assert narrow["spread"] < wide["spread"] <= 170.0  # at most the 17 sites x 10 um
    # a unit at channel 0: sites -16..16 step 2 keep only 2..16 (channel 0 is never used), 8 sites
    edge = aw.waveform_metrics(unit(peak=0, reach=100.0).T, 0, FS)
    assert edge["spread"] == pytest.approx(80.0)


def test_velocity_is_signed_trough_delay_per_metre():
    still = aw.waveform_metrics(unit(reach=8.0).T, 30, FS)
    assert still["velocity_above"] == pytest.approx(0.0, abs=1e-12)
    moving = aw.waveform_metrics(unit(reach=8.0, delay_per_channel=0.25).T, 30, FS)
    assert moving["velocity_above"] > 0  # later troughs above the peak
    assert moving["velocity_below"] == pytest.approx(0.0, abs=1e-12)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="channels x samples"):
        aw.waveform_metrics(np.zeros(82), 0, FS)
    with pytest.raises(ValueError, match="peak 70"):
        aw.waveform_metrics(unit().T, 70, FS)


def test_clean_unit_is_good():
    assert not noise.is_noise(unit())
    assert noise.quality_labels([unit()]) == ["good"]


def test_noisy_templates_are_noise():
    rng = np.random.default_rng(0)
    assert noise.is_noise(rng.normal(0, 10, (82, 64)))  # no spike: no temporal peak at the alignment
    single = np.zeros((82, 64))
    single[:, 10] = 100 * spike()
    assert noise.is_noise(single)  # one channel only
    assert noise.is_noise(np.roll(unit(), 40, axis=0))  # largest deflection 40 samples late
    assert noise.is_noise(100 * spike()[:, None] * np.ones(64))  # the same deflection on the whole probe
    assert noise.is_noise(np.zeros((82, 64))) and noise.is_noise(np.full((82, 64), np.nan))
    assert noise.quality_labels([unit(), single]) == ["good", "noise"]


def test_mid_spread_needs_a_spike_shape():
    # 17-25 channels above 20% of the peak: the shape check decides; the same waveform on every channel
    # (no change across channels) is noise, as in Allen's rule
    uniform = unit(reach=7.0)
    spread = noise.gaussian_filter1d(np.abs(uniform).max(0) / np.abs(uniform).max(), 2)
    assert 16 < np.sum(spread > 0.2) <= 25
    assert noise.bad_shape(uniform)


def test_noise_rejects_a_vector():
    with pytest.raises(ValueError, match="samples x channels"):
        noise.is_noise(np.zeros(82))


def test_scattered_spatial_peaks_are_noise():
    assert not noise.bad_spatial_peaks(unit(peak=30, reach=2.0))  # one peak along the probe
    twin = unit(peak=20, reach=1.5) + unit(peak=34, reach=1.5)  # two peaks 14 channels apart, one sample
    assert noise.bad_spatial_peaks(twin)
    assert noise.is_noise(twin)
    far = unit(peak=5, reach=1.5) + unit(peak=60, reach=1.5)  # the second beyond peak_channel_range
    assert not noise.bad_spatial_peaks(far)
