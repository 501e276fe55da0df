"""Cross-session cell matching per container: every valid ROI gets a cell_specimen_id shared across sessions.

A container is matched once all its experiments are segmented (with one ophys parameter set). As in Allen's
releases, only valid ROIs (no exclusion label) are matched and get a cell_specimen_id (the numbering is the
core's: ``brainobs.populate.matching.summary``); the others keep their cell_roi_id alone.
"""

from __future__ import annotations

import dataclasses

import datajoint as dj
import numpy as np
import pandas as pd

from brainobs.populate.matching import ExperimentROIs, MatchingParams, RoiPixels, match_and_summarize
from brainobs.schemas.acquisition import Container, Experiment
from brainobs.schemas.ophys import MotionCorrection, OphysParamSet, Segmentation
from brainobs.schemas.params import insert_params, paramset_definition
from brainobs.schemas.queries import restrict

schema = dj.Schema()
DEFAULT_PARAMSET = "allen"
SUMMARY_FIELDS = (
    "outcome",
    "n_experiments",
    "n_cells",
    "n_cells_all_sessions",
    "lowest_match_fraction",
    "lowest_ssim",
)


@schema
class MatchingParamSet(dj.Lookup):
    definition = paramset_definition(
        "matching_paramset", "cross-session matching parameters, hashed (Allen n-way matching values by default)"
    )

    @classmethod
    def insert_default(cls) -> str:
        return insert_params(cls, DEFAULT_PARAMSET, dataclasses.asdict(MatchingParams()), "Allen n-way matching")


def schedule_defaults() -> int:
    """Make sure the default matching parameter set exists (matching runs per container automatically)."""
    MatchingParamSet.insert_default()
    return 0


@schema
class CellMatching(dj.Computed):
    definition = """
    # n-way matching of one container's ROIs across its sessions
    -> Container
    -> OphysParamSet
    -> MatchingParamSet
    ---
    outcome : enum('matched', 'single_experiment', 'failed')
    failure = "" : varchar(255)            # why matching failed (outcome 'failed'); ContainerQC FAILs with it
    n_experiments : int32
    n_cells : int32                        # cell_specimen_ids (lines), singletons included
    n_cells_all_sessions : int32           # cells found in every experiment of the container
    lowest_match_fraction = null : float64 # over experiment pairs; a container QC figure
    lowest_ssim = null : float64           # registration quality of the worst pair
    """

    class CellSpecimen(dj.Part):
        definition = """
        # the cell_specimen_id of each valid ROI
        -> master
        -> Segmentation.ROI
        ---
        cell_specimen_id : int64
        """

    class Pair(dj.Part):
        definition = """
        # registration and match statistics of one pair of experiments
        -> master
        fixed_experiment_id : int64
        moving_experiment_id : int64
        ---
        method : varchar(32)               # registration candidate kept (best SSIM)
        ssim : float64
        transform : <blob>                 # 2x3 affine: moving pixel (x, y, 1) -> fixed pixel (x, y)
        n_matched : int32
        match_fraction : float64           # n_matched / min(n_rois)
        mean_cost = null : float64
        """

    @property
    def key_source(self):
        """Containers whose every experiment is segmented with the parameter set."""
        experiments = Experiment.proj("container_id")
        total = Container.aggr(experiments, n_experiments="count(*)", exclude_nonmatching=True)
        done = (Container * OphysParamSet).aggr(
            Segmentation * experiments, n_segmented="count(*)", exclude_nonmatching=True
        )
        ready = (total * done) & "n_experiments = n_segmented"
        return ready.proj() * MatchingParamSet.proj()

    def make_fetch(self, key):
        inputs, session_of = [], {}
        for experiment in (Experiment & key).to_dicts(order_by="session_id, experiment_id"):
            restriction = {**key, "experiment_id": experiment["experiment_id"]}
            image = (MotionCorrection & restriction).fetch1("average_image")
            valid = (Segmentation.ROI & restriction & {"valid_roi": True}).to_dicts(order_by="cell_roi_id")
            rois = tuple(RoiPixels(row["cell_roi_id"], row["ypix"], row["xpix"], True) for row in valid)
            inputs.append(ExperimentROIs(experiment["experiment_id"], np.asarray(image, dtype=float), rois))
            session_of[experiment["experiment_id"]] = experiment["session_id"]
        return inputs, session_of, MatchingParams(**(MatchingParamSet & key).fetch1("params"))

    def make_compute(self, key, inputs, session_of, params):
        return match_and_summarize(key["container_id"], inputs, params), session_of

    def make_insert(self, key, matching, session_of):
        summary = {f: getattr(matching, f) for f in SUMMARY_FIELDS}
        self.insert1({**key, **summary, "failure": matching.failure[:255]})
        self.CellSpecimen.insert(
            {**key, "session_id": session_of[s.experiment_id], **dataclasses.asdict(s)} for s in matching.specimens
        )
        self.Pair.insert({**key, **dataclasses.asdict(p)} for p in matching.pairs)


def cells_table(*restrictions: dict, strict: bool = False, **keywords) -> pd.DataFrame:
    """Like the AllenSDK ophys_cells_table: one row per ROI with its cell_specimen_id, container, experiment
    and validity. Restrict with dicts or keywords, e.g. ``cells_table(container_id=700001)``; strict: names
    must be columns."""
    query = CellMatching.CellSpecimen * Segmentation.ROI.proj("valid_roi") * Experiment.proj("container_id")
    query = restrict(query, restrictions, keywords, strict=strict)
    rows = query.to_pandas().reset_index()
    columns = ["cell_specimen_id", "container_id", "experiment_id", "session_id", "cell_roi_id", "valid_roi"]
    if rows.empty:
        return pd.DataFrame(columns=[*columns, "n_experiments"])
    rows = rows[columns].sort_values(["cell_specimen_id", "experiment_id"]).reset_index(drop=True)
    rows["valid_roi"] = rows["valid_roi"].astype(bool)
    rows["n_experiments"] = rows.groupby("cell_specimen_id")["experiment_id"].transform("nunique")
    return rows
