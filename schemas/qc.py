"""QC: one row per named check (value, threshold, outcome, reason) for experiments, sessions and containers.

QC (experiment QC), ContainerQC and SessionQC (sync and each probe's units) each hold the worst outcome of
their Part ``Check`` rows.

The computed outcome of an item is the worst of its checks (NOT_SET < PASS < WARNING < FAIL < CRITICAL).
Reviewers record overrides in the *Override tables; :func:`effective_outcome` applies them on top,
never changing the computed rows.
"""

from __future__ import annotations

import datajoint as dj
import numpy as np

from brainobs.populate import qc
from brainobs.populate.ephys.filters import unmet_conditions
from brainobs.populate.ophys.demix import NAN_LABEL
from brainobs.populate.qc_levels import ExperimentQCInputs, experiment_checks, unit_outcomes
from brainobs.schemas.acquisition import Experiment, PlaneGroup, ProbeInsertion, Session
from brainobs.schemas.behavior import Behavior, SessionSync
from brainobs.schemas.ephys import EphysRecording, SpikeSorting, UnitMetrics, units_table  # noqa: F401
from brainobs.schemas.matching import CellMatching
from brainobs.schemas.ophys import (
    Decrosstalk,
    Demixing,
    MotionCorrection,
    NeuropilCorrection,
    OphysParamSet,
    Segmentation,
    open_registered,
)
from brainobs.schemas.params import insert_params, paramset_definition

schema = dj.Schema()
DEFAULT_PARAMSET = "default"
OUTCOMES = ", ".join(f"'{o.name}'" for o in qc.Outcome)


@schema
class QCParamSet(dj.Lookup):
    definition = paramset_definition("qc_paramset", "QC thresholds, hashed")

    @classmethod
    def insert_default(cls) -> str:
        return insert_params(cls, DEFAULT_PARAMSET, qc.DEFAULT_QC_THRESHOLDS, "brainobs default thresholds")


def schedule_defaults() -> int:
    QCParamSet.insert_default()
    return 0


def _insert_checks(table: dj.Computed, key: dict, checks: list[qc.Check]) -> None:
    """One master row with the worst outcome, and one Check row per check."""
    table.insert1({**key, "outcome": qc.worst(c.outcome for c in checks).name})
    table.Check.insert(_check_rows(key, checks))


def _check_rows(key: dict, checks: list[qc.Check]) -> list[dict]:
    return [
        {
            **key,
            "check_name": c.name,
            "value": float(c.value) if np.isfinite(c.value) else None,
            "threshold": float(c.threshold) if np.isfinite(c.threshold) else None,
            "outcome": c.outcome.name,
            "reason": c.reason[:255],
        }
        for c in checks
    ]


CHECK_PART = f"""
-> master
check_name : varchar(48)
---
value = null : float64
threshold = null : float64
outcome : enum({OUTCOMES})
reason : varchar(255)
"""


@schema
class QC(dj.Computed):
    definition = f"""
    # QC of one processed 2-photon experiment (the release gate of the Allen Brain Observatory)
    -> NeuropilCorrection
    -> QCParamSet
    ---
    outcome : enum({OUTCOMES})             # worst of the checks
    """

    class Check(dj.Part):
        definition = CHECK_PART

    @property
    def key_source(self):
        """Processed experiments; a mesoscope plane once Decrosstalk has run (residual_crosstalk reads it)."""
        waiting = (Segmentation.proj() & PlaneGroup.proj()) - Decrosstalk.proj()
        return (NeuropilCorrection.proj() * QCParamSet.proj()) - waiting

    def make(self, key):
        t = (QCParamSet & key).fetch1("params")
        motion = (MotionCorrection & key).fetch1()
        pair = None
        if Decrosstalk & key:
            rois = (Decrosstalk.ROI * Segmentation.ROI & key).to_dicts(order_by="cell_roi_id")
            labelled = set((Decrosstalk.ExclusionLabel & key).to_arrays("cell_roi_id").tolist())
            pair = (
                np.array([np.nan if r["unmixed_ratio"] is None else r["unmixed_ratio"] for r in rois], float),
                np.array([r["converged"] for r in rois], bool),
                np.array([r["valid_roi"] and r["cell_roi_id"] not in labelled for r in rois], bool),
            )
        movie, _border = open_registered(key)
        demixed = (Demixing.Trace & key).to_dicts()
        valid = Segmentation.ROI & key & {"valid_roi": True}
        made_nan = Demixing.ExclusionLabel & key & {"exclusion_label": NAN_LABEL}
        sync = (SessionSync & key).to_dicts()
        inputs = ExperimentQCInputs(
            x_offset=np.asarray(motion["x_offset"]),
            y_offset=np.asarray(motion["y_offset"]),
            border_px=max(motion[f"max_correction_{side}"] for side in ("left", "right", "up", "down")),
            frame_mean=np.asarray(motion["frame_mean"]),
            max_image=motion["max_image"],
            saturation_level=motion["saturation_level"],
            epochs=qc.epoch_images(movie),
            n_usable_rois=len(valid - made_nan.proj()),
            neuropil_r=np.array([r for r in (NeuropilCorrection.Trace & key).to_arrays("r") if r is not None], float),
            negative_baseline=np.array([row["negative_baseline"] for row in demixed], dtype=bool),
            negative_transient=np.array([row["negative_transient"] for row in demixed], dtype=bool),
            n_frames=motion["n_frames"],
            frame_rate=(Experiment & key).fetch1("frame_rate"),
            bin_duration_s=(OphysParamSet & key).fetch1("params")["segmentation_bin_duration_s"],
            n_sync_frames=sync[0]["n_ophys_frames"] if sync else None,
            decrosstalk=pair,
        )
        _insert_checks(self, key, experiment_checks(inputs, t))


@schema
class ContainerQC(dj.Computed):
    definition = f"""
    # QC of one container: session count (3-11, or 1), cell matching succeeded, lowest pairwise match fraction
    -> CellMatching
    -> QCParamSet
    ---
    outcome : enum({OUTCOMES})
    """

    class Check(dj.Part):
        definition = CHECK_PART

    def make(self, key):
        t = (QCParamSet & key).fetch1("params")
        match = (CellMatching & key).fetch1()
        lowest = match["lowest_match_fraction"]
        checks = qc.container_checks(
            match["n_experiments"], float("nan") if lowest is None else lowest, t, failure=match["failure"]
        )
        _insert_checks(self, key, checks)


@schema
class UnitQC(dj.Computed):
    definition = f"""
    # unit QC of one sorting: each unit against the Visual Coding release preset (units are never dropped)
    -> UnitMetrics
    -> QCParamSet
    ---
    outcome : enum({OUTCOMES})             # FAIL when the sorting found no unit
    n_units : int32
    n_passing : int32                      # units meeting every condition of the Visual Coding preset
    """

    class Unit(dj.Part):
        definition = f"""
        -> master
        -> SpikeSorting.Unit
        ---
        outcome : enum({OUTCOMES})         # PASS when the unit meets the preset, else WARNING
        reason : varchar(255)              # the conditions it does not meet
        """

    def make(self, key):
        units = units_table({k: v for k, v in key.items() if k != "qc_paramset"})
        unmet = unmet_conditions(units, "visual_coding") if len(units) else []
        result = unit_outcomes(list(units["unit_id"]) if len(units) else [], unmet)
        self.insert1(
            {**key, "outcome": result.outcome.name, "n_units": len(result.units), "n_passing": result.n_passing}
        )
        self.Unit.insert(
            {**key, "unit_id": unit_id, "outcome": outcome.name, "reason": reason[:255]}
            for unit_id, outcome, reason in result.units
        )


@schema
class SessionQC(dj.Computed):
    definition = f"""
    # QC of a session: dropped display frames and licks (when it has behavior), each probe's unit QC and dead channels
    -> Session
    -> QCParamSet
    ---
    outcome : enum({OUTCOMES})
    """

    class Check(dj.Part):
        definition = CHECK_PART

    class Probe(dj.Part):
        definition = """
        # the unit QC of each probe that entered this session's QC (it also orders UnitQC before SessionQC)
        -> master
        -> UnitQC
        """

    class Behavior(dj.Part):
        definition = """
        # the licks (and so the sync record) this session's QC read (it also orders them before SessionQC)
        -> master
        -> Behavior.Licks
        """

    @property
    def key_source(self):
        """Sessions whose behavior (sync record and licks) is read, and ecephys sessions whose every probe has
        unit QC (and whose behavior, when they name a behavior folder, is read): ecephys needs no behavior."""
        ecephys = (Session & {"modality": "ecephys"}).proj()
        waiting = ((Session & {"modality": "ecephys"}) - {"behavior_dir": ""}).proj() - Behavior.Licks.proj()
        unsorted = (ProbeInsertion.proj() - UnitQC.proj()).proj()
        sorted_ecephys = (ecephys & ProbeInsertion.proj()) - unsorted - waiting
        synced = (Session.proj() - ecephys) & Behavior.Licks.proj()
        return synced * QCParamSet.proj() + sorted_ecephys * QCParamSet.proj()

    def make(self, key):
        t = (QCParamSet & key).fetch1("params")
        sync = (SessionSync & key).to_arrays("vsync_times")
        checks = [qc.dropped_frames_check(np.asarray(sync[0]) if len(sync) else None, t)]
        licks = (Behavior.Licks & key).to_dicts()
        passive = bool((Session & key).fetch1("passive"))
        checks.append(qc.lick_count_check(licks[0]["n_licks"] if licks else None, passive))
        probes = (UnitQC & key).to_dicts(order_by="probe_name, sorting_paramset")
        checks += [qc.unit_count_check(row["probe_name"], row["n_units"], row["n_passing"]) for row in probes]
        checks += [_dead_channels(key, name, t) for name in dict.fromkeys(row["probe_name"] for row in probes)]
        _insert_checks(self, key, checks)
        if licks:
            self.Behavior.insert1({k: key[k] for k in self.primary_key})
        self.Probe.insert(
            {**key, "probe_name": row["probe_name"], "sorting_paramset": row["sorting_paramset"]} for row in probes
        )


def _dead_channels(key: dict, probe_name: str, t: dict) -> qc.Check:
    """The dead-channel check of one probe, its channels' noise ordered along the probe (NOT_SET if any is null)."""
    channels = EphysRecording.Channel & key & {"probe_name": probe_name}
    noise = channels.to_arrays("noise_uv", order_by="y_um, x_um")
    missing = len(noise) == 0 or any(level is None for level in noise)
    return qc.dead_channel_check(probe_name, None if missing else np.asarray(noise, float), t)


OVERRIDE = f"""
-> master
---
outcome : enum({OUTCOMES})                 # the reviewer's outcome, applied on top of the computed one
reviewer : varchar(64)
reason : varchar(1024)
override_time = CURRENT_TIMESTAMP : datetime
"""


@schema
class QCOverride(dj.Manual):
    definition = OVERRIDE.replace("-> master", "-> QC")


@schema
class ContainerQCOverride(dj.Manual):
    definition = OVERRIDE.replace("-> master", "-> ContainerQC")


@schema
class SessionQCOverride(dj.Manual):
    definition = OVERRIDE.replace("-> master", "-> SessionQC")


def effective_outcome(table: type[dj.Computed], override: type[dj.Manual], key: dict) -> qc.Outcome:
    """The reviewer's outcome when one was recorded, else the computed one."""
    reviewed = (override & key).to_dicts()
    if reviewed:
        return qc.Outcome[reviewed[0]["outcome"]]
    return qc.Outcome[(table & key).fetch1("outcome")]
