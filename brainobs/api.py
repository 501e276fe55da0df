"""Query brainobs from Python: AllenSDK-style tables as pandas DataFrames, and per-item getters.

Restrictions are dicts or keywords (never SQL strings built from user input)::

    from brainobs import api
    api.ophys_experiments(targeted_structure="VISp", experience_level="Novel 1")
    dff = api.dff_traces(900001)          # time x cell_roi_id, indexed by timestamps (s)

Large arrays load lazily from the object store: a getter reads only the experiment it is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brainobs.schemas import activate
from brainobs.settings import Settings


def connect(settings: Settings | None = None) -> None:
    """Activate the schemas (done automatically by every function here)."""
    activate(settings)


def _restrict(query, restrictions: tuple[dict, ...], keywords: dict):
    for restriction in (*restrictions, keywords):
        if not isinstance(restriction, dict):
            raise TypeError(f"restrictions are dicts or keywords, got {type(restriction).__name__}")
        query = query & restriction
    return query


def _frame(query) -> pd.DataFrame:
    return pd.DataFrame(query.to_dicts())


def subjects(*restrictions: dict, **keywords) -> pd.DataFrame:
    from brainobs.schemas.subject import Subject

    activate()
    return _frame(_restrict(Subject, restrictions, keywords))


def sessions(*restrictions: dict, **keywords) -> pd.DataFrame:
    from brainobs.schemas.acquisition import Session
    from brainobs.schemas.subject import Subject

    activate()
    return _frame(_restrict(Session * Subject.proj("full_genotype", "indicator"), restrictions, keywords))


def ophys_experiments(*restrictions: dict, **keywords) -> pd.DataFrame:
    """Experiments with container, QC outcome, experience level, passive, image set, depth, structure, genotype."""
    from brainobs.schemas.acquisition import Experiment, Session
    from brainobs.schemas.qc import QC
    from brainobs.schemas.subject import Subject

    activate()
    query = (
        Experiment
        * Session.proj("session_type", "experience_level", "passive", "image_set", "session_start_time")
        * Subject.proj("full_genotype", "driver_line", "reporter_line", "indicator")
    )
    table = _frame(_restrict(query, restrictions, keywords))
    if table.empty:
        return table
    outcomes = _frame(QC.proj("outcome"))
    if outcomes.empty:
        table["qc_outcome"] = "NOT_SET"
        return table
    outcomes = outcomes.rename(columns={"outcome": "qc_outcome"})[["experiment_id", "qc_outcome"]]
    table = table.merge(outcomes.drop_duplicates("experiment_id"), on="experiment_id", how="left")
    table["qc_outcome"] = table["qc_outcome"].fillna("NOT_SET")
    return table


def cells(*restrictions: dict, **keywords) -> pd.DataFrame:
    """One row per ROI with its cell_specimen_id (the AllenSDK ophys_cells_table)."""
    from brainobs.schemas.matching import cells_table

    activate()
    return cells_table(*restrictions, **keywords)


def units(*restrictions: dict, preset: str | None = None, **keywords) -> pd.DataFrame:
    """Units with all metrics; ``preset`` ("visual_coding", "visual_behavior") applies a release filter."""
    from brainobs.schemas.ephys import units_table

    activate()
    return units_table(*restrictions, preset=preset, **keywords)


def behavior_sessions(*restrictions: dict, **keywords) -> pd.DataFrame:
    """Sessions with behavior, and their performance (hit and false-alarm rates, d-prime, engagement)."""
    from brainobs.schemas.acquisition import Session
    from brainobs.schemas.behavior import Performance

    activate()
    return _frame(_restrict(Session * Performance, restrictions, keywords))


def _experiment_key(experiment_id: int, ophys_paramset: str | None) -> dict:
    from brainobs.schemas.ophys import default_paramset

    return {"experiment_id": int(experiment_id), "ophys_paramset": ophys_paramset or default_paramset()}


def _traces(part, attribute: str, experiment_id: int, ophys_paramset: str | None) -> pd.DataFrame:
    from brainobs.export.collect import frame_times
    from brainobs.schemas.acquisition import Experiment
    from brainobs.schemas.ophys import stack_rows

    activate()
    key = _experiment_key(experiment_id, ophys_paramset)
    experiment = (Experiment & key).fetch1()
    key = {**key, "subject_id": experiment["subject_id"], "session_id": experiment["session_id"]}
    roi_ids, values = stack_rows(part, key, attribute)
    times = frame_times(key, values.shape[1], experiment["frame_rate"]) if values.size else np.empty(0)
    index, columns = pd.Index(times, name="timestamps"), pd.Index(roi_ids, name="cell_roi_id")
    return pd.DataFrame(values.T, index=index, columns=columns, copy=False)


def dff_traces(experiment_id: int, ophys_paramset: str | None = None) -> pd.DataFrame:
    """dF/F, time x cell_roi_id, indexed by frame timestamps (s, session clock)."""
    from brainobs.schemas.ophys import DeltaFOverF

    return _traces(DeltaFOverF.Trace, "dff", experiment_id, ophys_paramset)


def events(experiment_id: int, ophys_paramset: str | None = None) -> pd.DataFrame:
    """L0 event magnitudes, time x cell_roi_id (0 where no event)."""
    from brainobs.schemas.ophys import EventDetection

    return _traces(EventDetection.Event, "events", experiment_id, ophys_paramset)


def filtered_events(experiment_id: int, ophys_paramset: str | None = None) -> pd.DataFrame:
    """Events smoothed by AllenSDK's causal half-normal filter (``filtered_events``), time x cell_roi_id."""
    from brainobs.schemas.ophys import EventDetection

    return _traces(EventDetection.Event, "filtered_events", experiment_id, ophys_paramset)


def roi_masks(experiment_id: int, ophys_paramset: str | None = None) -> dict[int, np.ndarray]:
    """cell_roi_id -> full-FOV boolean mask."""
    from brainobs.schemas.acquisition import Experiment
    from brainobs.schemas.ophys import Segmentation

    activate()
    key = _experiment_key(experiment_id, ophys_paramset)
    height, width = (Experiment & key).fetch1("height", "width")
    masks = {}
    for row in (Segmentation.ROI & key).to_dicts(order_by="cell_roi_id"):
        mask = np.zeros((height, width), dtype=bool)
        mask[np.asarray(row["ypix"]), np.asarray(row["xpix"])] = True
        masks[row["cell_roi_id"]] = mask
    return masks


def stimulus_presentations(session_id: int) -> pd.DataFrame:
    """One row per presentation of every stimulus block of the session."""
    from brainobs.schemas.behavior import StimulusPresentations

    activate()
    table = _frame(StimulusPresentations.Presentation & {"session_id": int(session_id)})
    return table.sort_values("presentation_id").reset_index(drop=True) if len(table) else table


def running_speed(session_id: int) -> pd.DataFrame:
    """Filtered running speed (cm/s) indexed by timestamps (s)."""
    from brainobs.schemas.behavior import RunningSpeed

    activate()
    row = (RunningSpeed & {"session_id": int(session_id)}).fetch1()
    times = np.asarray(row["timestamps"])
    return pd.DataFrame({"speed": np.asarray(row["speed"])}, index=pd.Index(times, name="timestamps"))


def spike_times(session_id: int, **keywords) -> dict[tuple[str, int], np.ndarray]:
    """(probe_name, unit_id) -> spike times (s, session clock) of one ecephys session."""
    from brainobs.schemas.ephys import SpikeSorting

    activate()
    query = _restrict(SpikeSorting.Unit & {"session_id": int(session_id)}, (), keywords)
    probes, unit_ids, times = query.to_arrays("probe_name", "unit_id", "spike_times")
    return {(p, int(u)): np.asarray(t) for p, u, t in zip(probes, unit_ids, times, strict=True)}


def score_against_truth(experiment_id: int, survey_root: str | Path, ophys_paramset: str | None = None):
    """One experiment of a synthetic survey (``brainobs synth``) scored against the truth files under
    ``survey_root``: registration RMSE, ROI detection, corrected-trace correlations and event F1
    (a `brainobs.populate.scoring.experiment.ExperimentScore`)."""
    from brainobs.ingest.synthetic.truth import load_ophys_truth
    from brainobs.populate.scoring.experiment import score_experiment
    from brainobs.schemas import ophys
    from brainobs.schemas.acquisition import Experiment

    activate()
    key = _experiment_key(experiment_id, ophys_paramset)
    height, width = (Experiment & key).fetch1("height", "width")
    y_offset, x_offset = (ophys.MotionCorrection & key).fetch1("y_offset", "x_offset")
    rois = (ophys.Segmentation.ROI & key).to_dicts(order_by="cell_roi_id")
    corrected = ophys.stack(ophys.NeuropilCorrection.Trace, key, "corrected_trace")
    events = ophys.stack(ophys.EventDetection.Event, key, "events")
    truth = load_ophys_truth(Path(survey_root), int(experiment_id))
    return score_experiment(rois, y_offset, x_offset, corrected, events, truth, (height, width))


def score_units_against_truth(
    session_id: int, survey_root: str | Path, probe_name: str = "probeA", sorting_paramset: str | None = None
):
    """One probe's sorted units of a synthetic ecephys session (``brainobs synth``) scored against the truth
    files under ``survey_root``: per-unit accuracy, well-detected units, false positives (a
    `brainobs.populate.scoring.ephys.SortingScore`)."""
    from spikeinterface.core import NumpySorting

    from brainobs.ingest.synthetic.ephys import load_probe_truth
    from brainobs.populate.scoring.ephys import score_sorting
    from brainobs.schemas.ephys import DEFAULT_PARAMSET, EphysRecording, SpikeSorting

    activate()
    probe = {"session_id": int(session_id), "probe_name": probe_name}
    key = {**probe, "sorting_paramset": sorting_paramset or DEFAULT_PARAMSET}
    if not SpikeSorting & key:
        raise LookupError(f"no SpikeSorting row for {key}")
    fs, t_start = (EphysRecording & probe).fetch1("sampling_rate", "t_start")
    trains = spike_times(session_id, probe_name=probe_name, sorting_paramset=key["sorting_paramset"])
    samples = {unit: np.round((times - t_start) * fs).astype(np.int64) for (_, unit), times in trains.items()}
    truth_sorting, truth_units = load_probe_truth(survey_root, int(session_id), probe_name)
    return score_sorting(NumpySorting.from_unit_dict(samples, fs), truth_sorting, truth_units)
