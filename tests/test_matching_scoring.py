"""Scoring of cross-session matching against truth (pairwise and n-way recall and false merges)."""

import math

import pytest

from brainobs.ingest.synthetic.scoring.matching import score_matching

# three experiments; true cells 1, 2, 3 and a non-cell ROI (-1)
TRUTH = {
    10: {101: 1, 102: 2, 103: 3},
    20: {201: 1, 202: 2, 203: -1},
    30: {301: 1, 302: 3},
}


def _lines(*groups):
    return {member: line for line, group in enumerate(groups) for member in group}


def test_perfect_prediction():
    predicted = _lines([(10, 101), (20, 201), (30, 301)], [(10, 102), (20, 202)], [(10, 103), (30, 302)], [(20, 203)])
    s = score_matching(predicted, TRUTH)
    assert (s.n_true_pairs, s.n_recovered_pairs, s.pair_recall) == (5, 5, 1.0)
    assert (s.n_cell_pairs_predicted, s.n_false_merge_pairs, s.pair_false_merge_rate) == (5, 0, 0.0)
    assert (s.n_multi_session_cells, s.n_cells_recovered, s.nway_recall) == (3, 3, 1.0)
    assert (s.n_multi_roi_lines, s.n_false_merge_lines, s.nway_false_merge_rate) == (3, 0, 0.0)
    assert s.n_noncell_pairs == 0


def test_split_and_merge_errors():
    # cell 1 split (30:301 alone), cell 3's ROI in experiment 30 merged into cell 2's line, non-cell joins cell 3
    predicted = _lines([(10, 101), (20, 201)], [(30, 301)], [(10, 102), (20, 202), (30, 302)], [(10, 103), (20, 203)])
    s = score_matching(predicted, TRUTH)
    # true pairs: cell 1 (3), cell 2 (1), cell 3 (1); recovered: 101-201 and 102-202
    assert (s.n_true_pairs, s.n_recovered_pairs) == (5, 2) and s.pair_recall == pytest.approx(0.4)
    # same-line pairs of two cells: 101-201, 102-202, 102-302 (2 vs 3), 202-302 (2 vs 3)
    assert (s.n_cell_pairs_predicted, s.n_false_merge_pairs, s.pair_false_merge_rate) == (4, 2, 0.5)
    assert s.n_noncell_pairs == 1
    # no cell is recovered whole: 1 is split, 2's line holds cell 3, 3 is split
    assert (s.n_cells_recovered, s.nway_recall) == (0, 0.0)
    # lines of >= 2 ROIs: {101,201}, {102,202,302} (merged), {103,203} (one cell + non-cell: not a merge)
    assert (s.n_multi_roi_lines, s.n_false_merge_lines) == (3, 1) and s.nway_false_merge_rate == pytest.approx(1 / 3)


def test_a_line_with_a_noncell_still_recovers_its_cell():
    predicted = _lines([(10, 101), (20, 201), (30, 301)], [(10, 102), (20, 202)], [(10, 103), (30, 302), (20, 203)])
    s = score_matching(predicted, TRUTH)
    assert s.nway_recall == 1.0 and s.nway_false_merge_rate == 0.0 and s.n_noncell_pairs == 2


def test_all_singletons_and_empty_truth():
    predicted = _lines(*[[(e, r)] for e, rois in TRUTH.items() for r in rois])
    s = score_matching(predicted, TRUTH)
    assert s.pair_recall == 0.0 and math.isnan(s.pair_false_merge_rate) and s.n_multi_roi_lines == 0
    empty = score_matching({}, {})
    assert math.isnan(empty.pair_recall) and math.isnan(empty.nway_recall)


def test_mismatched_roi_sets_are_refused():
    predicted = _lines([(10, 101), (20, 201)], [(99, 1)])
    with pytest.raises(ValueError, match=r"not in truth: \[\(99, 1\)\]"):
        score_matching(predicted, TRUTH)
