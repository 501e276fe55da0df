"""Cross-session cell matching per container: every valid ROI gets a cell_specimen_id shared across sessions.

A container is matched once all its experiments are segmented (with one ophys parameter set). As in Allen's
releases, only valid ROIs (no exclusion label) are matched and get a cell_specimen_id; the others keep their
cell_roi_id alone. Each line of the n-way match becomes one cell_specimen_id: ``container_id * 100000 + line``,
so ids are unique across containers and stable for a given container and parameter sets. A ROI with no match
is a line of its own.
"""

from __future__ import annotations

import dataclasses

import datajoint as dj
import numpy as np
import pandas as pd

from brainobs.populate.matching import ROI, ExperimentROIs, MatchingParams, RegistrationError, match_container
from brainobs.schemas.acquisition import Container, Experiment
from brainobs.schemas.ophys import MotionCorrection, OphysParamSet, Segmentation
from brainobs.schemas.params import insert_params, paramset_definition
from brainobs.schemas.queries import restrict

schema = dj.Schema()
DEFAULT_PARAMSET = "allen"
SPECIMEN_ID_STRIDE = 100_000


def cell_specimen_id(container_id: int, line: int) -> int:
    return int(container_id) * SPECIMEN_ID_STRIDE + int(line)


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
        experiments = (Experiment & key).to_dicts(order_by="session_id, experiment_id")
        return [e["experiment_id"] for e in experiments], (MatchingParamSet & key).fetch1("params")

    def make_compute(self, key, experiment_ids, params):
        inputs = []
        for experiment_id in experiment_ids:
            restriction = {**key, "experiment_id": experiment_id}
            image = (MotionCorrection & restriction).fetch1("average_image")
            valid = Segmentation.ROI & restriction & {"valid_roi": True}
            rows = valid.to_dicts(order_by="cell_roi_id")
            rois = tuple(ROI(row["cell_roi_id"], row["ypix"], row["xpix"], True) for row in rows)
            inputs.append(ExperimentROIs(experiment_id, np.asarray(image, dtype=float), rois))
        try:
            return (match_container(inputs, MatchingParams(**params)),)
        except RegistrationError as err:  # e.g. unrelated fields of view: a data finding, recorded for QC
            return (str(err),)

    def make_insert(self, key, match):
        if isinstance(match, str):
            self.insert1(
                {**key, "outcome": "failed", "failure": match[:255], "n_experiments": len(Experiment & key)}
                | {"n_cells": 0, "n_cells_all_sessions": 0}
            )
            return
        n_experiments = len(Experiment & key)
        experiments_per_line = [len({experiment for experiment, _roi in line}) for line in match.lines()]
        fractions = [p.match_fraction for p in match.pairs]
        self.insert1(
            {
                **key,
                "outcome": str(match.outcome),
                "n_experiments": n_experiments,
                "n_cells": match.n_lines,
                "n_cells_all_sessions": sum(n == n_experiments for n in experiments_per_line),
                "lowest_match_fraction": min(fractions) if fractions else None,
                "lowest_ssim": min((t.ssim for t in match.transforms), default=None),
            }
        )
        session_of = dict(zip(*(Experiment & key).to_arrays("experiment_id", "session_id"), strict=True))
        self.CellSpecimen.insert(
            {
                **key,
                "session_id": session_of[r.experiment_id],
                "experiment_id": r.experiment_id,
                "cell_roi_id": r.cell_roi_id,
                "cell_specimen_id": cell_specimen_id(key["container_id"], r.line),
            }
            for r in match.rois
        )
        transforms = {(t.fixed_experiment_id, t.moving_experiment_id): t for t in match.transforms}
        self.Pair.insert(
            {
                **key,
                "fixed_experiment_id": p.fixed_experiment_id,
                "moving_experiment_id": p.moving_experiment_id,
                "method": (t := transforms[(p.fixed_experiment_id, p.moving_experiment_id)]).method,
                "ssim": float(t.ssim),
                "transform": np.asarray(t.matrix),
                "n_matched": p.n_matched,
                "match_fraction": float(p.match_fraction),
                "mean_cost": float(p.mean_cost) if np.isfinite(p.mean_cost) else None,
            }
            for p in match.pairs
        )


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
