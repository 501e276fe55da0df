"""Releases: QC-gated NWB files, exported as populate jobs, gathered into a DANDI-ready folder.

Release names the parameter sets and the QC policy (the worst effective outcome released). ReleaseFile
runs per (release, session): it exports one NWB per 2-photon experiment that passes the policy (and whose
container passes), or one NWB per ecephys session (all probes, all units unfiltered) whose session QC
passes, and records what it leaves out as withheld, with the reason. Files live in the object store
under a name derived from their content digest, so a file whose source did not change is not rewritten.
"""

from __future__ import annotations

import datajoint as dj

from brainobs.export.bundles import source_digest
from brainobs.export.collect import ecephys_session_bundle, ophys_experiment_bundle
from brainobs.export.validation import inspect_nwb
from brainobs.export.writer import export_ecephys_session, export_ophys_experiment
from brainobs.populate.qc import Outcome
from brainobs.schemas import stores
from brainobs.schemas.acquisition import Experiment, Session  # noqa: F401 - Session: table definitions
from brainobs.schemas.ephys import UnitMetrics
from brainobs.schemas.matching import CellMatching
from brainobs.schemas.ophys import OphysParamSet  # noqa: F401 - referenced by the table definitions
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
        # an item of the session left out of the release, and why
        -> master
        nwb_label : varchar(32)
        ---
        reason : varchar(255)
        """

    @property
    def key_source(self):
        sessions = dj.U("release_tag", "subject_id", "session_id")
        return (sessions & (Release * QC)) + (sessions & (Release.proj() * UnitMetrics))

    def make(self, key):
        release = (Release & key).fetch1()
        allowed = Outcome[release["qc_policy"]]
        if (Session & key).fetch1("modality") == "ecephys":
            self._make_ecephys(key, release, allowed)
            return
        files, withheld = [], []
        paramsets = {name: release[name] for name in ("ophys_paramset", "qc_paramset")}
        for qc_key in (QC & key & paramsets).proj().to_dicts():
            label = str(qc_key["experiment_id"])
            reason = _withhold_reason(qc_key, allowed)
            if reason:
                withheld.append({**key, "nwb_label": label, "reason": reason})
                continue
            files.append({**key, "nwb_label": label, **_export(qc_key)})
        self.insert1({**key, "n_files": len(files), "n_withheld": len(withheld)})
        self.File.insert(files)
        self.Withheld.insert(withheld)

    def _make_ecephys(self, key: dict, release: dict, allowed: Outcome) -> None:
        session_key = {**key, "qc_paramset": release["qc_paramset"]}
        label = "session"
        if not SessionQC & session_key:
            reason = "no session QC yet"
        elif (outcome := effective_outcome(SessionQC, SessionQCOverride, session_key)) > allowed:
            reason = f"session QC {outcome.name}"
        else:
            reason = ""
        self.insert1({**key, "n_files": 0 if reason else 1, "n_withheld": 1 if reason else 0})
        if reason:
            self.Withheld.insert1({**key, "nwb_label": label, "reason": reason})
        else:
            bundle = ecephys_session_bundle(key)
            self.File.insert1({**key, "nwb_label": label, **_write(bundle, key, "ecephys", export_ecephys_session)})


def _withhold_reason(qc_key: dict, allowed: Outcome) -> str:
    outcome = effective_outcome(QC, QCOverride, qc_key)
    if outcome > allowed:
        return f"experiment QC {outcome.name}"
    container = (Experiment & qc_key).fetch1("container_id")
    container_key = {**qc_key, "container_id": container}
    if not ContainerQC & container_key:
        return f"container {container} has no QC yet"
    container_outcome = effective_outcome(ContainerQC, ContainerQCOverride, container_key)
    if container_outcome > allowed:
        return f"container {container} QC {container_outcome.name}"
    if not CellMatching & container_key:
        return f"container {container} is not matched"
    return ""


def _export(qc_key: dict) -> dict:
    """Write (or reuse) the experiment's NWB file; returns the File row's values."""
    return _write(ophys_experiment_bundle(qc_key), qc_key, "ophys", export_ophys_experiment)


def _write(bundle, key: dict, modality: str, export) -> dict:
    """Write ``bundle`` (or reuse the file of an identical one); returns the File row's values."""
    digest = source_digest(bundle)
    target = stores.path("nwb", f"sub-{key['subject_id']}", f"{digest[:24]}_{modality}.nwb")
    previous = (ReleaseFile.File & {"source_sha256": digest}).to_dicts()
    if previous and target.exists():
        row = previous[0]
        stores.verified(stores.root() / row["path"], row["size"], row["sha256"])  # damaged: the job fails, naming it
        names = ("path", "size", "sha256", "source_sha256", "inspector_messages", "inspector_passed")
        return {name: row[name] for name in names}
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
