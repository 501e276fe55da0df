"""Trace correlation with true calcium and event F1 within +-2 frames."""

import numpy as np
import pytest
import scipy.sparse as sparse
from scipy.sparse.csgraph import maximum_bipartite_matching

from brainobs.ingest.synthetic.scoring.traces import (
    EventScore,
    event_f1,
    event_onsets,
    match_frames,
    trace_correlations,
)


def test_trace_correlations_follow_the_match():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(3, 200))
    traces = np.vstack([2.0 * truth[2] + 5.0, -truth[0], np.full(200, np.nan), np.ones(200)])
    r = trace_correlations(traces, truth, [(0, 2), (1, 0), (0, 1), (2, 0), (3, 1)])
    assert r[0] == pytest.approx(1.0)
    assert r[1] == pytest.approx(-1.0)
    assert abs(r[2]) < 0.3
    assert np.isnan(r[3]) and np.isnan(r[4])
    with pytest.raises(ValueError, match="frames"):
        trace_correlations(traces[:, :10], truth, [(0, 0)])


def test_event_f1_tolerance_is_two_frames_each_way():
    true = np.zeros(100)
    true[[20, 50, 80]] = 1
    events = np.zeros(100)
    events[[22, 47, 80, 83]] = [0.3, 0.2, 0.5, 0.4]  # 22: +2 hit, 47: -3 miss, 83: second detection
    score = event_f1(events, true)
    assert (score.true_positives, score.false_positives, score.false_negatives) == (2, 2, 1)
    assert score.precision == pytest.approx(0.5)
    assert score.recall == pytest.approx(2 / 3)
    assert score.f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert event_f1(events, true, tolerance_frames=3).true_positives == 3


def test_activity_in_neighbouring_frames_is_one_event_on_both_sides():
    # was: every frame holding a spike, and every detected frame, counted as its own event
    active = np.zeros(20, bool)
    active[[2, 3, 4, 5, 9, 11, 12]] = True
    assert event_onsets(active).tolist() == [2, 4, 9, 11]  # 3 joins 2, 5 joins 4, 12 joins 11; 9 and 11 apart
    assert event_onsets(np.zeros(5, bool)).size == 0
    true = np.zeros(40)
    true[[10, 11, 30]] = [1, 2, 1]  # a spike frame and its neighbour: one true event
    events = np.zeros(40)
    events[[11, 12, 25]] = [0.2, 0.1, 0.3]  # one detection spread over two frames, and a false one
    score = event_f1(events, true)
    assert (score.true_positives, score.false_positives, score.false_negatives) == (1, 1, 1)


def test_event_f1_pools_rows_and_ignores_nan_rows():
    true = np.zeros((2, 30))
    true[0, 5] = 2  # two spikes in one frame count as one true event
    true[1, 10] = 1
    events = np.zeros((2, 30))
    events[0, 6] = 1.0
    events[1] = np.nan
    score = event_f1(events, true)
    assert (score.true_positives, score.false_positives, score.false_negatives) == (1, 0, 1)
    empty = EventScore(0, 0, 0)
    assert np.isnan(empty.precision) and np.isnan(empty.recall) and np.isnan(empty.f1)
    with pytest.raises(ValueError, match="shape"):
        event_f1(events[:, :10], true)


def test_greedy_matching_is_maximum():
    rng = np.random.default_rng(1)
    for _ in range(200):
        detected = np.unique(rng.integers(0, 40, rng.integers(0, 12)))
        true = np.unique(rng.integers(0, 40, rng.integers(0, 12)))
        tol = int(rng.integers(0, 4))
        adjacency = sparse.csr_matrix(np.abs(detected[:, None] - true[None, :]) <= tol)
        best = (
            int((maximum_bipartite_matching(adjacency, perm_type="column") >= 0).sum())
            if detected.size and true.size
            else 0
        )
        assert match_frames(detected, true, tol) == best
