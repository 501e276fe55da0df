"""`brainobs release TAG --out DIR`: export what passes QC as populate jobs, then build the DANDI folder."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import pandas as pd

from brainobs.export.release import ReleaseError, ReleaseItem, ReleaseResult, build_release, check_new_tag
from brainobs.export.release_config import ReleaseConfig
from brainobs.settings import Settings

SESSION_LABELS = {"session": "ecephys", "behavior": "behavior"}  # label of a session file -> modality
SUMMARY_COLUMNS = ("subject_id", "session_id", "item", "status", "check", "value", "threshold", "reason")


def release_summary(tag: str) -> pd.DataFrame:
    """One row per item of the release (an ophys experiment, "session" for an ecephys session, "behavior" for a
    behavior-only session): released or withheld, and for a withheld one the check that decided it, its value
    and threshold, and the reason."""
    from brainobs.schemas.release import ReleaseFile

    rows = [
        {"subject_id": r["subject_id"], "session_id": r["session_id"], "item": r["nwb_label"], "status": "released"}
        for r in (ReleaseFile.File & {"release_tag": tag}).proj().to_dicts()
    ]
    rows += [
        {
            "subject_id": r["subject_id"],
            "session_id": r["session_id"],
            "item": r["nwb_label"],
            "status": "withheld",
            "check": r["check_name"],
            "value": r["value"],
            "threshold": r["threshold"],
            "reason": r["reason"],
        }
        for r in (ReleaseFile.Withheld & {"release_tag": tag}).to_dicts()
    ]
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return table.sort_values(["status", "subject_id", "session_id", "item"], ignore_index=True)


def publish(
    tag: str,
    out_dir: Path,
    *,
    description: str = "",
    qc_policy: str = "WARNING",
    settings: Settings | None = None,
    config: ReleaseConfig | None = None,
    include_embargoed: bool = False,
) -> ReleaseResult:
    """Record the release, export its files as ReleaseFile jobs, and build ``out_dir/<tag>``.

    ``config`` (a release configuration file, `load_release_config`) gives dandiset.yaml's metadata and the
    embargo rules; its placeholder fields are warned about. A public release leaves out embargoed sessions
    (listed as withheld, check "embargo"); ``include_embargoed`` builds a team release that keeps them and
    is marked embargoed in dandiset.yaml.

    The tag is checked (characters, and no folder of that tag in ``out_dir``) before the database is touched.
    """
    from brainobs.pipeline import schedule_defaults
    from brainobs.schemas import activate, stores
    from brainobs.schemas.ophys import default_paramset
    from brainobs.schemas.qc import DEFAULT_PARAMSET as QC_DEFAULT
    from brainobs.schemas.release import Release, ReleaseFile

    check_new_tag(tag, Path(out_dir))
    config = config or ReleaseConfig()
    if config.placeholders():
        warnings.warn(
            f"release {tag}: the release configuration leaves {', '.join(config.placeholders())} as placeholders",
            stacklevel=2,
        )
    activate(settings)
    schedule_defaults(settings)
    description = description or config.description or f"brainobs release {tag}"
    if not Release & {"release_tag": tag}:
        Release.insert1(
            {
                "release_tag": tag,
                "description": description,
                "release_date": dt.date.today(),
                "qc_policy": qc_policy,
                "ophys_paramset": default_paramset(),
                "qc_paramset": QC_DEFAULT,
                "include_embargoed": include_embargoed,
                "embargo_days": config.embargo_days,
                "project_embargo_days": config.project_embargo_days or None,
            }
        )
    embargoed = bool((Release & {"release_tag": tag}).fetch1("include_embargoed"))
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
            modality=SESSION_LABELS.get(row["nwb_label"], "ophys"),
            label=None if row["nwb_label"] in SESSION_LABELS else row["nwb_label"],
            size=row["size"],
            sha256=row["sha256"],
        )
        for row in (ReleaseFile.File & {"release_tag": tag}).to_dicts()
    ]
    summary = release_summary(tag)
    withheld = summary[summary["status"] == "withheld"]
    if not items:
        reasons = [f"  {r.session_id} {r.item}: {r.reason}" for r in withheld.itertuples()]
        raise ReleaseError(
            f"release {tag} has no files: "
            + ("every item was withheld:\n" + "\n".join(reasons) if reasons else "no item has been processed")
        )
    entry = f"{len(items)} NWB files; {len(withheld)} items withheld by QC (policy: worst outcome {qc_policy})"
    if embargoed:
        entry += "; a team release: embargoed sessions included"
    metadata = config.dandiset_metadata(tag, description, embargoed)
    return build_release(tag, Path(out_dir), items, description, summary, entry, metadata=metadata)
