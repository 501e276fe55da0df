"""DataJoint table declarations; each make() fetches, calls one core function, inserts.

Every module declares a deferred ``schema = dj.Schema()``; :func:`activate` connects and activates them in
dependency order under ``BRAINOBS_SCHEMA_PREFIX`` (``brainobs_subject``, ``brainobs_acquisition``, ...).
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType

from brainobs.settings import Settings

SCHEMA_MODULES = ("subject", "acquisition", "behavior", "ophys", "matching", "ephys", "qc", "release", "workers")
_active: Settings | None = None


def active_settings() -> Settings:
    """The settings the schemas were activated with (make() methods resolve raw paths and stores by them)."""
    if _active is None:
        raise RuntimeError("brainobs schemas are not activated: call brainobs.schemas.activate() first")
    return _active


def finite_or_none(value: object) -> float | None:
    """A float for a finite number; None (NULL) for None, NaN and infinities, which MySQL cannot store."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def modules() -> list[ModuleType]:
    """The schema modules, in dependency order."""
    return [importlib.import_module(f"brainobs.schemas.{name}") for name in SCHEMA_MODULES]


def activate(settings: Settings | None = None) -> list[ModuleType]:
    """Connect to the configured database and declare (or attach to) every brainobs schema and job table.

    Declaration happens under a database lock (:func:`brainobs.database.ddl_lock`): processes that start at
    once on a fresh prefix wait for each other instead of racing to create the same tables.
    """
    from brainobs.database import connect

    global _active
    if settings is None and _active is not None:
        return modules()  # already active: keep the settings it was activated with
    settings = settings or Settings.load()
    _active = settings
    connection = connect(settings)
    loaded = modules()
    declare(
        connection,
        [(module, settings.schema_prefix + name) for name, module in zip(SCHEMA_MODULES, loaded, strict=True)],
    )
    return loaded


def declare(connection, schemas: list[tuple[ModuleType, str]]) -> None:
    """Activate each module's deferred ``schema`` under its database name and declare the job table of each
    of its computed tables, all under the database's DDL lock; a no-op for what is declared already."""
    import datajoint as dj

    from brainobs.database import ddl_lock

    pending = [(m, name) for m, name in schemas if not m.schema.is_activated()]
    if not pending:
        return
    with ddl_lock(connection):
        for module, name in pending:
            try:
                module.schema.activate(name)
                for obj in vars(module).values():
                    computed = isinstance(obj, type) and issubclass(obj, (dj.Imported, dj.Computed))
                    if computed and obj.__module__ == module.__name__ and not obj().jobs.is_declared:
                        obj().jobs.declare()
            except BaseException:
                # half-activated (e.g. the server went away mid-way): DataJoint would take the schema for
                # activated and leave the rest of its tables unbound; the next try starts it again
                module.schema.database = None
                raise
