"""Synthetic Neuropixels 1.0 recordings with known units (SpikeInterface ground-truth generator).

A recording is written as little-endian int16 samples (time-major) plus a probeinterface JSON and a small
JSON sidecar; the truth (spike trains and per-unit SNR) goes to a separate folder so the pipeline never
sees it. Format: docs/formats/ephys.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import probeinterface
from probeinterface.neuropixels_tools import build_neuropixels_probe
from spikeinterface.core import BaseRecording, NumpySorting, generate_ground_truth_recording

from brainobs.ingest.synthetic.truth import TruthError, load_survey_truth

PROBE_TYPE = "Neuropixels 1.0"
PROBE_PART_NUMBER = "NP1000"
NP1_READOUT_CHANNELS = 384
# Neuropixels 1.0 AP band: 1.2 V range, 10-bit ADC, gain 500 -> 2.34375 uV per bit.
NP1_AP_GAIN_TO_UV = 1.2e6 / 1024 / 500
NOISE_LEVEL_UV = 6.0
FIRING_RATE_RANGE_HZ = (4.0, 20.0)
# Template amplitude range (SpikeInterface "alpha"); chosen so that roughly a third of the units fall below
# SNR 5 at NOISE_LEVEL_UV, as on a real probe.
AMPLITUDE_RANGE = (40.0, 300.0)

# A vertical track through VISp: the CCF position (um; anterior-posterior, dorsal-ventral, left-right) of the
# probe tip; a contact y_um above the tip sits y_um less deep. Written as contact annotations of probe.json.
CCF_TIP_UM = (8500.0, 1300.0, 9500.0)
TRACK_STRUCTURE = "VISp"

RECORDING_FILE = "recording.bin"
SIDECAR_FILE = "recording.json"
PROBE_FILE = "probe.json"
TRUTH_SPIKES_FILE = "truth_spike_samples.npy"
TRUTH_LABELS_FILE = "truth_spike_units.npy"
TRUTH_UNITS_FILE = "truth_units.json"


def neuropixels1_probe(num_channels: int) -> probeinterface.Probe:
    """The first `num_channels` contacts (bank 0, from the tip) of a Neuropixels 1.0 probe, wired 0..n-1."""
    if not 1 <= num_channels <= NP1_READOUT_CHANNELS:
        raise ValueError(f"num_channels must be in 1..{NP1_READOUT_CHANNELS}, got {num_channels}")
    probe = build_neuropixels_probe(PROBE_PART_NUMBER).get_slice(np.arange(num_channels))
    probe.set_device_channel_indices(np.arange(num_channels))
    return probe


def registered(recording: BaseRecording) -> probeinterface.Probe:
    """The recording's probe with each contact's CCF position and structure (the CCF_TIP_UM track) annotated."""
    probe = recording.get_probe()
    depth = probe.contact_positions[:, 1]
    probe.annotate_contacts(
        structure_acronym=np.full(len(depth), TRACK_STRUCTURE),
        ccf_ap_um=np.full(len(depth), CCF_TIP_UM[0]),
        ccf_dv_um=CCF_TIP_UM[1] - depth,
        ccf_lr_um=np.full(len(depth), CCF_TIP_UM[2]),
    )
    return probe


def default_num_units(num_channels: int) -> int:
    """About one unit per three channels, at least four."""
    return max(4, num_channels // 3)


def write_recording(
    folder: Path,
    truth_dir: Path,
    *,
    num_channels: int,
    duration_s: float,
    seed: int,
    sampling_rate: float = 30000.0,
    t_start_s: float = 0.0,
    num_units: int | None = None,
    dead_channels: tuple[int, ...] = (),
) -> dict:
    """Generate and write one probe's recording; return the manifest fields (paths relative to `folder`).

    ``dead_channels``: channel indices written as zeros (a dead block of the probe, for QC)."""
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if any(not 0 <= c < num_channels for c in dead_channels):
        raise ValueError(f"dead_channels {dead_channels} must lie in 0..{num_channels - 1}")
    folder, truth_dir = Path(folder), Path(truth_dir)
    folder.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    num_units = default_num_units(num_channels) if num_units is None else num_units
    recording, truth = _generate(num_channels, duration_s, seed, sampling_rate, num_units)

    num_samples = _write_int16(recording, folder / RECORDING_FILE, NP1_AP_GAIN_TO_UV, list(dead_channels))
    _write_atomic(folder / PROBE_FILE, lambda p: probeinterface.write_probeinterface(p, registered(recording)))
    sidecar = {
        "sampling_rate": float(sampling_rate),
        "num_channels": int(num_channels),
        "num_samples": int(num_samples),
        "dtype": "int16",
        "gain_to_uV": NP1_AP_GAIN_TO_UV,
        "offset_to_uV": 0.0,
        "t_start_s": float(t_start_s),
        "probe_type": PROBE_TYPE,
    }
    _write_json(folder / SIDECAR_FILE, sidecar)
    _write_truth(truth_dir, recording, truth, sampling_rate, t_start_s)
    return {
        "recording_format": "binary",
        "recording_path": RECORDING_FILE,
        "probe_file": PROBE_FILE,
        "sampling_rate": float(sampling_rate),
        "num_channels": int(num_channels),
        "probe_type": PROBE_TYPE,
    }


def write_spikeglx_copy(folder: Path, out_folder: Path, run_name: str = "synthetic") -> Path:
    """Re-write a recording made by write_recording as a SpikeGLX Neuropixels 1.0 AP pair (saved channel subset
    plus a zero sync channel, AP gain 500); return the .ap.bin path. Needs num_channels <= 384."""
    folder, out_folder = Path(folder), Path(out_folder)
    sidecar = json.loads((folder / SIDECAR_FILE).read_text())
    n = int(sidecar["num_channels"])
    counts = np.fromfile(folder / RECORDING_FILE, dtype="<i2").reshape(-1, n)
    data = np.concatenate([counts, np.zeros((len(counts), 1), dtype="<i2")], axis=1)
    out_folder.mkdir(parents=True, exist_ok=True)
    stem = f"{run_name}_g0_t0.imec0.ap"
    imro = "(0,384)" + "".join(f"({c} 0 0 500 250 1)" for c in range(NP1_READOUT_CHANNELS))
    channel_map = f"({NP1_READOUT_CHANNELS},0,1)" + "".join(f"(AP{c};{c}:{c})" for c in range(n))
    meta = {
        "fileName": f"{stem}.bin",
        "fileSizeBytes": data.nbytes,
        "fileTimeSecs": len(data) / sidecar["sampling_rate"],
        "firstSample": 0,
        "imAiRangeMax": 0.6,
        "imAiRangeMin": -0.6,
        "imMaxInt": 512,
        "imDatPrb_pn": PROBE_PART_NUMBER,
        "imDatPrb_type": 0,
        "imSampRate": sidecar["sampling_rate"],
        "nSavedChans": n + 1,
        "snsApLfSy": f"{NP1_READOUT_CHANNELS},0,1",
        "snsSaveChanSubset": f"0:{n - 1},{NP1_READOUT_CHANNELS}",
        "typeThis": "imec",
        "~imroTbl": imro,
        "~snsChanMap": channel_map + f"(SY0;{NP1_READOUT_CHANNELS}:{NP1_READOUT_CHANNELS})",
    }
    bin_path = out_folder / f"{stem}.bin"
    _write_atomic(bin_path, lambda p: p.write_bytes(data.tobytes()))
    text = "".join(f"{key}={value}\n" for key, value in meta.items())
    _write_atomic(out_folder / f"{stem}.meta", lambda p: p.write_text(text))
    return bin_path


def load_truth(truth_dir: Path) -> tuple[NumpySorting, pd.DataFrame]:
    """The truth sorting (samples from sample 0 of the recording) and its unit table (unit_id, snr, ...)."""
    truth_dir = Path(truth_dir)
    info = json.loads((truth_dir / TRUTH_UNITS_FILE).read_text())
    units = pd.DataFrame(info["units"])
    samples = np.load(truth_dir / TRUTH_SPIKES_FILE)
    labels = np.load(truth_dir / TRUTH_LABELS_FILE)
    sorting = NumpySorting.from_samples_and_labels(
        [samples], [labels], info["sampling_rate"], unit_ids=units["unit_id"].to_numpy()
    )
    return sorting, units


def load_probe_truth(out_dir: Path | str, session_id: int, probe_name: str) -> tuple[NumpySorting, pd.DataFrame]:
    """``load_truth`` of one probe insertion of the survey in out_dir (``brainobs synth``)."""
    for probe in load_survey_truth(out_dir).probe_insertions:
        if probe["session_id"] == session_id and probe["probe_name"] == probe_name:
            return load_truth(Path(out_dir) / probe["truth_dir"])
    raise TruthError(f"{out_dir}: the truth has no probe {probe_name!r} in session {session_id}")


def _generate(num_channels: int, duration_s: float, seed: int, sampling_rate: float, num_units: int):
    rng = np.random.default_rng(seed)
    firing_rates = rng.uniform(*FIRING_RATE_RANGE_HZ, size=num_units)
    return generate_ground_truth_recording(
        durations=[duration_s],
        sampling_frequency=sampling_rate,
        num_units=num_units,
        probe=neuropixels1_probe(num_channels),
        generate_sorting_kwargs=dict(firing_rates=firing_rates, refractory_period_ms=2.0),
        noise_kwargs=dict(noise_levels=NOISE_LEVEL_UV, strategy="on_the_fly"),
        generate_templates_kwargs=dict(unit_params=dict(alpha=AMPLITUDE_RANGE)),
        seed=seed,
    )


def _write_int16(recording: BaseRecording, path: Path, gain_to_uv: float, dead: list[int]) -> int:
    """Quantise the float uV traces to int16 counts, one-second chunks, the ``dead`` channels zero; return the
    sample count."""
    num_samples = recording.get_num_samples()
    chunk = int(recording.sampling_frequency)
    limits = np.iinfo(np.int16)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            for start in range(0, num_samples, chunk):
                traces = recording.get_traces(start_frame=start, end_frame=min(start + chunk, num_samples))
                counts = np.clip(np.round(traces / gain_to_uv), limits.min, limits.max)
                counts[:, dead] = 0
                f.write(counts.astype("<i2").tobytes())

    _write_atomic(path, write)
    return num_samples


def _write_truth(truth_dir: Path, recording: BaseRecording, truth, sampling_rate: float, t_start_s: float) -> None:
    spikes = truth.to_spike_vector()
    unit_ids = np.asarray(truth.unit_ids)
    _write_atomic(truth_dir / TRUTH_SPIKES_FILE, lambda p: _save_npy(p, spikes["sample_index"].astype(np.int64)))
    labels = unit_ids[spikes["unit_index"]].astype(np.int64)
    _write_atomic(truth_dir / TRUTH_LABELS_FILE, lambda p: _save_npy(p, labels))
    peak_amplitudes = _template_peak_amplitudes(recording)
    locations = truth.get_property("gt_unit_locations")
    counts = truth.count_num_spikes_per_unit(outputs="array")
    units = [
        {
            "unit_id": int(unit_id),
            "snr": float(peak_amplitudes[i].max() / NOISE_LEVEL_UV),
            "peak_channel": int(np.argmax(peak_amplitudes[i])),
            "x_um": float(locations[i, 0]),
            "y_um": float(locations[i, 1]),
            "z_um": float(locations[i, 2]),
            "num_spikes": int(counts[i]),
        }
        for i, unit_id in enumerate(unit_ids)
    ]
    info = {
        "sampling_rate": float(sampling_rate),
        "t_start_s": float(t_start_s),
        "noise_level_uV": NOISE_LEVEL_UV,
        "snr_definition": "max over channels of |template| / noise level (uV/uV)",
        "units": units,
    }
    _write_json(truth_dir / TRUTH_UNITS_FILE, info)


def _template_peak_amplitudes(recording: BaseRecording) -> np.ndarray:
    """(units, channels) absolute peak of each injected template, in uV."""
    return np.abs(recording.templates).max(axis=1)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def _write_json(path: Path, payload: dict) -> None:
    _write_atomic(path, lambda p: p.write_text(json.dumps(payload, indent=2) + "\n"))


def _write_atomic(path: Path, write) -> None:
    """Call write(tmp) on a temporary sibling, then rename it onto `path`; no partial file on failure."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
