"""Preprocessing before spike sorting: scale to uV, phase shift, high-pass or band-pass, common median reference."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import spikeinterface.preprocessing as spre
from spikeinterface.core import BaseRecording

from brainobs.populate.ephys.presets import PREPROCESSING_PRESETS

FILTERS = ("highpass", "bandpass")
CACHE_MAX_BYTES = 8 * 2**30  # float32 bytes of a preprocessed recording held in memory for the analyzer
REFERENCES = ("median", "average", None)


def preprocess(recording: BaseRecording, params: Mapping | str = "allen") -> BaseRecording:
    """A lazy float32 uV recording: phase shift (only when the recording has inter-sample shifts, e.g.
    SpikeGLX Neuropixels), then the filter, then the common reference across all channels."""
    params = PREPROCESSING_PRESETS[params] if isinstance(params, str) else params
    if params["filter"] not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {params['filter']!r}")
    if params["common_reference"] not in REFERENCES:
        raise ValueError(f"common_reference must be one of {REFERENCES}, got {params['common_reference']!r}")
    rec = spre.scale_to_uV(recording) if recording.has_scaleable_traces() else spre.astype(recording, "float32")
    if has_inter_sample_shift(rec):
        rec = spre.phase_shift(rec)
    if params["filter"] == "highpass":
        rec = spre.highpass_filter(rec, freq_min=params["freq_min"])
    else:
        rec = spre.bandpass_filter(rec, freq_min=params["freq_min"], freq_max=params["freq_max"])
    if params["common_reference"] is not None:
        rec = spre.common_reference(rec, reference="global", operator=params["common_reference"])
    return rec


def has_inter_sample_shift(recording: BaseRecording) -> bool:
    """True when the channels were not sampled simultaneously (multiplexed ADCs) and the shift is known."""
    if "inter_sample_shift" not in recording.get_property_keys():
        return False
    return bool((recording.get_property("inter_sample_shift") != 0).any())


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux MemAvailable; free pages elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cache_preprocessed(recording: BaseRecording, *, n_jobs: int = 1, max_bytes: int = CACHE_MAX_BYTES) -> BaseRecording:
    """``recording`` (lazy, preprocessed) computed once into memory, when it fits.

    The SortingAnalyzer's passes (peak channels, waveforms, amplitudes and locations each read the whole
    recording) then read the filtered traces instead of filtering again. The values equal a lazy read's up to
    the filter's chunk-edge effects (under 0.01 uV). A recording larger than ``max_bytes`` or than a quarter
    of the available memory is returned as it is, lazy.
    """
    size = recording.get_total_samples() * recording.get_num_channels() * recording.get_dtype().itemsize
    if size > min(max_bytes, available_memory() // 4):
        return recording
    return recording.save(format="memory", n_jobs=n_jobs, progress_bar=False)
