"""Synthetic Neuropixels writer and recording reader: round trip, determinism, and each bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainobs.ingest.ephys_files import (
    ChannelCountError,
    EmptyRecordingError,
    MissingRecordingFileError,
    RecordingFileError,
    SamplingRateError,
    TruncatedRecordingError,
    channel_geometry,
    open_recording,
)
from brainobs.ingest.synthetic.ephys import (
    CCF_TIP_UM,
    NP1_AP_GAIN_TO_UV,
    load_truth,
    neuropixels1_probe,
    write_recording,
    write_spikeglx_copy,
)
from brainobs.populate.ephys.preprocessing import has_inter_sample_shift

FS = 30000.0
NUM_CHANNELS = 16


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("ephys")
    manifest = write_recording(
        root / "rec", root / "truth", num_channels=NUM_CHANNELS, duration_s=10.0, seed=3, t_start_s=12.5
    )
    return root / "rec", root / "truth", manifest


@pytest.fixture
def copy(written, tmp_path) -> Path:
    """A private copy of the written recording folder, to damage."""
    return Path(shutil.copytree(written[0], tmp_path / "rec"))


def _open(folder: Path, fs: float = FS, channels: int = NUM_CHANNELS):
    return open_recording("binary", folder / "recording.bin", folder / "probe.json", fs, channels)


def test_manifest_fields(written):
    folder, _, manifest = written
    assert manifest == {
        "recording_format": "binary",
        "recording_path": "recording.bin",
        "probe_file": "probe.json",
        "sampling_rate": FS,
        "num_channels": NUM_CHANNELS,
        "probe_type": "Neuropixels 1.0",
    }
    assert (folder / manifest["recording_path"]).exists() and (folder / manifest["probe_file"]).exists()
    assert not list(folder.glob(".*.tmp"))


def test_round_trip(written):
    folder, truth_dir, _ = written
    recording = _open(folder)
    assert recording.get_num_channels() == NUM_CHANNELS
    assert recording.get_num_samples() == int(10.0 * FS)
    assert recording.get_start_time() == pytest.approx(12.5)
    raw = np.fromfile(folder / "recording.bin", dtype="<i2").reshape(-1, NUM_CHANNELS)
    np.testing.assert_array_equal(recording.get_traces(start_frame=0, end_frame=100), raw[:100])
    uv = recording.get_traces(start_frame=0, end_frame=100, return_in_uV=True)
    np.testing.assert_allclose(uv, raw[:100] * NP1_AP_GAIN_TO_UV, rtol=1e-6)
    # noise is about 6 uV rms on every channel (spikes add a little)
    assert 5.0 < np.median(raw.std(axis=0)) * NP1_AP_GAIN_TO_UV < 9.0
    truth, units = load_truth(truth_dir)
    assert truth.get_num_units() == len(units) >= 4
    assert {"unit_id", "snr", "peak_channel"} <= set(units.columns)
    assert (units["snr"] > 0).all() and units["peak_channel"].between(0, NUM_CHANNELS - 1).all()
    assert truth.to_spike_vector()["sample_index"].max() < recording.get_num_samples()


def test_geometry_is_neuropixels_1(written):
    geometry = channel_geometry(_open(written[0]))
    assert list(geometry.columns) == [
        "channel_index", "channel_id", "contact_id", "x_um", "y_um", "shank",
        "structure_acronym", "ccf_ap_um", "ccf_dv_um", "ccf_lr_um",
    ]  # fmt: skip
    assert len(geometry) == NUM_CHANNELS
    # NP1.0 staggered layout: 2 contacts per row, 20 um between rows, x in {0, 16, 32, 48}
    np.testing.assert_array_equal(geometry["y_um"], np.repeat(np.arange(8) * 20.0, 2))
    assert set(geometry["x_um"]) == {0.0, 16.0, 32.0, 48.0}
    assert (geometry["shank"] == 0).all()
    assert geometry["contact_id"].iloc[0] == "e0"


def test_same_seed_same_bytes(tmp_path):
    first = write_recording(tmp_path / "a", tmp_path / "ta", num_channels=8, duration_s=1.0, seed=11)
    write_recording(tmp_path / "b", tmp_path / "tb", num_channels=8, duration_s=1.0, seed=11)
    write_recording(tmp_path / "c", tmp_path / "tc", num_channels=8, duration_s=1.0, seed=12)
    for name in (first["recording_path"], first["probe_file"], "recording.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    for name in ("truth_spike_samples.npy", "truth_spike_units.npy", "truth_units.json"):
        assert (tmp_path / "ta" / name).read_bytes() == (tmp_path / "tb" / name).read_bytes()
    assert (tmp_path / "a/recording.bin").read_bytes() != (tmp_path / "c/recording.bin").read_bytes()


def test_num_units_and_probe_limits(tmp_path):
    write_recording(tmp_path / "r", tmp_path / "t", num_channels=4, duration_s=0.5, seed=1, num_units=2)
    assert len(load_truth(tmp_path / "t")[1]) == 2
    with pytest.raises(ValueError, match="num_channels"):
        neuropixels1_probe(385)


def test_truncated_binary(copy):
    with open(copy / "recording.bin", "ab") as f:
        f.write(b"\x00\x01\x02")
    with pytest.raises(TruncatedRecordingError, match="recording.bin.*not a multiple of 16 channels"):
        _open(copy)


def test_whole_samples_missing(copy):
    data = (copy / "recording.bin").read_bytes()
    (copy / "recording.bin").write_bytes(data[: len(data) - NUM_CHANNELS * 2 * 10])
    with pytest.raises(TruncatedRecordingError, match="299990 samples but the sidecar says 300000"):
        _open(copy)


def test_probe_file_registration(written, copy):
    """The synthetic probe.json annotates a vertical track through VISp; a probe file without annotations
    gives "" and NaN; a non-numeric coordinate is refused naming the file."""
    geometry = channel_geometry(_open(written[0]))
    assert (geometry["structure_acronym"] == "VISp").all()
    np.testing.assert_array_equal(geometry["ccf_dv_um"], CCF_TIP_UM[1] - geometry["y_um"])
    assert (geometry["ccf_ap_um"] == CCF_TIP_UM[0]).all() and (geometry["ccf_lr_um"] == CCF_TIP_UM[2]).all()
    document = json.loads((copy / "probe.json").read_text())
    annotations = document["probes"][0]["contact_annotations"]
    annotations.clear()
    (copy / "probe.json").write_text(json.dumps(document))
    bare = channel_geometry(_open(copy))
    assert (bare["structure_acronym"] == "").all() and bare["ccf_ap_um"].isna().all()
    annotations["ccf_dv_um"] = ["deep"] * NUM_CHANNELS
    (copy / "probe.json").write_text(json.dumps(document))
    with pytest.raises(RecordingFileError, match=r"probe.json: contact annotation ccf_dv_um is not numeric"):
        _open(copy)


def test_channel_count_contradicts_probe(copy):
    sidecar = json.loads((copy / "recording.json").read_text())
    sidecar.update(num_channels=8, num_samples=sidecar["num_samples"] * 2)
    (copy / "recording.json").write_text(json.dumps(sidecar))
    with pytest.raises(ChannelCountError, match=r"probe.json: the probe map has 16 contacts .* 8 channels"):
        _open(copy, channels=8)


def test_channel_count_contradicts_manifest(written):
    with pytest.raises(ChannelCountError, match="recording.bin: 16 channels, but the manifest expects 32"):
        _open(written[0], channels=32)


def test_sampling_rate_mismatch(written):
    with pytest.raises(SamplingRateError, match=r"recording.bin: sampling rate 30000.0 Hz.*expects 25000"):
        _open(written[0], fs=25000.0)


def test_zero_length(copy):
    (copy / "recording.bin").write_bytes(b"")
    with pytest.raises(EmptyRecordingError, match="recording.bin: the file is empty"):
        _open(copy)


@pytest.mark.parametrize("name", ["recording.bin", "recording.json", "probe.json"])
def test_missing_files(copy, name):
    (copy / name).unlink()
    with pytest.raises(MissingRecordingFileError, match=f"{name}: file not found"):
        _open(copy)


def test_bad_sidecar_and_format(copy):
    (copy / "recording.json").write_text("{not json")
    with pytest.raises(RecordingFileError, match="recording.json: sidecar is not valid JSON"):
        _open(copy)
    (copy / "recording.json").write_text(json.dumps({"sampling_rate": FS}))
    with pytest.raises(RecordingFileError, match=r"recording.json: sidecar lacks \['num_channels'"):
        _open(copy)
    with pytest.raises(ValueError, match="unknown recording_format 'nwb'"):
        open_recording("nwb", copy / "recording.bin", None, FS, NUM_CHANNELS)
    with pytest.raises(MissingRecordingFileError, match="binary recordings need a probe_file"):
        open_recording("binary", copy / "recording.bin", None, FS, NUM_CHANNELS)


def test_errors_are_value_errors():
    assert issubclass(TruncatedRecordingError, ValueError) and issubclass(SamplingRateError, RecordingFileError)


def test_spikeglx_round_trip(written, tmp_path):
    folder = written[0]
    bin_path = write_spikeglx_copy(folder, tmp_path / "sglx")
    assert bin_path.name == "synthetic_g0_t0.imec0.ap.bin"
    for path in (bin_path, tmp_path / "sglx"):  # the .ap.bin file or its run folder
        recording = open_recording("spikeglx", path, None, FS, NUM_CHANNELS)
        assert recording.get_num_channels() == NUM_CHANNELS  # the sync channel is not an AP channel
    binary = _open(folder)
    np.testing.assert_allclose(
        recording.get_traces(start_frame=1000, end_frame=1100, return_in_uV=True),
        binary.get_traces(start_frame=1000, end_frame=1100, return_in_uV=True),
        rtol=1e-5,
    )
    geometry, expected = channel_geometry(recording), channel_geometry(binary)
    np.testing.assert_array_equal(geometry[["x_um", "y_um"]], expected[["x_um", "y_um"]])
    assert geometry["contact_id"].tolist() == expected["contact_id"].tolist()
    # Neuropixels 1.0 multiplexes 32 ADCs: the SpikeGLX probe carries the inter-sample shifts
    assert has_inter_sample_shift(recording) and not has_inter_sample_shift(binary)


def test_spikeglx_bad_inputs(written, tmp_path):
    bin_path = write_spikeglx_copy(written[0], tmp_path / "sglx")
    with pytest.raises(SamplingRateError, match="imec0.ap.bin: sampling rate"):
        open_recording("spikeglx", bin_path, None, 20000.0, NUM_CHANNELS)
    with open(bin_path, "ab") as f:
        f.write(b"\x00")
    with pytest.raises(TruncatedRecordingError, match="not a multiple of 17 saved channels"):
        open_recording("spikeglx", bin_path, None, FS, NUM_CHANNELS)
    bin_path.with_suffix(".meta").unlink()
    with pytest.raises(MissingRecordingFileError, match="imec0.ap.meta: file not found"):
        open_recording("spikeglx", bin_path, None, FS, NUM_CHANNELS)
    with pytest.raises(MissingRecordingFileError, match="nowhere: file not found"):
        open_recording("openephys", tmp_path / "nowhere", None, FS, NUM_CHANNELS)
