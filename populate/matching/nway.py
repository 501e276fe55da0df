"""N-way merge: pairwise ROI matches of a container become lines, one per cell across its experiments.

A node is (experiment_id, cell_roi_id); every pairwise match is an edge. A connected component with at
most one ROI per experiment is a line as it stands (chains included: A-B and B-C matched make one line
even when A and C were not matched). A component holding two ROIs of one experiment is a conflict (its
pair matches disagree). It is resolved by scoring candidate lines and keeping the lowest-scoring ones:

- candidates: one per matched edge, grown greedily: while some ROI of a not-yet-covered experiment is
  matched to a member, add the one that lowers the line's score most (ties: lowest (experiment, ROI) key);
- score of a line: the sum over all experiment pairs of the container of the pair cost of its two members,
  where a pair counts missing_pair_cost (1000) when either member is absent or the two members were not
  a candidate pair (an edge of that pair's matching graph); lines covering more linked experiments score
  lower, and the pair costs (in [0, 2]) break ties between equally covering lines;
- selection: the lowest-scoring candidate is kept, candidates sharing an ROI with a kept line are dropped,
  and so on; ROIs of the component left uncovered are resolved again on the graph that remains.
ROIs on no line afterwards become singletons (done by the caller, which knows every ROI).
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from brainobs.populate.matching.pairwise import PairMatch

Member = tuple[int, int]
"""(experiment_id, cell_roi_id)"""


class _LineScorer:
    """Score of a set of members: sum over experiment pairs of the pair cost, missing_pair_cost if absent."""

    def __init__(self, pairs: Sequence[PairMatch], n_experiments: int, missing_pair_cost: float) -> None:
        self.missing = missing_pair_cost
        self.baseline = missing_pair_cost * n_experiments * (n_experiments - 1) / 2
        self.costs: dict[frozenset[Member], float] = {}
        for pair in pairs:
            for (fixed_roi, moving_roi), cost in pair.candidate_costs.items():
                key = frozenset({(pair.fixed_experiment_id, fixed_roi), (pair.moving_experiment_id, moving_roi)})
                self.costs[key] = cost

    def __call__(self, members: frozenset[Member]) -> float:
        ordered = sorted(members)
        saved = 0.0
        for k, a in enumerate(ordered):
            for b in ordered[k + 1 :]:
                cost = self.costs.get(frozenset({a, b}))
                if cost is not None:
                    saved += self.missing - cost
        return self.baseline - saved


def merge_lines(
    experiment_ids: Sequence[int], pairs: Sequence[PairMatch], missing_pair_cost: float
) -> list[frozenset[Member]]:
    """Lines (sets of members, >= 2 each, disjoint, <= 1 ROI per experiment) from the pairwise matches."""
    score = _LineScorer(pairs, len(experiment_ids), missing_pair_cost)
    graph = nx.Graph()
    for pair in pairs:
        graph.add_edges_from(
            ((pair.fixed_experiment_id, m.fixed_roi_id), (pair.moving_experiment_id, m.moving_roi_id))
            for m in pair.matches
        )
    return _resolve(graph, score)


def _resolve(graph: nx.Graph, score: _LineScorer) -> list[frozenset[Member]]:
    lines: list[frozenset[Member]] = []
    for component in nx.connected_components(graph):
        if len(component) < 2:
            continue
        if len({experiment for experiment, _ in component}) == len(component):
            lines.append(frozenset(component))
            continue
        sub = graph.subgraph(component)
        candidates = {_grow(sub, edge, score) for edge in sub.edges}
        covered: set[Member] = set()
        for line in sorted(candidates, key=lambda c: (score(c), sorted(c))):
            if covered.isdisjoint(line):
                lines.append(line)
                covered |= line
        lines.extend(_resolve(sub.subgraph(component - covered), score))
    return lines


def _grow(graph: nx.Graph, seed: tuple[Member, Member], score: _LineScorer) -> frozenset[Member]:
    line = frozenset(seed)
    while True:
        present = {experiment for experiment, _ in line}
        frontier = {n for m in line for n in graph.neighbors(m) if n[0] not in present}
        if not frontier:
            return line
        best = min(frontier, key=lambda n: (score(line | {n}), n))
        line = line | {best}
