"""Per-channel signal level of a raw probe recording (dead-channel QC)."""

from __future__ import annotations

import numpy as np
from spikeinterface.core import BaseRecording

NOISE_CHUNKS = 10  # chunks sampled evenly over the recording
NOISE_CHUNK_S = 0.5


def channel_noise(recording: BaseRecording, n_chunks: int = NOISE_CHUNKS, chunk_s: float = NOISE_CHUNK_S) -> np.ndarray:
    """(channels,) standard deviation of each channel's raw signal (uV when the recording is scaled, else counts)
    over ``n_chunks`` chunks of ``chunk_s`` seconds spread evenly over the first segment; a flat or dead channel
    gives (near) 0. Each chunk's own mean is removed, so a constant offset does not count as signal."""
    n_samples = recording.get_num_samples(segment_index=0)
    length = max(1, min(n_samples, int(chunk_s * recording.get_sampling_frequency())))
    starts = np.unique(np.linspace(0, n_samples - length, n_chunks).astype(int))
    scaled = recording.has_scaleable_traces()
    squares = np.zeros(recording.get_num_channels(), np.float64)
    for start in starts:
        traces = recording.get_traces(
            segment_index=0, start_frame=int(start), end_frame=int(start) + length, return_in_uV=scaled
        ).astype(np.float64)
        squares += ((traces - traces.mean(axis=0)) ** 2).mean(axis=0)
    return np.sqrt(squares / len(starts))
