"""Insert a parsed manifest in one transaction: all of it, or nothing.

Re-ingesting the same manifest changes nothing; a row that contradicts a stored one is refused, naming the
table, the key and the field.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from brainobs.ingest.manifest import Manifest, ManifestError, Row
from brainobs.schemas.acquisition import Container, Experiment, ProbeInsertion, Session
from brainobs.schemas.subject import Indicator, Subject

TABLES = {
    "subjects": Subject,
    "containers": Container,
    "sessions": Session,
    "experiments": Experiment,
    "probe_insertions": ProbeInsertion,
}
INSERT_ORDER = ("subjects", "containers", "sessions", "experiments", "probe_insertions")


@dataclass
class IngestReport:
    inserted: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return ", ".join(
            f"{TABLES[s].__name__}: {self.inserted.get(s, 0)} new, {self.unchanged.get(s, 0)} unchanged"
            for s in INSERT_ORDER
        )


def _same(stored: Any, given: Any) -> bool:
    if stored is None or given is None:
        return stored is None and given is None
    if isinstance(given, bool) or isinstance(stored, bool):
        return bool(stored) == bool(given)
    if isinstance(given, float) or isinstance(stored, float):
        return math.isclose(float(stored), float(given), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(given, dt.datetime) and isinstance(stored, dt.datetime):
        return stored.replace(microsecond=0, tzinfo=None) == given.replace(microsecond=0, tzinfo=None)
    return stored == given


def _resolve_subject(manifest: Manifest, row: Row) -> None:
    if "subject_id" in row.values:
        return
    found = (Session & {"session_id": row.values["session_id"]}).to_dicts()
    if not found:
        raise manifest.error(
            f"{row.where}: session {row.values['session_id']} is neither in the manifest nor in the database"
        )
    row.values["subject_id"] = found[0]["subject_id"]


def _check_references(manifest: Manifest, section: str, row: Row) -> None:
    values = row.values
    if section == "subjects" and not Indicator & {"indicator": values["indicator"]}:
        known = ", ".join(sorted(Indicator.to_arrays("indicator")))
        raise manifest.error(f"{row.where}: unknown indicator {values['indicator']!r}; known: {known}")
    if section in ("sessions", "containers") and not Subject & {"subject_id": values["subject_id"]}:
        raise manifest.error(
            f"{row.where}: subject {values['subject_id']!r} is neither in the manifest nor in the database"
        )
    if section == "experiments":
        container = {"subject_id": values["subject_id"], "container_id": values["container_id"]}
        if not Container & container:
            owner = (Container & {"container_id": values["container_id"]}).to_dicts()
            detail = f" (it belongs to subject {owner[0]['subject_id']!r})" if owner else ""
            raise manifest.error(
                f"{row.where}: container {values['container_id']} of subject {values['subject_id']!r} "
                f"is neither in the manifest nor in the database{detail}"
            )


def insert_manifest(manifest: Manifest) -> IngestReport:
    """Insert every row of ``manifest`` in one transaction; raise ManifestError and roll back on any conflict."""
    report = IngestReport()
    connection = Subject.connection
    with connection.transaction:
        for section in INSERT_ORDER:
            table = TABLES[section]
            for row in manifest.rows[section]:
                if section in ("experiments", "probe_insertions"):
                    _resolve_subject(manifest, row)
                _check_references(manifest, section, row)
                key = {name: row.values[name] for name in table.primary_key}
                stored = (table & key).to_dicts()
                if stored:
                    for name, stored_value in stored[0].items():
                        if name in row.values and not _same(stored_value, row.values[name]):
                            raise ManifestError(
                                f"{manifest.path}: {row.where}: contradicts the stored {table.__name__} {key}: "
                                f"{name} is {stored_value!r} in the database but {row.values[name]!r} here"
                            )
                    report.unchanged[section] = report.unchanged.get(section, 0) + 1
                else:
                    table.insert1({name: row.values[name] for name in table.heading.names})
                    report.inserted[section] = report.inserted.get(section, 0) + 1
    return report
