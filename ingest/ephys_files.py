"""Open a Neuropixels recording (binary + probe JSON, SpikeGLX, Open Ephys) and validate it.

Every problem with the files raises a RecordingFileError (a ValueError) that names the file and the
problem. Format of the binary layout: docs/formats/ephys.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import probeinterface
from spikeinterface.core import BaseRecording, read_binary

RECORDING_FORMATS = ("binary", "spikeglx", "openephys")
SIDECAR_KEYS = ("sampling_rate", "num_channels", "dtype", "gain_to_uV")
# Relative tolerance on the sampling rate: SpikeGLX stores the calibrated rate (e.g. 30000.08 Hz).
SAMPLING_RATE_RTOL = 1e-3


class RecordingFileError(ValueError):
    """A recording file is missing or contradicts itself or the session manifest."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MissingRecordingFileError(RecordingFileError):
    """A file the manifest names does not exist."""


class TruncatedRecordingError(RecordingFileError):
    """The binary size is not a whole number of samples."""


class EmptyRecordingError(RecordingFileError):
    """The recording holds no samples."""


class ChannelCountError(RecordingFileError):
    """The channel count contradicts the probe map, the sidecar or the manifest."""


class SamplingRateError(RecordingFileError):
    """The sampling rate contradicts the manifest."""


def open_recording(
    recording_format: str,
    recording_path: Path | str,
    probe_file: Path | str | None,
    expected_sampling_rate: float,
    expected_num_channels: int,
) -> BaseRecording:
    """A validated, lazy SpikeInterface recording with its probe attached and times on the session clock.

    recording_path: the int16 .bin (binary; its sidecar is the same name with .json), the SpikeGLX .ap.bin
    or run folder, or the Open Ephys record-node folder. probe_file: probeinterface JSON; required for
    binary, optional for the others (used only when the files carry no probe).
    """
    if recording_format not in RECORDING_FORMATS:
        raise ValueError(f"unknown recording_format {recording_format!r}; expected one of {RECORDING_FORMATS}")
    recording_path = Path(recording_path)
    _require(recording_path)
    if recording_format == "binary":
        if probe_file is None:
            raise MissingRecordingFileError(recording_path, "binary recordings need a probe_file")
        recording = _open_binary(recording_path)
    elif recording_format == "spikeglx":
        recording = _open_spikeglx(recording_path)
    else:
        recording = _open_openephys(recording_path)
    if recording_format == "binary" or (probe_file is not None and not recording.has_probe()):
        recording = _attach_probe(recording, Path(probe_file))
    _validate(recording, recording_path, expected_sampling_rate, expected_num_channels)
    return recording


# contact annotations of a probeinterface probe that register its channels in the Allen CCF
CCF_ANNOTATIONS = ("ccf_ap_um", "ccf_dv_um", "ccf_lr_um")
STRUCTURE_ANNOTATION = "structure_acronym"


def channel_geometry(recording: BaseRecording) -> pd.DataFrame:
    """One row per channel: channel_index, channel_id, contact_id, x_um, y_um, shank, and the registration the
    probe's contact annotations give: structure_acronym ("" without) and ccf_ap_um, ccf_dv_um, ccf_lr_um
    (NaN without)."""
    probe = recording.get_probe()
    order = np.argsort(probe.device_channel_indices)
    contact_ids = probe.contact_ids[order] if probe.contact_ids is not None else [""] * len(order)
    shanks = probe.shank_ids[order] if probe.shank_ids is not None else np.zeros(len(order), dtype=int)
    positions = probe.contact_positions[order]
    annotations = probe.contact_annotations
    structures = annotations.get(STRUCTURE_ANNOTATION)
    return pd.DataFrame(
        {
            "channel_index": np.arange(recording.get_num_channels()),
            "channel_id": [str(c) for c in recording.channel_ids],
            "contact_id": [str(c) for c in contact_ids],
            "x_um": positions[:, 0].astype(float),
            "y_um": positions[:, 1].astype(float),
            "shank": [int(s) if str(s).isdigit() else 0 for s in shanks],
            STRUCTURE_ANNOTATION: [""] * len(order)
            if structures is None
            else np.asarray(structures)[order].astype(str),
            **{
                name: np.full(len(order), np.nan)
                if annotations.get(name) is None
                else np.asarray(annotations[name], dtype=float)[order]
                for name in CCF_ANNOTATIONS
            },
        }
    )


def sidecar_path(recording_path: Path) -> Path:
    """The JSON sidecar of a binary recording: same name, .json suffix."""
    return Path(recording_path).with_suffix(".json")


def _require(path: Path) -> None:
    if not path.exists():
        raise MissingRecordingFileError(path, "file not found")


def _open_binary(path: Path) -> BaseRecording:
    side_path = sidecar_path(path)
    _require(side_path)
    try:
        sidecar = json.loads(side_path.read_text())
    except json.JSONDecodeError as err:
        raise RecordingFileError(side_path, f"sidecar is not valid JSON ({err})") from err
    missing = [k for k in SIDECAR_KEYS if k not in sidecar]
    if missing:
        raise RecordingFileError(side_path, f"sidecar lacks {missing}")
    dtype = np.dtype(sidecar["dtype"])
    num_channels = int(sidecar["num_channels"])
    if num_channels <= 0:
        raise ChannelCountError(side_path, f"num_channels must be positive, got {num_channels}")
    size = path.stat().st_size
    frame_bytes = num_channels * dtype.itemsize
    if size == 0:
        raise EmptyRecordingError(path, "the file is empty (zero samples)")
    if size % frame_bytes:
        raise TruncatedRecordingError(
            path,
            f"size {size} bytes is not a multiple of {num_channels} channels x {dtype.itemsize} bytes "
            f"({size % frame_bytes} trailing bytes); the file is truncated or the channel count is wrong",
        )
    if "num_samples" in sidecar and size // frame_bytes != int(sidecar["num_samples"]):
        raise TruncatedRecordingError(
            path, f"holds {size // frame_bytes} samples but the sidecar says {sidecar['num_samples']}"
        )
    return read_binary(
        path,
        sampling_frequency=float(sidecar["sampling_rate"]),
        dtype=dtype,
        num_channels=num_channels,
        t_starts=[float(sidecar.get("t_start_s", 0.0))],
        gain_to_uV=float(sidecar["gain_to_uV"]),
        offset_to_uV=float(sidecar.get("offset_to_uV", 0.0)),
        time_axis=0,
    )


def _open_spikeglx(path: Path) -> BaseRecording:
    from spikeinterface.extractors import read_spikeglx

    if path.is_file():
        bin_path = path
        stream_id = _spikeglx_stream_id(path)
        folder = path.parent
    else:
        folder = path
        bins = sorted(folder.glob("*.ap.bin"))
        if len(bins) != 1:
            raise MissingRecordingFileError(folder, f"expected one SpikeGLX *.ap.bin, found {len(bins)}")
        bin_path, stream_id = bins[0], _spikeglx_stream_id(bins[0])
    _check_spikeglx_size(bin_path)
    try:
        return read_spikeglx(folder, stream_id=stream_id)
    except Exception as err:  # neo raises many types; name the file
        raise RecordingFileError(bin_path, f"SpikeGLX reader failed: {err}") from err


def _spikeglx_stream_id(bin_path: Path) -> str:
    parts = bin_path.name.split(".")
    if len(parts) < 4 or parts[-1] != "bin" or parts[-2] not in ("ap", "lf"):
        raise RecordingFileError(bin_path, "not a SpikeGLX imec file name (<run>_g0_t0.imec0.ap.bin)")
    return f"{parts[-3]}.{parts[-2]}"


def _check_spikeglx_size(bin_path: Path) -> None:
    meta_path = bin_path.with_suffix(".meta")
    _require(meta_path)
    meta = dict(line.split("=", 1) for line in meta_path.read_text().splitlines() if "=" in line and line[0] != "~")
    if "nSavedChans" not in meta:
        raise RecordingFileError(meta_path, "meta lacks nSavedChans")
    saved = int(meta["nSavedChans"])
    size = bin_path.stat().st_size
    if size == 0:
        raise EmptyRecordingError(bin_path, "the file is empty (zero samples)")
    if size % (saved * 2):
        raise TruncatedRecordingError(
            bin_path, f"size {size} bytes is not a multiple of {saved} saved channels x 2 bytes"
        )
    if "fileSizeBytes" in meta and int(meta["fileSizeBytes"]) != size:
        raise TruncatedRecordingError(bin_path, f"size {size} bytes but the meta says {meta['fileSizeBytes']}")


def _open_openephys(path: Path) -> BaseRecording:
    from spikeinterface.extractors import read_openephys

    try:
        return read_openephys(path)
    except Exception as err:  # neo raises many types; name the folder
        raise RecordingFileError(path, f"Open Ephys reader failed: {err}") from err


def _attach_probe(recording: BaseRecording, probe_file: Path) -> BaseRecording:
    _require(probe_file)
    try:
        probes = probeinterface.read_probeinterface(probe_file).probes
    except (json.JSONDecodeError, KeyError, ValueError) as err:
        raise RecordingFileError(probe_file, f"not a probeinterface JSON ({err})") from err
    if len(probes) != 1:
        raise RecordingFileError(probe_file, f"expected one probe, found {len(probes)}")
    probe = probes[0]
    num_contacts = probe.get_contact_count()
    if num_contacts != recording.get_num_channels():
        raise ChannelCountError(
            probe_file,
            f"the probe map has {num_contacts} contacts but the recording has {recording.get_num_channels()} channels",
        )
    for name in CCF_ANNOTATIONS:
        try:
            np.asarray(probe.contact_annotations.get(name, []), dtype=float)
        except (TypeError, ValueError) as err:
            raise RecordingFileError(probe_file, f"contact annotation {name} is not numeric ({err})") from err
    if any(len(str(s)) > 32 for s in probe.contact_annotations.get(STRUCTURE_ANNOTATION, [])):
        raise RecordingFileError(probe_file, f"a contact's {STRUCTURE_ANNOTATION} is longer than 32 characters")
    if probe.device_channel_indices is None:
        probe.set_device_channel_indices(np.arange(num_contacts))
    recording.set_probe(probe)
    return recording


def _validate(recording: BaseRecording, path: Path, expected_sampling_rate: float, expected_num_channels: int) -> None:
    if recording.get_num_samples() == 0:
        raise EmptyRecordingError(path, "the recording holds zero samples")
    fs = recording.sampling_frequency
    if not np.isclose(fs, expected_sampling_rate, rtol=SAMPLING_RATE_RTOL, atol=0):
        raise SamplingRateError(path, f"sampling rate {fs} Hz, but the manifest expects {expected_sampling_rate} Hz")
    if recording.get_num_channels() != expected_num_channels:
        raise ChannelCountError(
            path,
            f"{recording.get_num_channels()} channels, but the manifest expects {expected_num_channels}",
        )
