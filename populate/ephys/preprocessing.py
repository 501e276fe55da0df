"""Preprocessing: what the sorter reads and brainobs's own chain for waveforms, amplitudes and PCs (scale to uV,
phase shift, high-pass or band-pass, common median reference), held in memory up to a bound.

A sorter reads either the raw traces (it filters them itself) or, for a preset that shares its filtering
(`sorting.shares_traces`), brainobs's chain whitened as the sorter would (`held_for_sorter`): the traces are
then filtered once, and unwhitened in place for the waveform passes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import spikeinterface.preprocessing as spre
from spikeinterface.core import BaseRecording, get_random_data_chunks
from spikeinterface.core.numpyextractors import NumpyRecordingSegment

from brainobs.populate.ephys.presets import PREPROCESSING_PRESETS

FILTERS = ("highpass", "bandpass")
CACHE_MAX_BYTES = 8 * 2**30  # default bound on the float32 bytes of a preprocessed recording held in memory
CACHE_ENV = "BRAINOBS_EPHYS_CACHE_BYTES"  # overrides CACHE_MAX_BYTES; 0 always reads lazily, chunk by chunk
REFERENCES = ("median", "average", None)
UNWHITEN_CHUNK_SAMPLES = 30_000  # samples (un)whitened per step (one temporary chunk of this many rows)
WHITENING_EPS = 1e-16  # SpikeInterface's whitening regularisation for traces whose median square is at least 1
UNWHITEN_TOLERANCE = 1e-3  # the largest error of unwhitened traces, as a fraction of their standard deviation


def preprocess(recording: BaseRecording, params: Mapping | str = "allen") -> BaseRecording:
    """A lazy float32 uV recording: phase shift (only when the recording has inter-sample shifts, e.g.
    SpikeGLX Neuropixels), then the filter (`ftype`, default Butterworth, of `filter_order`, default 5, run
    forward and backward), then the common reference across all channels (only from
    `reference_min_channels` channels on, default 0)."""
    params = PREPROCESSING_PRESETS[params] if isinstance(params, str) else params
    if params["filter"] not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {params['filter']!r}")
    if params["common_reference"] not in REFERENCES:
        raise ValueError(f"common_reference must be one of {REFERENCES}, got {params['common_reference']!r}")
    rec = spre.scale_to_uV(recording) if recording.has_scaleable_traces() else spre.astype(recording, "float32")
    if has_inter_sample_shift(rec):
        rec = spre.phase_shift(rec)
    design = {"ftype": params.get("ftype", "butter"), "filter_order": params.get("filter_order", 5)}
    if params["filter"] == "highpass":
        rec = spre.highpass_filter(rec, freq_min=params["freq_min"], **design)
    else:
        rec = spre.bandpass_filter(rec, freq_min=params["freq_min"], freq_max=params["freq_max"], **design)
    referenced = rec.get_num_channels() >= params.get("reference_min_channels", 0)
    if params["common_reference"] is not None and referenced:
        rec = spre.common_reference(rec, reference="global", operator=params["common_reference"])
    return rec


def sorter_input(recording: BaseRecording) -> BaseRecording:
    """The raw recording a sorter that filters on its own reads, phase-shifted when the channels were not
    sampled together (the phase shift is no sorter's own step).

    Such a sorter (lupin: 2nd-order Bessel band-pass 150-7000 Hz, common median reference from 32 channels,
    local whitening) filters each sample once for sorting, as a bare ``run_sorter`` on the raw file does, and
    `preprocess` once more for the waveform passes. A preset that shares its filtering reads `held_for_sorter`.
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
    key = _hold(recording, max_bytes, n_jobs)
    if key is None:
        yield recording
        return
    try:
        yield HeldRecording(key)
    finally:
        del _HELD[key]


@dataclass
class SorterTraces:
    """Preprocessed traces held once in memory for a sorter and then for the waveform passes.

    `whitened` is what the sorter reads (its own filtering and whitening turned off); `unwhiten` turns the same
    arrays, in place, back into the preprocessed uV traces (the whitening matrix inverted), for the passes
    after the sorter. W is the whitening matrix (traces @ W), `recording` the lazy preprocessed chain.
    """

    key: str
    W: np.ndarray
    radius_um: float
    recording: BaseRecording

    @property
    def whitened(self) -> HeldRecording:
        return HeldRecording(self.key)

    def record_in(self, sorter_folder: Path) -> None:
        """Replace the held recording the sorter recorded in its folder (valid only in this process) with its
        lazy equivalent, the preprocessed chain whitened by W, so that the folder opens later
        (``read_sorter_folder``)."""
        (sorter_folder / "spikeinterface_recording.pickle").unlink(missing_ok=True)
        lazy = spre.whiten(self.recording, dtype="float32", mode="local", radius_um=self.radius_um, W=self.W)
        if lazy.check_serializability("json"):
            lazy.dump(sorter_folder / "spikeinterface_recording.json")
        else:
            lazy.dump(sorter_folder / "spikeinterface_recording.pickle", relative_to=sorter_folder)

    def unwhiten(self) -> HeldRecording | None:
        """The held traces multiplied back by the inverse of W in place; None (and the traces dropped) when
        that does not give the preprocessed traces back within UNWHITEN_TOLERANCE of their spread, as with a
        dead channel's near-singular whitening: read `recording` then."""
        _multiply_in_place(_HELD[self.key], inverse_without_subnormals(self.W))
        if not self._matches_recording():
            del _HELD[self.key]
            return None
        return HeldRecording(self.key)

    def _matches_recording(self) -> bool:
        """The unwhitened traces of one second in the middle of segment 0 against a lazy read of `recording`
        (the filter's chunk-edge effects, under 0.01 uV, are far inside the tolerance)."""
        samples = self.recording.get_num_samples(segment_index=0)
        width = min(samples, int(self.recording.get_sampling_frequency()))
        start = (samples - width) // 2
        expected = self.recording.get_traces(segment_index=0, start_frame=start, end_frame=start + width)
        held = _HELD[self.key].get_traces(segment_index=0, start_frame=start, end_frame=start + width)
        spread = float(np.std(expected)) or 1.0
        return float(np.max(np.abs(held - expected), initial=0.0)) <= UNWHITEN_TOLERANCE * spread


@contextmanager
def held_for_sorter(
    recording: BaseRecording, *, radius_um: float, seed: int | None, max_bytes: int | None = None, n_jobs: int = 1
) -> Iterator[SorterTraces | None]:
    """``recording`` (lazy, preprocessed) computed once into memory and whitened there as SpikeInterface's
    sorters whiten (`whitening_matrix`), in place of the sorter's own cache of its whitened traces; None when
    it does not fit (the bound of `held_in_memory`): the sorter then filters the raw traces itself. Leaving
    the block drops the traces."""
    key = _hold(recording, max_bytes, n_jobs)
    if key is None:
        yield None
        return
    try:
        W = whitening_matrix(HeldRecording(key), radius_um=radius_um, seed=seed)
        _multiply_in_place(_HELD[key], W)
        yield SorterTraces(key=key, W=W, radius_um=radius_um, recording=recording)
    finally:
        _HELD.pop(key, None)


def _hold(recording: BaseRecording, max_bytes: int | None, n_jobs: int) -> str | None:
    """``recording`` computed into memory under a new key of _HELD; None when its float32 size is above
    max_bytes (default `cache_max_bytes()`) or a quarter of the available memory."""
    max_bytes = cache_max_bytes() if max_bytes is None else max_bytes
    size = recording.get_total_samples() * recording.get_num_channels() * np.dtype(np.float32).itemsize
    if size > min(max_bytes, available_memory() // 4):
        return None
    key = uuid.uuid4().hex
    _HELD[key] = recording.save(format="memory", n_jobs=n_jobs, progress_bar=False)
    return key


def whitening_matrix(recording: BaseRecording, *, radius_um: float, seed: int | None) -> np.ndarray:
    """The matrix W of SpikeInterface's local whitening (traces @ W) as lupin computes it, `whiten(mode="local",
    radius_um, seed)`: from the same random chunks, read here from held traces instead of filtered again.
    SpikeInterface's regularisation eps is 1e-16 unless the median square of the chunks is below 1 (then it is
    derived from that median): `eps` is given when a count shows the median is not below 1, which spares the
    median of every sampled value (4 s at 384 channels)."""
    eps = None if _median_square_below_one(recording, seed) else WHITENING_EPS
    whitened = spre.whiten(recording, dtype="float32", mode="local", radius_um=radius_um, seed=seed, eps=eps)
    return np.asarray(whitened._kwargs["W"], dtype=np.float32)


def inverse_without_subnormals(matrix: np.ndarray) -> np.ndarray:
    """The float32 inverse of a whitening matrix, entries below float32's smallest normal number set to 0.

    A local whitening matrix is banded, and its inverse decays away from the diagonal into subnormal numbers
    (12,010 of 147,456 at 384 channels), on which the CPU's arithmetic is slow: unwhitening 384 channels x 10 s
    took 17.2 s with them and 1.1 s without; they change no trace by more than 1e-38."""
    inverse = np.linalg.inv(np.asarray(matrix, dtype=np.float64))
    inverse[np.abs(inverse) < np.finfo(np.float32).tiny] = 0.0
    return inverse.astype(np.float32)


def _median_square_below_one(recording: BaseRecording, seed: int | None) -> bool:
    """Whether most of whitening's random chunks (the same draw) are within (-1, 1), counted chunk by chunk (the
    chunks are freed before SpikeInterface draws its own copy)."""
    chunks = get_random_data_chunks(recording, concatenated=False, return_in_uV=False, seed=seed)
    return 2 * sum(np.count_nonzero(np.abs(chunk) < 1.0) for chunk in chunks) > sum(chunk.size for chunk in chunks)


def _multiply_in_place(recording: BaseRecording, matrix: np.ndarray) -> None:
    """Every segment's traces (a held, shared-memory save) replaced by traces @ matrix, chunk by chunk."""
    for index in range(recording.get_num_segments()):
        traces = recording.get_traces(segment_index=index)
        traces.flags.writeable = True  # a shared-memory save is handed out read-only; this process owns it
        for start in range(0, traces.shape[0], UNWHITEN_CHUNK_SAMPLES):
            block = traces[start : start + UNWHITEN_CHUNK_SAMPLES]
            block[:] = block @ matrix
