"""Cross-session cell matching core: pairwise registration, ROI assignment, n-way merge.

Entry point: `match_container(experiments, params) -> ContainerMatch`; tables: `cells_table`, `pair_table`.
"""

from brainobs.populate.matching.cells import cells_table, pair_table
from brainobs.populate.matching.container import ContainerMatch, MatchOutcome, RoiLine, match_container
from brainobs.populate.matching.inputs import ROI, ExperimentROIs, MatchingInputError, MatchingParams
from brainobs.populate.matching.pairwise import PairMatch, RoiPair
from brainobs.populate.matching.registration import PairTransform, RegistrationError

__all__ = [
    "ROI",
    "ContainerMatch",
    "ExperimentROIs",
    "MatchOutcome",
    "MatchingInputError",
    "MatchingParams",
    "PairMatch",
    "PairTransform",
    "RegistrationError",
    "RoiLine",
    "RoiPair",
    "cells_table",
    "match_container",
    "pair_table",
]
