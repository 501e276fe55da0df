"""Duplicate-spike removal on hand-made spike trains (0.166 ms window, channels within 5, keep the earlier)."""

from __future__ import annotations

import numpy as np
import pytest
from spikeinterface.core import NumpySorting

from brainobs.populate.ephys.duplicates import find_duplicate_spikes, remove_duplicate_spikes
from brainobs.populate.ephys.presets import DUPLICATE_REMOVAL

FS = 30000.0  # 0.166 ms = 4.98 samples: a gap of 4 samples is a duplicate, 5 is not


def test_pinned_parameters():
    assert DUPLICATE_REMOVAL == {
        "within_unit_window_s": 0.000166,
        "between_unit_window_s": 0.000166,
        "between_unit_channel_distance": 5,
    }


def test_within_unit_keeps_the_earlier_spike():
    samples = np.array([100, 104, 105, 200, 300, 303, 306])
    units = np.zeros(7, dtype=int)
    duplicate = find_duplicate_spikes(samples, units, {0: 10}, FS)
    # 104 follows 100 by 4 samples (removed); 105 follows 104 by 1 (removed); 303, 306 chain off 300
    np.testing.assert_array_equal(duplicate, [False, True, True, False, False, True, True])


def test_within_unit_gap_of_five_samples_is_kept():
    duplicate = find_duplicate_spikes(np.array([0, 5, 10]), np.zeros(3, dtype=int), {0: 3}, FS)
    assert not duplicate.any()


def test_between_units_on_nearby_channels():
    # unit 7 on channel 20, unit 8 on channel 25 (distance 5: compared), unit 9 on channel 26 (distance 6 from 20)
    samples = np.array([1000, 1003, 2000, 2010, 3000, 2998, 1002])
    units = np.array([7, 8, 7, 8, 7, 8, 9])
    duplicate = find_duplicate_spikes(samples, units, {7: 20, 8: 25, 9: 26}, FS)
    # 1003 (unit 8) follows 1000 (unit 7): removed. 3000 (unit 7) follows 2998 (unit 8): the later goes.
    # 1002 (unit 9) is 6 channels from unit 7 but 1 from unit 8, whose 1003 comes after it: 1003 is removed
    # already; 1002 stays (it is the earlier of that pair and unit 7 is out of range).
    np.testing.assert_array_equal(duplicate, [False, True, False, False, True, False, False])


def test_units_far_apart_are_not_compared():
    samples = np.array([500, 501])
    duplicate = find_duplicate_spikes(samples, np.array([1, 2]), {1: 0, 2: 6}, FS)
    assert not duplicate.any()


def test_exact_tie_keeps_the_unit_listed_first():
    duplicate = find_duplicate_spikes(np.array([50, 50]), np.array([4, 3]), {3: 1, 4: 2}, FS)
    np.testing.assert_array_equal(duplicate, [True, False])


def test_unknown_unit_is_an_error():
    with pytest.raises(ValueError, match=r"no peak channel for units \[5\]"):
        find_duplicate_spikes(np.array([1]), np.array([5]), {4: 0}, FS)


def test_remove_from_sorting_counts_per_unit():
    sorting = NumpySorting.from_samples_and_labels([np.array([10, 12, 40, 41, 90])], [np.array([0, 0, 1, 0, 1])], FS)
    cleaned, removed = remove_duplicate_spikes(sorting, {0: 5, 1: 7})
    assert removed == {0: 2, 1: 0}  # 12 (within unit 0) and 41 (after unit 1's 40)
    np.testing.assert_array_equal(cleaned.get_unit_spike_train(0), [10])
    np.testing.assert_array_equal(cleaned.get_unit_spike_train(1), [40, 90])
