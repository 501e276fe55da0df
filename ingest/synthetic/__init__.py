"""Synthetic ground-truth surveys: 2-photon movies, Neuropixels recordings, behavior and stimulus."""

from brainobs.ingest.synthetic.survey import SurveySummary, generate_survey
from brainobs.ingest.synthetic.truth import OphysTruth, SurveyTruth, load_ophys_truth, load_survey_truth

__all__ = [
    "OphysTruth",
    "SurveySummary",
    "SurveyTruth",
    "generate_survey",
    "load_ophys_truth",
    "load_survey_truth",
]
