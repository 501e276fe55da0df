"""Cross-session cell matching core: pairwise registration, ROI assignment, n-way merge.

Entry point: `match_container(experiments, params) -> ContainerMatch`; what a table stores of it:
`match_and_summarize(container_id, experiments, params) -> ContainerMatching`.
"""

from brainobs.populate.matching.container import ContainerMatch, MatchOutcome, RoiLine, match_container
from brainobs.populate.matching.inputs import ExperimentROIs, MatchingInputError, MatchingParams, RoiPixels
from brainobs.populate.matching.pairwise import PairMatch, RoiPair
from brainobs.populate.matching.registration import PairTransform, RegistrationError
from brainobs.populate.matching.summary import ContainerMatching, cell_specimen_id, match_and_summarize

__all__ = [
    "RoiPixels",
    "ContainerMatch",
    "ContainerMatching",
    "ExperimentROIs",
    "MatchOutcome",
    "MatchingInputError",
    "MatchingParams",
    "PairMatch",
    "PairTransform",
    "RegistrationError",
    "RoiLine",
    "RoiPair",
    "cell_specimen_id",
    "match_and_summarize",
    "match_container",
]
