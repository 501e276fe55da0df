"""Score cross-session cell matching against ground truth.

Truth gives, per experiment and ROI, the true cell id, or -1 for an ROI that is no true cell.

Pairwise (cross-session pairs: two ROIs of different experiments):
- true pairs: both ROIs of the same true cell; recall = true pairs on one predicted line / true pairs.
- false merges: predicted same-line pairs whose ROIs are both true cells, but different ones;
  false_merge_rate = false merges / predicted same-line pairs of two true-cell ROIs. Same-line pairs
  involving an ROI that is no true cell are counted apart (n_noncell_pairs): their identity is undefined.
N-way:
- a true cell seen in >= 2 experiments is recovered when one predicted line holds one of its ROIs in every
  experiment where it has an ROI, and no ROI of another true cell; recall = recovered / such cells.
- a predicted line of >= 2 ROIs is a false merge when its true-cell ROIs belong to >= 2 true cells;
  false_merge_rate = false-merge lines / lines of >= 2 ROIs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations

Member = tuple[int, int]
"""(experiment_id, cell_roi_id)"""


@dataclass(frozen=True)
class MatchingScore:
    n_true_pairs: int
    n_recovered_pairs: int
    pair_recall: float
    n_cell_pairs_predicted: int
    n_false_merge_pairs: int
    pair_false_merge_rate: float
    n_noncell_pairs: int
    n_multi_session_cells: int
    n_cells_recovered: int
    nway_recall: float
    n_multi_roi_lines: int
    n_false_merge_lines: int
    nway_false_merge_rate: float


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def score_matching(predicted: Mapping[Member, int], truth: Mapping[int, Mapping[int, int]]) -> MatchingScore:
    """Score predicted lines ((experiment_id, cell_roi_id) -> line) against truth
    (experiment_id -> {cell_roi_id: true cell id or -1}); both must name the same ROIs."""
    true_id = {(e, r): int(c) for e, rois in truth.items() for r, c in rois.items()}
    if set(true_id) != set(predicted):
        extra, missing = sorted(set(predicted) - set(true_id)), sorted(set(true_id) - set(predicted))
        raise ValueError(
            f"score_matching: predicted and truth ROIs differ; not in truth: {extra[:5]}, "
            f"not predicted: {missing[:5]} (experiment_id, cell_roi_id)"
        )
    by_line: dict[int, list[Member]] = defaultdict(list)
    by_cell: dict[int, list[Member]] = defaultdict(list)
    for member, line in predicted.items():
        by_line[line].append(member)
        if true_id[member] >= 0:
            by_cell[true_id[member]].append(member)

    true_pairs = [(a, b) for members in by_cell.values() for a, b in combinations(members, 2) if a[0] != b[0]]
    recovered = sum(predicted[a] == predicted[b] for a, b in true_pairs)
    cell_pairs = false_pairs = noncell_pairs = 0
    for members in by_line.values():
        for a, b in combinations(members, 2):
            if a[0] == b[0]:
                continue
            if true_id[a] < 0 or true_id[b] < 0:
                noncell_pairs += 1
            else:
                cell_pairs += 1
                false_pairs += true_id[a] != true_id[b]

    multi_cells = {c: m for c, m in by_cell.items() if len({e for e, _ in m}) >= 2}
    cells_recovered = sum(_line_recovers(members, predicted, true_id, by_line) for members in multi_cells.values())
    multi_lines = [m for m in by_line.values() if len(m) >= 2]
    merged_lines = sum(len({true_id[x] for x in m} - {-1}) >= 2 for m in multi_lines)
    return MatchingScore(
        n_true_pairs=len(true_pairs),
        n_recovered_pairs=recovered,
        pair_recall=_ratio(recovered, len(true_pairs)),
        n_cell_pairs_predicted=cell_pairs,
        n_false_merge_pairs=false_pairs,
        pair_false_merge_rate=_ratio(false_pairs, cell_pairs),
        n_noncell_pairs=noncell_pairs,
        n_multi_session_cells=len(multi_cells),
        n_cells_recovered=cells_recovered,
        nway_recall=_ratio(cells_recovered, len(multi_cells)),
        n_multi_roi_lines=len(multi_lines),
        n_false_merge_lines=merged_lines,
        nway_false_merge_rate=_ratio(merged_lines, len(multi_lines)),
    )


def _line_recovers(
    cell_members: list[Member],
    predicted: Mapping[Member, int],
    true_id: Mapping[Member, int],
    by_line: Mapping[int, list[Member]],
) -> bool:
    """Whether some line holds an ROI of this cell in each of its experiments and no ROI of another cell."""
    cell = true_id[cell_members[0]]
    experiments = {e for e, _ in cell_members}
    for line in {predicted[m] for m in cell_members}:
        members = by_line[line]
        ids = {true_id[m] for m in members} - {-1}
        if ids == {cell} and {m[0] for m in members if true_id[m] == cell} == experiments:
            return True
    return False
