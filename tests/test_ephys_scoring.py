"""Scoring a sorting against the generator's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from spikeinterface.core import NumpySorting

from brainobs.ingest.synthetic.scoring.ephys import score_sorting

FS = 30000.0


@pytest.fixture
def truth() -> tuple[NumpySorting, pd.DataFrame]:
    rng = np.random.default_rng(0)
    trains = {u: np.sort(rng.choice(np.arange(100, 290_000, 200), 150, replace=False)) for u in range(4)}
    sorting = NumpySorting.from_unit_dict([trains], FS)
    return sorting, pd.DataFrame({"unit_id": [0, 1, 2, 3], "snr": [12.0, 8.0, 6.0, 2.0]})


def test_truth_scores_perfectly(truth):
    sorting, units = truth
    score = score_sorting(sorting, sorting, units)
    assert score.per_unit["accuracy"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert score.num_well_detected == 4 and score.num_false_positive == 0
    assert score.fraction_high_snr_well_detected == 1.0


def test_missed_spikes_false_units_and_snr_fraction(truth):
    sorting, units = truth
    trains = {u: sorting.get_unit_spike_train(u) for u in sorting.unit_ids}
    tested = {
        "a": trains[0] + 3,  # 0.1 ms late: still matched
        "b": trains[1][::2],  # half the spikes: accuracy 0.5
        "c": trains[3],  # the low-SNR unit, perfect
        "noise": np.arange(1000, 290_000, 1500),  # matches nothing
    }
    score = score_sorting(NumpySorting.from_unit_dict([tested], FS), sorting, units)
    by_unit = score.per_unit.set_index("unit_id")
    assert by_unit.loc[0, "accuracy"] == 1.0
    assert by_unit.loc[1, "accuracy"] == pytest.approx(0.5, abs=0.01)
    assert by_unit.loc[2, "accuracy"] == 0.0  # not found
    assert by_unit["well_detected"].tolist() == [True, False, False, True]
    assert score.num_false_positive == 1 and score.num_sorted_units == 4
    # SNR >= 5 units are 0, 1, 2: one of three well detected
    assert score.fraction_high_snr_well_detected == pytest.approx(1 / 3)
    assert score.summary()["num_well_detected"] == 2


def test_inputs_are_checked(truth):
    sorting, units = truth
    with pytest.raises(ValueError, match=r"lacks columns \['snr'\]"):
        score_sorting(sorting, sorting, units.drop(columns="snr"))
    other = NumpySorting.from_unit_dict([{0: np.array([1, 2])}], 25000.0)
    with pytest.raises(ValueError, match="sampling rates differ"):
        score_sorting(other, sorting, units)
