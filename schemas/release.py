"""Releases: QC-gated NWB files, exported as populate jobs, gathered into a DANDI-ready folder.

Release names the parameter sets and the QC policy (the worst effective outcome released). ReleaseFile
runs per (release, session): it exports one NWB per 2-photon experiment that passes the policy (and whose
container passes), or one NWB per ecephys session (all probes, all units unfiltered) or behavior-only session whose
session QC passes, and records what it leaves out as withheld, with the reason. Files live in the object store
under a name derived from their content digest, so a file whose source did not change is not rewritten.
"""

from __future__ import annotations

import datetime as dt

import datajoint as dj

from brainobs.export.bundles import source_digest
from brainobs.export.release_config import ReleaseConfig
from brainobs.export.validation import inspect_nwb
from brainobs.export.writer import export_behavior_session, export_ecephys_session, export_ophys_experiment
from brainobs.populate.qc import Outcome
from brainobs.populate.release import embargo_withheld, qc_withheld, reusable_file
from brainobs.schemas import stores
from brainobs.schemas.acquisition import Experiment, Session  # noqa: F401 - Session: table definitions
from brainobs.schemas.behavior import Behavior
from brainobs.schemas.collect import behavior_session_bundle, ecephys_session_bundle, ophys_experiment_bundle
from brainobs.schemas.ephys import UnitMetrics
from brainobs.schemas.ophys import EventDetection, OphysParamSet, OphysSelection  # noqa: F401 - OphysParamSet: definitions
from brainobs.schemas.qc import (
    QC,
    ContainerQC,
    ContainerQCOverride,
    QCOverride,
    QCParamSet,  # noqa: F401 - referenced by the table definitions
    SessionQC,
    SessionQCOverride,
    effective_outcome,
)

schema = dj.Schema()
# An electrode outside any atlas structure is named "unknown"; that is a fact, not a defect of the file.
INSPECTOR_IGNORE = ("check_electrodes_location_allen_ccf",)


# modality -> (nwb_label of its one session file, bundle collector, writer)
SESSION_FILES = {
    "ecephys": ("session", ecephys_session_bundle, export_ecephys_session),
    "behavior": ("behavior", behavior_session_bundle, export_behavior_session),
}


@schema
class Release(dj.Manual):
    definition = """
    # a public release: which processing, which QC policy
    release_tag : varchar(32)
    ---
    description : varchar(1024)
    release_date : date
    qc_policy = "WARNING" : enum('PASS', 'WARNING')   # worst effective QC outcome that is released
    unit_filter = "visual_behavior" : varchar(32)      # unit filter preset users are pointed to
    include_embargoed = 0 : bool                       # a team release: embargoed sessions in, marked embargoed
    embargo_days = 365 : int32                         # a session is embargoed this long after its start...
    project_embargo_days = null : json                 # ...or this long for its project_code (release config)
    -> OphysParamSet
    -> QCParamSet
    """


@schema
class ReleaseFile(dj.Computed):
    definition = """
    # the NWB files of one session in one release
    -> Release
    -> Session
    ---
    n_files : int32
    n_withheld : int32
    """

    class File(dj.Part):
        definition = """
        # one exported, verified and inspected NWB file
        -> master
        nwb_label : varchar(32)            # experiment id for 2-photon files
        ---
        path : varchar(255)                # relative to the object store
        size : int64                       # bytes
        sha256 : char(64)
        source_sha256 : char(64)           # digest of everything the file was written from
        inspector_messages : int32         # nwbinspector findings (none is the target)
        inspector_passed : bool            # no CRITICAL or BEST_PRACTICE_VIOLATION finding
        """

    class Withheld(dj.Part):
        definition = """
        # an item of the session left out of the release, and the check that decided it
        -> master
        nwb_label : varchar(32)
        ---
        reason : varchar(255)
        check_name = "" : varchar(48)      # the deciding check ("override" for a reviewer's outcome)
        value = null : float64             # its value
        threshold = null : float64         # the threshold it crossed
        """

    @property
    def key_source(self):
        """Sessions of a release with something to decide on; a 2-photon session waits until every selected
        experiment has its events (QC can exist before them)."""
        sessions = dj.U("release_tag", "subject_id", "session_id")
        behavior_only = (Session & {"modality": "behavior"}).proj() * Behavior.Licks.proj()
        waiting = Release.proj("ophys_paramset") * (OphysSelection.proj() - EventDetection.proj())
        return (
            ((sessions & (Release * QC)) - waiting)
            + (sessions & (Release.proj() * UnitMetrics))
            + (sessions & (Release.proj() * behavior_only))
        )

    def make(self, key):
        release = (Release & key).fetch1()
        allowed = Outcome[release["qc_policy"]]
        embargo = embargo_verdict(key, release)
        if embargo:
            self._withhold_session(key, release, embargo)
            return
        modality = (Session & key).fetch1("modality")
        if modality in SESSION_FILES:
            self._make_session(key, release, allowed, modality)
            return
        files, withheld = [], []
        paramsets = {name: release[name] for name in ("ophys_paramset", "qc_paramset")}
        for qc_key in (QC & key & paramsets).proj().to_dicts():
            label = str(qc_key["experiment_id"])
            verdict = ophys_verdict(qc_key, allowed)
            if verdict:
                withheld.append({**key, "nwb_label": label, **verdict})
                continue
            files.append({**key, "nwb_label": label, **_export(qc_key)})
        self.insert1({**key, "n_files": len(files), "n_withheld": len(withheld)})
        self.File.insert(files)
        self.Withheld.insert(withheld)

    def _make_session(self, key: dict, release: dict, allowed: Outcome, modality: str) -> None:
        """One file for the whole session (ecephys, or behavior only), gated by session QC."""
        session_key = {**key, "qc_paramset": release["qc_paramset"]}
        label, collect, export = SESSION_FILES[modality]
        verdict = withhold_verdict(SessionQC, SessionQCOverride, session_key, allowed, "session")
        self.insert1({**key, "n_files": 0 if verdict else 1, "n_withheld": 1 if verdict else 0})
        if verdict:
            self.Withheld.insert1({**key, "nwb_label": label, **verdict})
        else:
            self.File.insert1({**key, "nwb_label": label, **_write(collect(key), key, modality, export)})

    def _withhold_session(self, key: dict, release: dict, verdict: dict) -> None:
        """Every item of the session withheld for one reason (its embargo)."""
        modality = (Session & key).fetch1("modality")
        if modality in SESSION_FILES:
            labels = [SESSION_FILES[modality][0]]
        else:
            paramsets = {name: release[name] for name in ("ophys_paramset", "qc_paramset")}
            labels = [str(e) for e in (QC & key & paramsets).to_arrays("experiment_id")]
        self.insert1({**key, "n_files": 0, "n_withheld": len(labels)})
        self.Withheld.insert({**key, "nwb_label": label, **verdict} for label in labels)


def embargo_end(session: dict, release: dict) -> dt.date:
    """The session's embargo end: its own (manifest) date, else its start + the release's project embargo."""
    rules = ReleaseConfig(
        embargo_days=release["embargo_days"], project_embargo_days=release["project_embargo_days"] or {}
    )
    return rules.embargo_end(session["session_start_time"], session["project_code"], session["embargo_end"])


def embargo_verdict(key: dict, release: dict) -> dict | None:
    """None when the session may be in the release; else the Withheld values naming its embargo."""
    end = embargo_end((Session & key).fetch1(), release)
    return embargo_withheld(end, release["release_date"], release["include_embargoed"])


def withhold_verdict(
    table: type[dj.Computed], override: type[dj.Manual], key: dict, allowed: Outcome, what: str
) -> dict | None:
    """None when the item passes the release policy; else the Withheld values: the reason, and the check
    that decided it (the worst one, or the reviewer's override) with its value and threshold."""
    outcome = effective_outcome(table, override, key) if table & key else None
    reviewed = (override & key).to_dicts()
    checks = (table.Check & key).to_dicts(order_by="check_name")
    return qc_withheld(what, outcome, allowed, reviewed[0] if reviewed else None, checks)


def ophys_verdict(qc_key: dict, allowed: Outcome) -> dict | None:
    """None when an experiment's QC and its container's QC (reviewer overrides applied) pass the policy ``allowed``;
    else the Withheld values (see withhold_verdict)."""
    verdict = withhold_verdict(QC, QCOverride, qc_key, allowed, "experiment")
    if verdict:
        return verdict
    container = (Experiment & qc_key).fetch1("container_id")
    container_key = {**qc_key, "container_id": container}
    return withhold_verdict(ContainerQC, ContainerQCOverride, container_key, allowed, f"container {container}")


def _export(qc_key: dict) -> dict:
    """Write (or reuse) the experiment's NWB file; returns the File row's values."""
    return _write(ophys_experiment_bundle(qc_key), qc_key, "ophys", export_ophys_experiment)


def _write(bundle, key: dict, modality: str, export) -> dict:
    """Write ``bundle`` (or reuse the file of an identical one); returns the File row's values."""
    digest = source_digest(bundle)
    target = stores.path("nwb", f"sub-{key['subject_id']}", f"{digest[:24]}_{modality}.nwb")
    reused = reusable_file((ReleaseFile.File & {"source_sha256": digest}).to_dicts(), target.exists())
    if reused:
        stores.verified(stores.root() / reused["path"], reused["size"], reused["sha256"])  # damaged: the job fails
        return reused
    written = export(bundle, target)
    report = inspect_nwb(target, ignore=INSPECTOR_IGNORE)
    return {
        "path": stores.relative(target),
        "size": written.size,
        "sha256": written.sha256,
        "source_sha256": digest,
        "inspector_messages": len(report.findings),
        "inspector_passed": report.passed,
    }
