"""`brainobs release TAG --out DIR`: export what passes QC as populate jobs, then build the DANDI folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from brainobs.export.release import ReleaseItem, ReleaseResult, build_release, check_new_tag
from brainobs.settings import Settings


def qc_summary(tag: str) -> pd.DataFrame:
    """Per experiment of the release: computed and effective QC outcome, and released or withheld (why)."""
    from brainobs.schemas.qc import QC, QCOverride, effective_outcome
    from brainobs.schemas.release import Release, ReleaseFile

    release = (Release & {"release_tag": tag}).fetch1()
    paramsets = {name: release[name] for name in ("ophys_paramset", "qc_paramset")}
    withheld = {r["nwb_label"]: r["reason"] for r in (ReleaseFile.Withheld & {"release_tag": tag}).to_dicts()}
    rows = []
    for row in (QC & paramsets).to_dicts(order_by="experiment_id"):
        rows.append(
            {
                "subject_id": row["subject_id"],
                "session_id": row["session_id"],
                "experiment_id": row["experiment_id"],
                "qc_outcome": row["outcome"],
                "effective_outcome": effective_outcome(QC, QCOverride, row).name,
                "released": str(row["experiment_id"]) not in withheld,
                "withheld_reason": withheld.get(str(row["experiment_id"]), ""),
            }
        )
    return pd.DataFrame(rows)


def publish(
    tag: str,
    out_dir: Path,
    *,
    description: str = "",
    qc_policy: str = "WARNING",
    settings: Settings | None = None,
) -> ReleaseResult:
    """Record the release, export its files as ReleaseFile jobs, and build ``out_dir/<tag>``.

    The tag is checked (characters, and no folder of that tag in ``out_dir``) before the database is touched.
    """
    from brainobs.pipeline import schedule_defaults
    from brainobs.schemas import activate, stores
    from brainobs.schemas.ophys import default_paramset
    from brainobs.schemas.qc import DEFAULT_PARAMSET as QC_DEFAULT
    from brainobs.schemas.release import Release, ReleaseFile

    check_new_tag(tag, Path(out_dir))
    activate(settings)
    schedule_defaults(settings)
    description = description or f"brainobs release {tag}"
    if not Release & {"release_tag": tag}:
        Release.insert1(
            {
                "release_tag": tag,
                "description": description,
                "release_date": dt.date.today(),
                "qc_policy": qc_policy,
                "ophys_paramset": default_paramset(),
                "qc_paramset": QC_DEFAULT,
            }
        )
    result = ReleaseFile.populate({"release_tag": tag}, suppress_errors=True)
    if result["error_list"]:
        key, error = result["error_list"][0]
        raise RuntimeError(f"release {tag}: exporting {key} failed: {error}")
    items = [
        ReleaseItem(
            path=stores.root() / row["path"],
            subject_id=row["subject_id"],
            session_id=str(row["session_id"]),
            source_sha256=row["source_sha256"],
            modality="ecephys" if row["nwb_label"] == "session" else "ophys",
            label=None if row["nwb_label"] == "session" else row["nwb_label"],
            size=row["size"],
            sha256=row["sha256"],
        )
        for row in (ReleaseFile.File & {"release_tag": tag}).to_dicts()
    ]
    summary = qc_summary(tag)
    entry = (
        f"{len(items)} NWB files; {int((~summary['released']).sum()) if len(summary) else 0} experiments withheld "
        f"by QC (policy: worst outcome {qc_policy})"
    )
    return build_release(tag, Path(out_dir), items, description, summary, entry)
