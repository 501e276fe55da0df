"""Preprocessing: what the sorter reads (the raw traces; it filters them itself) and brainobs's own chain
for waveforms, amplitudes and PCs (scale to uV, phase shift, high-pass or band-pass, common median reference),
held in memory up to a bound."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import spikeinterface.preprocessing as spre
from spikeinterface.core import BaseRecording
from spikeinterface.core.numpyextractors import NumpyRecordingSegment

from brainobs.populate.ephys.presets import PREPROCESSING_PRESETS

FILTERS = ("highpass", "bandpass")
CACHE_MAX_BYTES = 8 * 2**30  # default bound on the float32 bytes of a preprocessed recording held in memory
CACHE_ENV = "BRAINOBS_EPHYS_CACHE_BYTES"  # overrides CACHE_MAX_BYTES; 0 always reads lazily, chunk by chunk
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


def sorter_input(recording: BaseRecording) -> BaseRecording:
    """The recording a sorter reads: the raw traces, phase-shifted when the channels were not sampled together.

    Every sorter preset filters, references and whitens on its own (lupin: 2nd-order Bessel band-pass
    150-7000 Hz, common median reference from 32 channels, local whitening), so brainobs's chain (`preprocess`)
    is not applied before it: each sample is filtered once for sorting, as a bare ``run_sorter`` on the raw
    file does, and once by `preprocess` for the waveform passes. The phase shift is no sorter's own step.
    """
    return spre.phase_shift(recording) if has_inter_sample_shift(recording) else recording


def cache_max_bytes() -> int:
    """The bound on a held preprocessed recording: BRAINOBS_EPHYS_CACHE_BYTES when set, else CACHE_MAX_BYTES."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if not value:
        return CACHE_MAX_BYTES
    try:
        bound = int(value)
    except ValueError:
        raise ValueError(f"{CACHE_ENV}={value!r}: give a whole number of bytes (0 reads lazily)") from None
    if bound < 0:
        raise ValueError(f"{CACHE_ENV}={value!r}: the number of bytes cannot be negative")
    return bound


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


class HeldRecording(BaseRecording):
    """A preprocessed recording computed into this process's memory, serialised as a key.

    An in-memory recording cannot be dumped; this one pickles as its key (SpikeInterface pickles recordings it
    hands to a worker or a folder), and the reload finds the same arrays (no copy). Valid only in the process
    that made it, inside ``held_in_memory``.
    """

    def __init__(self, key: str):
        source = _HELD.get(key)
        if source is None:
            raise RuntimeError(
                f"no preprocessed traces are held under {key!r} in this process: a HeldRecording is valid only "
                "inside held_in_memory(), in the process that made it"
            )
        BaseRecording.__init__(self, source.get_sampling_frequency(), source.channel_ids, source.get_dtype())
        for index in range(source.get_num_segments()):
            traces = source.get_traces(segment_index=index)
            t_start = source.get_start_time(segment_index=index)
            self.add_recording_segment(NumpyRecordingSegment(traces, source.get_sampling_frequency(), t_start))
        source.copy_metadata(self)
        self._serializability["json"] = False
        self._serializability["pickle"] = True
        self._kwargs = {"key": key}


_HELD: dict[str, BaseRecording] = {}


@contextmanager
def held_in_memory(
    recording: BaseRecording, *, max_bytes: int | None = None, n_jobs: int = 1
) -> Iterator[BaseRecording]:
    """``recording`` (lazy, preprocessed) computed once into memory, as a HeldRecording, when it fits.

    Every SortingAnalyzer pass (peak channels, waveforms, amplitudes, PCs) reads these traces instead of
    filtering again. The values equal a lazy read's up to the filter's chunk-edge effects (under 0.01 uV).
    A recording larger than ``max_bytes`` (default `cache_max_bytes()`) or than a quarter of the available
    memory is yielded as it is, lazy: each pass then filters the chunks it reads, with the same results, in
    bounded memory. Leaving the block drops the key: the traces are freed once nothing else refers to them.
    """
    max_bytes = cache_max_bytes() if max_bytes is None else max_bytes
    size = recording.get_total_samples() * recording.get_num_channels() * recording.get_dtype().itemsize
    if size > min(max_bytes, available_memory() // 4):
        yield recording
        return
    key = uuid.uuid4().hex
    _HELD[key] = recording.save(format="memory", n_jobs=n_jobs, progress_bar=False)
    try:
        yield HeldRecording(key)
    finally:
        del _HELD[key]
