"""What one container's matching stores: the summary, a cell_specimen_id per ROI, and each pair's statistics.

Each line of the n-way match becomes one cell_specimen_id, ``container_id * 100000 + line``, so ids are unique
across containers and stable for a given container and parameter sets. A ROI with no match is a line of its
own. Unrelated fields of view (a RegistrationError) are a data finding: the outcome is ``failed`` with the
reason, which container QC reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainobs.populate.matching.container import ContainerMatch, match_container
from brainobs.populate.matching.inputs import ExperimentROIs, MatchingParams
from brainobs.populate.matching.registration import RegistrationError

SPECIMEN_ID_STRIDE = 100_000


def cell_specimen_id(container_id: int, line: int) -> int:
    return int(container_id) * SPECIMEN_ID_STRIDE + int(line)


@dataclass(frozen=True)
class CellSpecimen:
    experiment_id: int
    cell_roi_id: int
    cell_specimen_id: int


@dataclass(frozen=True)
class PairSummary:
    fixed_experiment_id: int
    moving_experiment_id: int
    method: str  # registration candidate kept (best SSIM)
    ssim: float
    transform: np.ndarray  # 2x3 affine: moving pixel (x, y, 1) -> fixed pixel (x, y)
    n_matched: int
    match_fraction: float
    mean_cost: float | None  # None when no ROI pair was matched


@dataclass(frozen=True)
class ContainerMatching:
    outcome: str  # 'matched', 'single_experiment' or 'failed'
    failure: str
    n_experiments: int
    n_cells: int  # cell_specimen_ids (lines), singletons included
    n_cells_all_sessions: int  # cells found in every experiment of the container
    lowest_match_fraction: float | None
    lowest_ssim: float | None
    specimens: tuple[CellSpecimen, ...]
    pairs: tuple[PairSummary, ...]


def match_and_summarize(
    container_id: int, experiments: Sequence[ExperimentROIs], params: MatchingParams
) -> ContainerMatching:
    """Match the container's valid ROIs across its experiments and summarize the result for storage."""
    try:
        match = match_container(experiments, params)
    except RegistrationError as err:
        return ContainerMatching("failed", str(err), len(experiments), 0, 0, None, None, (), ())
    return summarize(container_id, match, len(experiments))


def summarize(container_id: int, match: ContainerMatch, n_experiments: int) -> ContainerMatching:
    experiments_per_line = [len({experiment for experiment, _roi in line}) for line in match.lines()]
    fractions = [p.match_fraction for p in match.pairs]
    transforms = {(t.fixed_experiment_id, t.moving_experiment_id): t for t in match.transforms}
    pairs = tuple(
        PairSummary(
            fixed_experiment_id=p.fixed_experiment_id,
            moving_experiment_id=p.moving_experiment_id,
            method=(t := transforms[(p.fixed_experiment_id, p.moving_experiment_id)]).method,
            ssim=float(t.ssim),
            transform=np.asarray(t.matrix),
            n_matched=p.n_matched,
            match_fraction=float(p.match_fraction),
            mean_cost=float(p.mean_cost) if np.isfinite(p.mean_cost) else None,
        )
        for p in match.pairs
    )
    return ContainerMatching(
        outcome=str(match.outcome),
        failure="",
        n_experiments=n_experiments,
        n_cells=match.n_lines,
        n_cells_all_sessions=sum(n == n_experiments for n in experiments_per_line),
        lowest_match_fraction=min(fractions) if fractions else None,
        lowest_ssim=min((t.ssim for t in match.transforms), default=None),
        specimens=tuple(
            CellSpecimen(r.experiment_id, r.cell_roi_id, cell_specimen_id(container_id, r.line)) for r in match.rois
        ),
        pairs=pairs,
    )
