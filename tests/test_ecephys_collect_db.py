"""The ecephys bundle read from the tables: every channel's mean waveform and CCF position reach the file.

Rows are inserted directly (no sorter runs), so the test costs what a database round trip costs."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.db

SESSION = 990300
N_CHANNELS = {"probeA": 16, "probeB": 12}  # unequal: the file keeps 12 channels around each unit's peak


def _ingest(settings) -> None:
    from brainobs.ingest.manifest import load_manifest
    from brainobs.schemas.loading import insert_manifest

    folder = settings.data_root / "BOCOLLECT" / str(SESSION)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recording.bin").write_bytes(b"\x00" * 64)
    document = {
        "version": 1,
        "subjects": [{"subject_id": "BOCOLLECT", "sex": "F", "indicator": "GCaMP6f", "date_of_birth": "2026-01-05"}],
        "sessions": [
            {
                "session_id": SESSION,
                "subject_id": "BOCOLLECT",
                "session_type": "EPHYS_1_images_A",
                "modality": "ecephys",
                "session_start_time": "2026-03-09T09:30:00",
            }
        ],
        "probe_insertions": [
            {
                "session_id": SESSION,
                "probe_name": name,
                "recording_format": "binary",
                "recording_path": f"BOCOLLECT/{SESSION}/recording.bin",
                "sampling_rate": 30000.0,
                "num_channels": n,
                "targeted_structure": "",  # neither probe was aimed; probeA's channels are registered
            }
            for name, n in N_CHANNELS.items()
        ],
    }
    path = settings.data_root / "bocollect.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    insert_manifest(load_manifest(path, settings.data_root))


def _ccf(probe: str, channel: int) -> dict[str, float]:
    """probeA's channels are registered along a vertical track; probeB's are not."""
    if probe != "probeA":
        return {}
    return {"ccf_ap_um": 8500.0, "ccf_dv_um": 1300.0 - 20 * (channel // 2), "ccf_lr_um": 9500.0}


def _location(probe: str, channel: int) -> str:
    """probeA is registered (channel 1, unit 0's peak, lies outside the brain); probeB is not."""
    if probe != "probeA":
        return "unknown"
    return "root" if channel == 1 else "VISp"


def _sorted_rows(rng: np.random.Generator) -> dict[tuple[str, int], np.ndarray]:
    """Recording, channel, sorting and metric rows of two probes, two units each; their mean waveforms (uV)."""
    from brainobs.schemas.ephys import (
        DEFAULT_PARAMSET,
        EphysRecording,
        SortingParamSet,
        SortingSelection,
        SpikeSorting,
        UnitMetrics,
    )

    SortingParamSet.insert_defaults()
    waveforms = {}
    for name, n in N_CHANNELS.items():
        key = {"subject_id": "BOCOLLECT", "session_id": SESSION, "probe_name": name}
        EphysRecording.insert1(
            {**key, "sampling_rate": 30000.0, "duration": 10.0, "n_channels": n, "t_start": 0.0},
            allow_direct_insert=True,
        )
        EphysRecording.Channel.insert(
            (
                {
                    **key,
                    "channel_index": c,
                    "channel_id": f"AP{c}",
                    "x_um": 16.0 * (c % 2),
                    "y_um": 20.0 * (c // 2),
                    "shank": 0,
                    "location": _location(name, c),
                    **_ccf(name, c),
                }
                for c in range(n)
            ),
            allow_direct_insert=True,
        )
        sorting = {**key, "sorting_paramset": DEFAULT_PARAMSET}
        SortingSelection.insert1(sorting)
        SpikeSorting.insert1(
            {**sorting, "sorter_name": "lupin", "n_units": 2, "output_dir": f"ephys/{name}"}, allow_direct_insert=True
        )
        UnitMetrics.insert1(sorting, allow_direct_insert=True)
        for unit_id, peak in ((0, 1), (1, n - 2)):
            waveforms[(name, unit_id)] = rng.normal(0, 50, (82, n)).astype(np.float32)
            SpikeSorting.Unit.insert1(
                {**sorting, "unit_id": unit_id, "peak_channel": peak, "num_spikes": 3,
                 "spike_times": np.array([0.5, 1.0, 2.0]), "spike_amplitudes": np.array([80.0, 90.0, 85.0]),
                 "mean_waveform": waveforms[(name, unit_id)], "snr": 3.0, "duplicates_removed": 0, "quality": "good"},
                allow_direct_insert=True,
            )  # fmt: skip
            UnitMetrics.Unit.insert1({**sorting, "unit_id": unit_id, "firing_rate": 0.3}, allow_direct_insert=True)
    return waveforms


def test_every_channels_mean_waveform_reaches_the_file(db, settings, tmp_path):
    from brainobs.export.writer import export_ecephys_session
    from brainobs.schemas.collect import ecephys_session_bundle

    _ingest(settings)
    waveforms = _sorted_rows(np.random.default_rng(5))

    bundle = ecephys_session_bundle({"session_id": SESSION})
    units = bundle.units

    assert units.waveform_mean.shape == (4, 82, 12)
    # probeA (index 0, 16 channels): the 12 channels around each peak, clipped to the probe's ends
    np.testing.assert_array_equal(units.waveform_channel_ids[0], np.arange(0, 12))
    np.testing.assert_array_equal(units.waveform_channel_ids[1], np.arange(4, 16))
    np.testing.assert_allclose(units.waveform_mean[1], waveforms[("probeA", 1)][:, 4:16] * 1e-6, rtol=1e-6)
    # probeB (index 1, 12 channels): every channel
    np.testing.assert_array_equal(units.waveform_channel_ids[3], 10000 + np.arange(12))
    np.testing.assert_allclose(units.waveform_mean[2], waveforms[("probeB", 0)] * 1e-6, rtol=1e-6)
    assert list(units.peak_channel_id) == [1, 14, 10001, 10010]
    assert list(units.cluster_id) == [0, 1, 0, 1] and list(units.local_index) == [0, 1, 0, 1]
    # CCF from the channels that have it (probeA), NaN on the others
    ccf = bundle.channels.ccf_coordinates
    np.testing.assert_array_equal(ccf[:16, 1], 1300.0 - 20 * (np.arange(16) // 2))
    assert np.isnan(ccf[16:]).all() and ccf.shape == (28, 3)
    # the writer's read-back compares every array of the file with the bundle's
    written = export_ecephys_session(bundle, tmp_path / "session.nwb")
    assert written.counts["units/spikes"] == 12


def test_a_probe_without_target_but_registered_channels_is_not_assumed_in_the_brain(db, settings):
    from brainobs.schemas.ephys import units_table

    _ingest(settings)
    _sorted_rows(np.random.default_rng(6))
    with pytest.warns(UserWarning) as caught:
        units = units_table({"session_id": SESSION})
    messages = [str(w.message) for w in caught if "no targeted_structure" in str(w.message)]
    assert len(messages) == 1 and "probe probeB" in messages[0]
    assert list(units["location"]) == ["root", "VISp", "unknown", "unknown"]
    assert list(units["in_brain"]) == [False, True, True, True]
