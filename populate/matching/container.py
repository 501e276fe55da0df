"""Cross-session cell matching of one container: every ROI gets a line (one line = one cell_specimen_id).

Steps: every pair of experiments (fixed = the earlier one in the input order) is registered and its ROIs
assigned (registration.py, pairwise.py); the pairwise matches are merged into lines (nway.py); ROIs on no
line become singletons. A pair in which either experiment has no ROIs is neither registered nor matched,
so an experiment without ROIs simply takes no part. A container of one experiment is not matched at all:
each ROI is its own line and the outcome is SINGLE_EXPERIMENT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import combinations

from brainobs.populate.matching.inputs import ExperimentROIs, MatchingInputError, MatchingParams
from brainobs.populate.matching.nway import Member, merge_lines
from brainobs.populate.matching.pairwise import PairMatch, match_pair
from brainobs.populate.matching.registration import PairTransform, register_pair


class MatchOutcome(StrEnum):
    """How a container's cell_specimen_ids came about."""

    MATCHED = "matched"
    SINGLE_EXPERIMENT = "single_experiment"


@dataclass(frozen=True)
class RoiLine:
    """The line (0-based, in the order of ContainerMatch.rois) one ROI belongs to."""

    experiment_id: int
    cell_roi_id: int
    valid: bool
    line: int


@dataclass(frozen=True)
class ContainerMatch:
    """Result of matching one container.

    rois: one entry per input ROI, in input order. Lines are numbered by their first ROI in that order, so
    the numbering is reproducible; the caller maps line numbers to cell_specimen_id integers.
    transforms, pairs: one per registered pair of experiments.
    """

    outcome: MatchOutcome
    rois: tuple[RoiLine, ...]
    transforms: tuple[PairTransform, ...]
    pairs: tuple[PairMatch, ...]

    @property
    def n_lines(self) -> int:
        return 1 + max((r.line for r in self.rois), default=-1)

    def line_of(self) -> dict[Member, int]:
        """(experiment_id, cell_roi_id) -> line number."""
        return {(r.experiment_id, r.cell_roi_id): r.line for r in self.rois}

    def lines(self) -> list[list[Member]]:
        """Members of each line, in line order."""
        out: list[list[Member]] = [[] for _ in range(self.n_lines)]
        for r in self.rois:
            out[r.line].append((r.experiment_id, r.cell_roi_id))
        return out


def match_container(experiments: Sequence[ExperimentROIs], params: MatchingParams | None = None) -> ContainerMatch:
    """Give every ROI of the container's experiments (ordered by acquisition) a line.

    Raises RegistrationError (a ValueError) naming the pair when two experiments with ROIs cannot be
    registered, and MatchingInputError for an empty container or a repeated experiment_id.
    """
    params = params or MatchingParams()
    ids = [e.experiment_id for e in experiments]
    if not ids:
        raise MatchingInputError("match_container: the container holds no experiments")
    if len(set(ids)) != len(ids):
        raise MatchingInputError(f"match_container: experiment ids repeat: {ids}")
    if len(experiments) == 1:
        rois = tuple(RoiLine(ids[0], r.cell_roi_id, r.valid, k) for k, r in enumerate(experiments[0].rois))
        return ContainerMatch(MatchOutcome.SINGLE_EXPERIMENT, rois, (), ())

    transforms, pairs = [], []
    for fixed, moving in combinations(experiments, 2):
        if not fixed.rois or not moving.rois:
            continue
        transform = register_pair(
            fixed.average_projection,
            moving.average_projection,
            params,
            fixed.experiment_id,
            moving.experiment_id,
        )
        transforms.append(transform)
        pairs.append(match_pair(fixed, moving, transform.matrix, params))

    line_members = merge_lines(ids, pairs, params.missing_pair_cost)
    line_index = {member: k for k, line in enumerate(line_members) for member in line}
    numbering: dict[int, int] = {}
    rois = []
    for experiment in experiments:
        for roi in experiment.rois:
            member = (experiment.experiment_id, roi.cell_roi_id)
            key = line_index.get(member, -1 - len(rois))  # a singleton gets a key no other ROI has
            numbering.setdefault(key, len(numbering))
            rois.append(RoiLine(experiment.experiment_id, roi.cell_roi_id, roi.valid, numbering[key]))
    return ContainerMatch(MatchOutcome.MATCHED, tuple(rois), tuple(transforms), tuple(pairs))
