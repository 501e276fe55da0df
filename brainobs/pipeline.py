"""The pipeline as a whole: its computed tables in dependency order, selections, status, and populate."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType

import datajoint as dj

from brainobs.schemas import activate
from brainobs.settings import Settings


def computed_in(modules: Iterable[ModuleType]) -> list[type[dj.Table]]:
    """The Imported and Computed tables declared in ``modules``, upstream first."""
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


def computed_tables(settings: Settings | None = None) -> list[type[dj.Table]]:
    """Every Imported and Computed table of brainobs, upstream first."""
    return computed_in(activate(settings))


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


def modules_of(tables: Iterable[type[dj.Table] | dj.Table]) -> list[ModuleType]:
    """The schema modules that declare ``tables``, in the order the tables come."""
    found: dict[str, ModuleType] = {}
    for table in tables:
        cls = table if isinstance(table, type) else type(table)
        found.setdefault(cls.__module__, sys.modules[cls.__module__])
    return list(found.values())


def select_defaults(schema_modules: Iterable[ModuleType]) -> int:
    """Let each module with a ``schedule_defaults()`` pair its new items (experiments, recordings) with its
    default parameter set; returns how many selections were added."""
    return sum(int(m.schedule_defaults() or 0) for m in schema_modules if hasattr(m, "schedule_defaults"))


def schedule_defaults(settings: Settings | None = None) -> int:
    """Select every new item of every brainobs schema for its default parameter set (see :func:`select_defaults`)."""
    return select_defaults(activate(settings))


def not_selected(table: type[dj.Table]) -> int:
    """Upstream items of ``table`` that wait for a selection: for each selection its schema module lists in
    ``SELECTIONS`` (pairs of source and selection table) that ``table`` descends from, the source rows that
    have no selection row yet."""
    from brainobs.schemas import active_settings, modules

    try:
        active_settings()
        candidates = {*modules(), *modules_of([table])}
    except RuntimeError:  # brainobs's own schemas are not in use (a worker of other schema modules)
        candidates = set(modules_of([table]))
    ancestors = set(table().ancestors())
    waiting = 0
    for module in candidates:
        for source, selection in getattr(module, "SELECTIONS", ()):
            if selection.full_table_name in ancestors:
                waiting += len(source() - selection())
    return waiting


@dataclass(frozen=True)
class TableStatus:
    table: str
    done: int
    remaining: int
    not_selected: int
    pending: int
    reserved: int
    error: int
    ignore: int

    @property
    def finished(self) -> bool:
        """Nothing left to make, to select or to run (jobs in error or ignored are not left to run)."""
        return not (self.remaining or self.not_selected or self.pending or self.reserved)


def table_status(table: type[dj.Table]) -> TableStatus:
    """Done and remaining keys of one computed table, items upstream waiting for a selection, and job counts."""
    remaining, _total = table().progress()
    jobs = table().jobs.progress()
    return TableStatus(
        table=f"{table.__module__.rsplit('.', 1)[-1]}.{table.__name__}",
        done=len(table()),
        remaining=remaining,
        not_selected=not_selected(table),
        pending=jobs["pending"],
        reserved=jobs["reserved"],
        error=jobs["error"],
        ignore=jobs["ignore"],
    )


def populate_all(
    settings: Settings | None = None, *, tables: list[str] | None = None, max_attempts: int = 1
) -> dict[str, dict]:
    """Populate every computed table (or those named) in this process, with the queue code every worker runs
    (:mod:`brainobs.worker`), until nothing is left; errors are recorded in the job tables, not raised.

    Jobs left in error by earlier runs are tried again. With ``max_attempts`` 1 (the default) a failing job
    fails at once. Returns, per table name, ``success_count`` and ``error_list`` (pairs of key and message).
    """

    from brainobs.worker.loop import RetryPolicy, Worker, WorkerOptions
    from brainobs.worker.queue import TableQueue, load_tables, retry_errors

    chosen = load_tables(settings or Settings.load(), names=tables or ())
    retry_errors(chosen)
    queue = TableQueue(chosen, max_attempts=max_attempts, poll_s=0.05)
    options = WorkerOptions(until_done=True, poll_s=0.05, retry=RetryPolicy(max_attempts=max_attempts, backoff_s=0))
    Worker(queue, options).run()
    return {
        table.__name__: {"success_count": queue.made[label], "error_list": queue.failed[label]}
        for label, table in zip(queue.tables(), chosen, strict=True)
    }
