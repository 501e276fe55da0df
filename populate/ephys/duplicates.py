"""Removal of double-counted spikes (Allen kilosort_postprocessing; docs/methods.md).

Within a unit, a spike closer than the window to the unit's previous spike is removed. Then, for every
pair of units whose peak channels are within `channel_distance` of each other, the two trains are
merged and a spike closer than the window to the previous spike of the merged train is removed. The
earlier spike is always kept; on an exact tie, the spike of the unit listed first is kept.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from spikeinterface.core import BaseSorting, NumpySorting

from brainobs.populate.ephys.presets import DUPLICATE_REMOVAL


def find_duplicate_spikes(
    spike_samples: np.ndarray,
    spike_units: np.ndarray,
    peak_channels: Mapping[object, int],
    sampling_rate: float,
    *,
    within_unit_window_s: float = DUPLICATE_REMOVAL["within_unit_window_s"],
    between_unit_window_s: float = DUPLICATE_REMOVAL["between_unit_window_s"],
    channel_distance: int = DUPLICATE_REMOVAL["between_unit_channel_distance"],
) -> np.ndarray:
    """Boolean mask over the spikes, True for a duplicate to remove.

    spike_samples: sample index of each spike; spike_units: its unit id; peak_channels: unit id -> peak
    channel index (units are taken in this mapping's order for tie-breaks).
    """
    spike_samples = np.asarray(spike_samples, dtype=np.int64)
    spike_units = np.asarray(spike_units)
    if spike_samples.shape != spike_units.shape:
        raise ValueError("spike_samples and spike_units must have the same length")
    unknown = set(np.unique(spike_units).tolist()) - set(peak_channels)
    if unknown:
        raise ValueError(f"no peak channel for units {sorted(unknown)}")
    within = within_unit_window_s * sampling_rate
    between = between_unit_window_s * sampling_rate
    duplicate = np.zeros(spike_samples.size, dtype=bool)
    units = list(peak_channels)
    members = {u: np.flatnonzero(spike_units == u) for u in units}
    for u in units:
        idx = members[u][np.argsort(spike_samples[members[u]], kind="stable")]
        duplicate[idx[1:][np.diff(spike_samples[idx]) < within]] = True
        members[u] = idx[~duplicate[idx]]
    for i, u1 in enumerate(units):
        for u2 in units[i + 1 :]:
            if abs(peak_channels[u1] - peak_channels[u2]) <= channel_distance:
                duplicate[_later_of_close_pairs(spike_samples, members[u1], members[u2], between)] = True
    return duplicate


def remove_duplicate_spikes(
    sorting: BaseSorting, peak_channels: Mapping[object, int], **windows
) -> tuple[NumpySorting, dict]:
    """A copy of a one-segment sorting without duplicates, and the number removed per unit."""
    if sorting.get_num_segments() != 1:
        raise ValueError("duplicate removal expects a one-segment sorting")
    spikes = sorting.to_spike_vector()
    unit_ids = np.asarray(sorting.unit_ids)
    labels = unit_ids[spikes["unit_index"]]
    ordered = {u: peak_channels[u] for u in unit_ids}
    duplicate = find_duplicate_spikes(spikes["sample_index"], labels, ordered, sorting.sampling_frequency, **windows)
    kept = NumpySorting.from_samples_and_labels(
        [spikes["sample_index"][~duplicate]], [labels[~duplicate]], sorting.sampling_frequency, unit_ids=unit_ids
    )
    removed = {u: int(duplicate[labels == u].sum()) for u in unit_ids}
    return kept, removed


def _later_of_close_pairs(samples: np.ndarray, idx1: np.ndarray, idx2: np.ndarray, window: float) -> np.ndarray:
    """Indices (into samples) of spikes that follow the previous spike of the merged train by < window."""
    idx = np.concatenate([idx1, idx2])
    rank = np.concatenate([np.zeros(idx1.size), np.ones(idx2.size)])
    order = np.lexsort((rank, samples[idx]))
    merged = idx[order]
    close = np.diff(samples[merged]) < window
    return merged[1:][close]
