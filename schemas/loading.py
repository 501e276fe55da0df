"""Insert a parsed manifest in one transaction: all of it, or nothing.

Re-ingesting the same manifest changes nothing; a row that contradicts a stored one is refused, naming the
table, the key and the field.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
from dataclasses import dataclass, field
from typing import Any

import datajoint as dj

from brainobs.ingest.manifest import Manifest, ManifestError, Row
from brainobs.schemas.acquisition import Container, Experiment, PlaneGroup, ProbeInsertion, Session
from brainobs.schemas.subject import Indicator, Subject

TABLES = {
    "subjects": Subject,
    "containers": Container,
    "sessions": Session,
    "experiments": Experiment,
    "plane_groups": PlaneGroup,
    "probe_insertions": ProbeInsertion,
}
INSERT_ORDER = ("subjects", "containers", "sessions", "experiments", "plane_groups", "probe_insertions")
SURVEY_IDS = {"sessions": "session_id", "containers": "container_id", "experiments": "experiment_id"}


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


def _check_id_unused(manifest: Manifest, section: str, row: Row, table: type, key: dict) -> None:
    """An id unique across the survey (session, container, experiment) is not stored under another key."""
    id_name = SURVEY_IDS.get(section)
    if id_name is None:
        return
    for other in (table & {id_name: key[id_name]}).proj().to_dicts():
        if other != key:
            raise manifest.error(
                f"{row.where}: {id_name} {key[id_name]} is already stored as {table.__name__} {other}, "
                f"not {key}: ids are unique across the survey"
            )


def _database_errors() -> tuple[type[BaseException], ...]:
    """DataJoint's errors and those of the installed database drivers."""
    errors: list[type[BaseException]] = [dj.DataJointError]
    for module, name in (("psycopg2", "Error"), ("pymysql", "Error")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except ImportError:
            continue
    return tuple(errors)


def _insert_row(manifest: Manifest, section: str, row: Row, report: IngestReport) -> None:
    table = TABLES[section]
    if section in ("experiments", "probe_insertions"):
        _resolve_subject(manifest, row)
    _check_references(manifest, section, row)
    key = {name: row.values[name] for name in table.primary_key}
    _check_id_unused(manifest, section, row, table, key)
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


def insert_manifest(manifest: Manifest) -> IngestReport:
    """Insert every row of ``manifest`` in one transaction; raise ManifestError and roll back on any conflict.

    A database error is reported as a ManifestError naming the row (the transaction is rolled back)."""
    report = IngestReport()
    database_errors = _database_errors()
    row: Row | None = None
    try:
        with Subject.connection.transaction:
            for section in INSERT_ORDER:
                rows = manifest.plane_groups if section == "plane_groups" else manifest.rows[section]
                for row in rows:
                    _insert_row(manifest, section, row, report)
    except database_errors as err:
        where = f"{row.where}: " if row is not None else ""
        message = " ".join(str(err).split())
        raise manifest.error(f"{where}the database refused the row: {type(err).__name__}: {message}") from None
    return report
