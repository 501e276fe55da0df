"""Release policy on plain records: which items are withheld and why, and when a written file can be reused.

ReleaseFile.make fetches the QC rows, the review and the embargo dates and calls these; the outcome order
and the policy itself (:func:`brainobs.populate.qc.release_verdict`) are in :mod:`brainobs.populate.qc`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from brainobs.populate.qc import Outcome, release_verdict

# the File row columns a reused file carries over from the release that wrote it
FILE_COLUMNS = ("path", "size", "sha256", "source_sha256", "inspector_messages", "inspector_passed")


def embargo_withheld(end: dt.date, release_date: dt.date, include_embargoed: bool) -> dict | None:
    """None when a session whose embargo ends on ``end`` may be in the release; else the Withheld values."""
    if end <= release_date or include_embargoed:
        return None
    return {
        "reason": f"session embargoed until {end.isoformat()} (a public release leaves it out)",
        "check_name": "embargo",
    }


def qc_withheld(
    what: str, outcome: Outcome | None, allowed: Outcome, review: dict | None, checks: Sequence[dict]
) -> dict | None:
    """None when an item whose effective QC ``outcome`` is at most ``allowed`` passes; else the Withheld values:
    the reason and the check that decided it, the worst one (the first among the worst of ``checks``, given in name
    order, naming the others) with its value and threshold, or the reviewer's ``review`` (reviewer, reason).
    ``outcome`` None: the item has no QC yet."""
    if outcome is None:
        return {"reason": f"{what} has no QC yet", "check_name": "missing QC"}
    why = release_verdict(outcome, allowed)
    if not why:
        return None
    if review:
        reason = f"{what}: reviewer {review['reviewer']} set {outcome.name}: {review['reason']}"[:255]
        return {"reason": reason, "check_name": "override"}
    decider = max(checks, key=lambda c: Outcome[c["outcome"]])
    also = [c["check_name"] for c in checks if c is not decider and c["outcome"] == decider["outcome"]]
    also_text = f" (also {decider['outcome']}: {', '.join(also)})" if also else ""
    return {
        "reason": f"{what} QC {why}: {decider['reason']}{also_text}"[:255],
        "check_name": decider["check_name"],
        "value": decider["value"],
        "threshold": decider["threshold"],
    }


def reusable_file(previous: Sequence[dict], target_exists: bool) -> dict | None:
    """The File values of a file already written from the same source (same ``source_sha256``), when one was
    recorded and its file is in the store; None when the file must be written."""
    if not previous or not target_exists:
        return None
    return {name: previous[0][name] for name in FILE_COLUMNS}
