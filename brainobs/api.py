"""Query brainobs from Python: AllenSDK-style tables as pandas DataFrames, and per-item getters.

Restrictions are dicts or keywords naming columns of the table (never SQL strings)::

    from brainobs import api
    api.ophys_experiments(targeted_structure="VISp", experience_level="Novel 1")
    dff = api.dff_traces(900001)          # time x cell_roi_id, indexed by timestamps (s)

A restriction naming no column raises ``RestrictionError`` with the valid names; an id (or parameter set)
that is not in the database raises ``NotFoundError`` naming it; a query that matches nothing returns an
empty DataFrame with the usual columns. Large arrays load lazily from the object store: a getter reads
only the experiment it is asked for.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from brainobs.schemas import activate
from brainobs.schemas.queries import RestrictionError, frame, restrict
from brainobs.settings import Settings

__all__ = ["NotFoundError", "RestrictionError"]  # with the query functions below


class NotFoundError(LookupError):
    """An id or a parameter set asked for is not in the database."""


def connect(settings: Settings | None = None) -> None:
    """Activate the schemas (done automatically by every function here)."""
    activate(settings)


def _require(table, key: dict, what: str) -> None:
    """Raise NotFoundError naming ``key`` unless ``table`` holds it."""
    if not table & key:
        named = ", ".join(f"{name}={value!r}" for name, value in key.items())
        raise NotFoundError(f"no {what} with {named}")


def subjects(*restrictions: dict, **keywords) -> pd.DataFrame:
    from brainobs.schemas.subject import Subject

    activate()
    return frame(restrict(Subject, restrictions, keywords))


def sessions(*restrictions: dict, **keywords) -> pd.DataFrame:
    from brainobs.schemas.acquisition import Session
    from brainobs.schemas.subject import Subject

    activate()
    return frame(restrict(Session * Subject.proj("full_genotype", "indicator"), restrictions, keywords))


def ophys_experiments(*restrictions: dict, **keywords) -> pd.DataFrame:
    """Experiments with container, QC outcome, experience level, passive, image set, depth, structure, genotype.

    ``qc_outcome`` is the computed outcome of the experiment's QC; ``released`` says whether a release under the
    default policy (worst outcome WARNING) takes it, by its experiment and container QC with reviewers' overrides
    (embargo aside), and ``withheld_reason`` why not (the deciding check, value and threshold; "" when released).
    ``dff_traces`` and ``events`` warn when QC withholds the experiment. With several parameter sets, the columns
    describe the first QC row by (ophys_paramset, qc_paramset)."""
    from brainobs.populate.qc import Outcome
    from brainobs.schemas.acquisition import Experiment, Session
    from brainobs.schemas.qc import QC
    from brainobs.schemas.release import ophys_verdict
    from brainobs.schemas.subject import Subject

    activate()
    query = (
        Experiment
        * Session.proj("session_type", "experience_level", "passive", "image_set", "session_start_time")
        * Subject.proj("full_genotype", "driver_line", "reporter_line", "indicator")
    )
    table = _with_plane_groups(frame(restrict(query, restrictions, keywords)))
    chosen: dict[int, dict] = {}
    ids = [{"experiment_id": int(i)} for i in table["experiment_id"]]
    for row in (QC & ids).to_dicts(order_by="experiment_id, ophys_paramset, qc_paramset") if ids else []:
        chosen.setdefault(int(row["experiment_id"]), row)
    qc_outcome, released, reasons = [], [], []
    for experiment_id in table["experiment_id"]:
        row = chosen.get(int(experiment_id))
        if row is None:
            qc_outcome.append("NOT_SET")
            released.append(False)
            reasons.append(f"experiment {experiment_id} has no QC yet")
            continue
        verdict = ophys_verdict({k: v for k, v in row.items() if k != "outcome"}, Outcome.WARNING)
        qc_outcome.append(row["outcome"])
        released.append(verdict is None)
        reasons.append("" if verdict is None else verdict["reason"])
    table["qc_outcome"] = pd.Series(qc_outcome, index=table.index, dtype=object)
    table["released"] = pd.Series(released, index=table.index, dtype=bool)
    table["withheld_reason"] = pd.Series(reasons, index=table.index, dtype=object)
    return table


def _with_plane_groups(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``plane_group`` and ``plane_order`` (multi-plane sessions; <NA> for a single plane)."""
    from brainobs.schemas.acquisition import PlaneGroup

    planes = frame(PlaneGroup.proj("plane_group", "plane_order"))
    columns = ["plane_group", "plane_order"]
    if table.empty or planes.empty:
        return table.assign(**{name: pd.Series(pd.NA, index=table.index, dtype="Int64") for name in columns})
    table = table.merge(planes[["experiment_id", *columns]], on="experiment_id", how="left")
    return table.astype({name: "Int64" for name in columns})


def cells(*restrictions: dict, **keywords) -> pd.DataFrame:
    """One row per ROI with its cell_specimen_id (the AllenSDK ophys_cells_table)."""
    from brainobs.schemas.matching import cells_table

    activate()
    return cells_table(*restrictions, strict=True, **keywords)


def units(*restrictions: dict, preset: str | None = None, **keywords) -> pd.DataFrame:
    """Units with all metrics; ``preset`` ("visual_coding", "visual_behavior") applies a release filter."""
    from brainobs.schemas.ephys import units_table

    activate()
    return units_table(*restrictions, preset=preset, strict=True, **keywords)


def behavior_sessions(*restrictions: dict, **keywords) -> pd.DataFrame:
    """Sessions with behavior, and their performance (hit and false-alarm rates, d-prime, engagement)."""
    from brainobs.schemas.acquisition import Session
    from brainobs.schemas.behavior import Behavior

    activate()
    return frame(restrict(Session * Behavior.Performance, restrictions, keywords))


def _experiment_key(experiment_id: int, ophys_paramset: str | None) -> dict:
    """The key of one experiment processed with one parameter set; NotFoundError if either is unknown."""
    from brainobs.schemas.acquisition import Experiment
    from brainobs.schemas.ophys import OphysParamSet, default_paramset

    activate()
    experiment = {"experiment_id": int(experiment_id)}
    _require(Experiment, experiment, "experiment")
    paramset = {"ophys_paramset": str(ophys_paramset or default_paramset())}
    if ophys_paramset is not None:  # the default is a name of the code, in the table once anything ran
        _require(OphysParamSet, paramset, "ophys parameter set")
    return {**experiment, **paramset}


def _session_key(session_id: int) -> dict:
    from brainobs.schemas.acquisition import Session

    activate()
    key = {"session_id": int(session_id)}
    _require(Session, key, "session")
    return key


def _traces(part, attribute: str, experiment_id: int, ophys_paramset: str | None) -> pd.DataFrame:
    from brainobs.schemas.acquisition import Experiment
    from brainobs.schemas.collect import frame_times
    from brainobs.schemas.ophys import stack_rows

    key = _experiment_key(experiment_id, ophys_paramset)
    experiment = (Experiment & key).fetch1()
    key = {**key, "subject_id": experiment["subject_id"], "session_id": experiment["session_id"]}
    _warn_if_withheld(key)
    roi_ids, values = stack_rows(part, key, attribute)
    times = frame_times(key, values.shape[1], experiment["frame_rate"]) if values.size else np.empty(0)
    index, columns = pd.Index(times, name="timestamps"), pd.Index(roi_ids, name="cell_roi_id")
    return pd.DataFrame(values.T, index=index, columns=columns, copy=False)


def _warn_if_withheld(key: dict) -> None:
    """Warn, naming the QC outcome and the deciding check, when QC withholds the experiment from a release
    under the default policy (worst outcome WARNING)."""
    from brainobs.populate.qc import Outcome
    from brainobs.schemas.qc import QC, QCOverride
    from brainobs.schemas.release import withhold_verdict

    for qc_key in (QC & key).proj().to_dicts():
        verdict = withhold_verdict(QC, QCOverride, qc_key, Outcome.WARNING, f"experiment {key['experiment_id']}")
        if verdict:
            warnings.warn(f"withheld from release: {verdict['reason']}", stacklevel=4)


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
    from brainobs.schemas.behavior import Behavior

    return frame(Behavior.Presentation & _session_key(session_id), order_by="presentation_id")


def running_speed(session_id: int) -> pd.DataFrame:
    """Filtered running speed (cm/s) indexed by timestamps (s); empty when the session has none."""
    from brainobs.schemas.behavior import Behavior

    rows = (Behavior.RunningSpeed & _session_key(session_id)).to_dicts()
    times = np.asarray(rows[0]["timestamps"]) if rows else np.empty(0)
    speed = np.asarray(rows[0]["speed"]) if rows else np.empty(0)
    return pd.DataFrame({"speed": speed}, index=pd.Index(times, name="timestamps"))


def spike_times(session_id: int, **keywords) -> dict[tuple[str, int], np.ndarray]:
    """(probe_name, unit_id) -> spike times (s, session clock) of one ecephys session; keywords restrict the
    units (probe_name=, sorting_paramset=, unit_id=, quality=, ...)."""
    from brainobs.schemas.ephys import SpikeSorting

    query = restrict(SpikeSorting.Unit & _session_key(session_id), (), keywords)
    probes, unit_ids, times = query.to_arrays("probe_name", "unit_id", "spike_times")
    return {(p, int(u)): np.asarray(t) for p, u, t in zip(probes, unit_ids, times, strict=True)}


def score_against_truth(experiment_id: int, survey_root: str | Path, ophys_paramset: str | None = None):
    """One experiment of a synthetic survey (``brainobs synth``) scored against the truth files under
    ``survey_root``: registration RMSE, ROI detection, corrected-trace correlations and event F1
    (a `brainobs.ingest.synthetic.scoring.experiment.ExperimentScore`)."""
    from brainobs.ingest.synthetic.scoring.experiment import score_experiment
    from brainobs.ingest.synthetic.truth import load_ophys_truth
    from brainobs.schemas import ophys
    from brainobs.schemas.acquisition import Experiment

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
    `brainobs.ingest.synthetic.scoring.ephys.SortingScore`)."""
    from spikeinterface.core import NumpySorting

    from brainobs.ingest.synthetic.ephys import load_probe_truth
    from brainobs.ingest.synthetic.scoring.ephys import score_sorting
    from brainobs.schemas.ephys import DEFAULT_PARAMSET, EphysRecording, SortingParamSet, SpikeSorting

    paramset = {"sorting_paramset": str(sorting_paramset or DEFAULT_PARAMSET)}
    if sorting_paramset is not None:
        _require(SortingParamSet, paramset, "sorting parameter set")
    probe = {**_session_key(session_id), "probe_name": str(probe_name)}
    _require(EphysRecording, probe, "ephys recording")
    key = {**probe, **paramset}
    _require(SpikeSorting, key, "SpikeSorting row")
    fs, t_start = (EphysRecording & probe).fetch1("sampling_rate", "t_start")
    trains = spike_times(session_id, probe_name=probe_name, sorting_paramset=key["sorting_paramset"])
    samples = {unit: np.round((times - t_start) * fs).astype(np.int64) for (_, unit), times in trains.items()}
    truth_sorting, truth_units = load_probe_truth(survey_root, int(session_id), probe_name)
    return score_sorting(NumpySorting.from_unit_dict(samples, fs), truth_sorting, truth_units)


def score_decrosstalk(
    experiment_id: int,
    survey_root: str | Path,
    ophys_paramset: str | None = None,
    valid_only: bool = True,
    labels: dict[int, tuple[str, ...]] | None = None,
):
    """Ghost detection of one plane of a synthetic mesoscope pair (the ``multiplane`` preset) against the
    truth files under ``survey_root``: which ROIs decrosstalk called ghosts (`decrosstalk_ghost`, or
    `decrosstalk_invalid_unmixed_active`: no activity of its own once the partner's is unmixed) against which
    ROIs are ghosts (a `brainobs.ingest.synthetic.scoring.decrosstalk.GhostScore`, the true footprints of both
    planes moved onto this plane's registered movie); the labels that say
    decrosstalk could not test an ROI (no raw activity, no unmixing) are no verdict. ``valid_only``: score the
    ROIs segmentation kept valid (the others are excluded whatever decrosstalk says). ``labels``: per
    cell_roi_id, decrosstalk labels to score instead of the stored ones (another method on the same ROIs)."""
    from brainobs.ingest.synthetic.scoring.decrosstalk import ghost_truth, score_ghosts
    from brainobs.ingest.synthetic.scoring.rois import footprints_in_reference_frame
    from brainobs.ingest.synthetic.truth import TRUTH_DIR
    from brainobs.populate.ophys import decrosstalk
    from brainobs.schemas import ophys
    from brainobs.schemas.acquisition import Experiment

    key = _experiment_key(experiment_id, ophys_paramset)
    height, width = (Experiment & key).fetch1("height", "width")
    partner_id = (ophys.Decrosstalk & key).fetch1("paired_experiment_id")
    rois = [
        roi
        for roi in (ophys.Segmentation.ROI & key).to_dicts(order_by="cell_roi_id")
        if roi["valid_roi"] or not valid_only
    ]
    masks = np.zeros((len(rois), height, width), dtype=bool)
    for i, roi in enumerate(rois):
        masks[i, np.asarray(roi["ypix"]), np.asarray(roi["xpix"])] = True
    verdicts = [{"exclusion_label": label} for label in (decrosstalk.GHOST, decrosstalk.INVALID_UNMIXED_ACTIVE)]
    if labels is None:
        flagged_ids = set((ophys.Decrosstalk.ExclusionLabel & key & verdicts).to_arrays("cell_roi_id").tolist())
    else:
        calls = {row["exclusion_label"] for row in verdicts}
        flagged_ids = {roi_id for roi_id, roi_labels in labels.items() if calls & set(roi_labels)}
    flagged = np.array([roi["cell_roi_id"] in flagged_ids for roi in rois], dtype=bool)
    folder = Path(survey_root) / TRUTH_DIR / "ophys"
    with (
        np.load(folder / f"experiment_{experiment_id}.npz") as own,
        np.load(folder / f"experiment_{partner_id}.npz") as other,
    ):
        # both planes' light as this plane's registered movie shows it (the pair shares the true motion)
        offsets = (*(ophys.MotionCorrection & key).fetch1("y_offset", "x_offset"), own["shifts_y"], own["shifts_x"])
        truth = ghost_truth(
            masks,
            footprints_in_reference_frame(own["footprints"], *offsets),
            own["f0"][:, None] * own["calcium"],
            footprints_in_reference_frame(other["footprints"], *offsets),
            other["f0"][:, None] * other["calcium"],
            float(own["crosstalk"]),
        )
    return score_ghosts(flagged, truth)
