"""The pipeline as a whole: its computed tables in dependency order, their status, and populate."""

from __future__ import annotations

from dataclasses import dataclass

import datajoint as dj

from brainobs.schemas import activate, modules
from brainobs.settings import Settings


def computed_tables(settings: Settings | None = None) -> list[type[dj.Table]]:
    """Every Imported and Computed table of brainobs, upstream first."""
    modules = activate(settings)
    classes = {
        obj.full_table_name: obj
        for module in modules
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, (dj.Imported, dj.Computed)) and obj.__module__ == module.__name__
    }
    if not classes:
        return []
    dependencies = next(iter(classes.values())).connection.dependencies
    dependencies.load()
    return [classes[name] for name in dependencies.topo_sort() if name in classes]


def diagram(settings: Settings | None = None) -> dj.Diagram:
    """The whole pipeline's diagram; nodes read like ``acquisition.Session``."""
    loaded = activate(settings)
    names = {module.__name__.rsplit(".", 1)[-1]: module for module in loaded}
    graph = dj.Diagram(loaded[0].schema, context=names)
    for module in loaded[1:]:
        graph += dj.Diagram(module.schema, context=names)
    return graph


def manual_tables(settings: Settings | None = None) -> list[type[dj.Table]]:
    """Every Manual and Lookup table of brainobs, in declaration order."""
    return [
        obj
        for module in activate(settings)
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, (dj.Manual, dj.Lookup)) and obj.__module__ == module.__name__
    ]


def schedule_defaults(settings: Settings | None = None) -> None:
    """Let every schema with selection tables select new items for its default parameter set."""
    activate(settings)
    for module in modules():
        if hasattr(module, "schedule_defaults"):
            module.schedule_defaults()


@dataclass(frozen=True)
class TableStatus:
    table: str
    done: int
    remaining: int
    pending: int
    reserved: int
    error: int
    ignore: int


def table_status(table: type[dj.Table]) -> TableStatus:
    """Done and remaining keys of one computed table, with its job queue counts."""
    remaining, _total = table().progress()
    jobs = table().jobs.progress()
    return TableStatus(
        table=f"{table.__module__.rsplit('.', 1)[-1]}.{table.__name__}",
        done=len(table()),
        remaining=remaining,
        pending=jobs["pending"],
        reserved=jobs["reserved"],
        error=jobs["error"],
        ignore=jobs["ignore"],
    )


def populate_all(
    settings: Settings | None = None,
    *,
    tables: list[str] | None = None,
    reserve_jobs: bool = False,
    display_progress: bool = True,
) -> dict[str, dict]:
    """Populate every computed table (or those named) in dependency order; errors are recorded, not raised.

    Before each table, every schema's ``schedule_defaults()`` pairs new items (including rows the tables
    before it just made) with the default parameter sets.
    """
    results = {}
    for table in computed_tables(settings):
        if tables and table.__name__ not in tables:
            continue
        schedule_defaults(settings)
        results[table.__name__] = table().populate(
            reserve_jobs=reserve_jobs, suppress_errors=True, display_progress=display_progress
        )
    return results
