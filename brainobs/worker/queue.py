"""The DataJoint side of the populate worker: the job queue it drives and the scheduler step.

What DataJoint's job API does, we use: the per-table queues (``T.jobs``, table ``~~<name>``), adding new jobs
(``jobs.refresh``), reserving (``jobs.reserve``), finishing (``jobs.complete``), ignoring (``jobs.ignore``) and
the status views and counts (``jobs.pending``, ``jobs.progress()``). A job is computed with a direct-mode
``populate(key)``, because DataJoint's distributed populate turns SIGTERM into a recorded job error.

What it lacks, this module adds:

- selection: the scheduler step first pairs new items with the default parameter sets (each schema
  module's ``schedule_defaults()``), so that a recording made by an upstream table is selected and sorted
  without anyone acting;
- retries by error type: failed attempts are counted in ``workers.JobAttempt``, and a failed job goes back
  to ``pending`` with a later ``scheduled_time`` (the policy is :class:`brainobs.worker.loop.RetryPolicy`);
- liveness: ``jobs.refresh(orphan_timeout=...)`` only re-queues by age, without counting an attempt. The
  scheduler step re-queues a reservation at once when the reserving worker is gone from this host (same host
  name and PID namespace), otherwise after the table's ``orphan_timeout_s``, and counts it as a failed
  attempt, so that a job that kills its worker every time ends as an error. DataJoint records the job's
  ``connection_id`` once per connection and never after a reconnect, so it is not used;
- workers take turns at the scheduler step under a :class:`Lease`, and report themselves in ``workers.Worker``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import platform
import random
import shlex
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import datajoint as dj
from datajoint.errors import DataJointError, LostConnectionError

from brainobs.settings import Settings
from brainobs.worker.loop import Job, WorkerStatus

log = logging.getLogger(__name__)
DEFAULT_ORPHAN_TIMEOUT_S = 6 * 3600.0  # tables whose jobs can run longer set orphan_timeout_s
DEFAULT_RESOURCES = {"cpus": 2, "mem_gb": 8, "hours": 4, "gpus": 0}  # tables override with worker_resources
LEASE_TTL_S = 120.0  # a scheduler step that outlives this is presumed dead (a second one running is harmless)
WORKER_RETENTION_S = 7 * 24 * 3600.0
LIVE_STATES = ("starting", "working", "idle")
ERROR_MESSAGE_LENGTH = 2047


class WorkerSetupError(ValueError):
    """The worker was asked for tables or modules that do not exist."""


# -- tables -------------------------------------------------------------------------------------------


def table_label(table: type[dj.Table] | dj.Table) -> str:
    """``module.Class``, as `brainobs status` shows a table."""
    cls = table if isinstance(table, type) else type(table)
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


def orphan_timeout_s(table: type[dj.Table] | dj.Table) -> float:
    """Seconds after which a reservation of ``table`` is presumed dead: its ``orphan_timeout_s`` attribute,
    which must exceed the table's longest job, or :data:`DEFAULT_ORPHAN_TIMEOUT_S`."""
    return float(getattr(table, "orphan_timeout_s", DEFAULT_ORPHAN_TIMEOUT_S))


def worker_resources(table: type[dj.Table]) -> dict[str, int]:
    """What one worker for ``table`` needs: cpus, mem_gb, hours, gpus (``worker_resources`` attribute)."""
    return {**DEFAULT_RESOURCES, **getattr(table, "worker_resources", {})}


def registry() -> ModuleType:
    """The ``workers`` schema module (Worker, JobAttempt, Lease)."""
    return importlib.import_module("brainobs.schemas.workers")


def load_tables(settings: Settings, modules: Sequence[str] = (), names: Sequence[str] = ()) -> list[type[dj.Table]]:
    """Connect, declare what is missing (under the database's DDL lock), and return the computed tables to
    work on, upstream first.

    By default those of brainobs; with ``modules``, those of these importable schema modules instead (each
    exposes a deferred ``schema``, activated as ``<schema_prefix><module's last name>``). ``names``
    (``Class`` or ``module.Class``) picks some of them.
    """
    from brainobs.database import connect
    from brainobs.pipeline import computed_in
    from brainobs.schemas import activate, declare

    if modules:
        connection = connect(settings)
        loaded = []
        for name in modules:
            try:
                loaded.append(importlib.import_module(name))
            except ImportError as err:
                raise WorkerSetupError(f"cannot import schema module {name!r}: {err}") from None
        loaded.append(registry())
        declare(connection, [(m, settings.schema_prefix + m.__name__.rsplit(".", 1)[-1]) for m in loaded])
        tables = computed_in(loaded[:-1])
    else:
        tables = computed_in(activate(settings))  # the workers schema is one of brainobs's
    if names:
        by_name = {n: t for t in tables for n in (t.__name__, table_label(t))}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise WorkerSetupError(f"unknown tables {unknown}; known: {sorted(table_label(t) for t in tables)}")
        chosen = {by_name[n] for n in names}
        tables = [t for t in tables if t in chosen]
    return tables


# -- small helpers over the job tables ----------------------------------------------------------------


def job_hash(key: dict[str, Any]) -> str:
    return hashlib.md5(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def pid_namespace() -> str:
    """This process's PID namespace (Linux): pids mean the same only within one, and containers that share
    a host name (host networking) need not share it."""
    with suppress(OSError):
        return os.readlink("/proc/self/ns/pid")
    return ""


def _local_pids(host: str) -> set[int]:
    """Pids of the workers that ran on this host in this PID namespace: the ones whose liveness we can judge."""
    workers = registry().Worker & {"host": host, "pid_ns": pid_namespace()}
    return {int(pid) for pid in workers.to_arrays("pid")}


def _interval(connection: dj.Connection, seconds: float) -> str:
    return connection.adapter.interval_expr(int(round(seconds * 1e6)), "microsecond")


def _set_job(
    jobs: dj.Table,
    key: dict[str, Any],
    assign: dict[str, Any],
    *,
    expect: dict[str, Any],
    times: dict[str, float] | None = None,
) -> bool:
    """Atomically update one job row if it still matches ``expect``; ``times`` sets columns to the server's
    time plus so many seconds. Returns whether the row was updated."""
    q = jobs.connection.adapter.quote_identifier
    sets = [f"{q(name)}=%s" for name in assign]
    sets += [
        f"{q(name)}=CURRENT_TIMESTAMP(3) + {_interval(jobs.connection, seconds)}"
        for name, seconds in (times or {}).items()
    ]
    where = (jobs & {k: key[k] for k in jobs.primary_key} & expect).where_clause()
    cursor = jobs.connection.query(
        f"UPDATE {jobs.full_table_name} SET {', '.join(sets)}{where}", args=list(assign.values())
    )
    return cursor.rowcount == 1


def _record_attempt(table: dj.Table, key: dict[str, Any], message: str, continuing: bool) -> int:
    """Count one more failed attempt of a job; ``continuing`` False starts the count afresh."""
    attempt_table = registry().JobAttempt
    ident = {"table_name": table.full_table_name, "job_hash": job_hash(key)}
    previous = (attempt_table & ident).to_dicts() if continuing else []
    attempts = previous[0]["attempts"] + 1 if previous else 1
    row = {"job_key": json.dumps(key, sort_keys=True, default=str)[:1023], "last_error": message[:ERROR_MESSAGE_LENGTH]}
    (attempt_table & ident).delete_quick()  # the job is reserved by the caller: no one else writes this row
    attempt_table.insert1({**ident, **row, "attempts": attempts})
    return attempts


def _forget_attempts(table: dj.Table, keys: Iterable[dict[str, Any]]) -> None:
    hashes = [{"table_name": table.full_table_name, "job_hash": job_hash(k)} for k in keys]
    if hashes:
        (registry().JobAttempt & hashes).delete_quick()


def _stamp_error(jobs: dj.Table, key: dict[str, Any], stack: str) -> None:
    """Store the traceback of the latest failure with the job (the row may be gone already)."""
    with suppress(DataJointError):
        jobs.update1({**{k: key[k] for k in jobs.primary_key}, "error_stack": stack})


def _server_now(connection: dj.Connection):
    return connection.query("SELECT LOCALTIMESTAMP(3)").fetchone()[0]


# -- the scheduler step -------------------------------------------------------------------------------


@dataclass
class ScheduleReport:
    selected: int = 0  # new items paired with a default parameter set
    added: int = 0  # new pending jobs
    requeued: list[str] = field(default_factory=list)  # orphans put back in the queue, with the reason
    failed: list[str] = field(default_factory=list)  # orphans that used up their attempts
    lost_workers: int = 0  # workers of this host found dead

    def __bool__(self) -> bool:
        return bool(self.selected or self.added or self.requeued or self.failed or self.lost_workers)

    def __str__(self) -> str:
        return (
            f"{self.selected} items selected, {self.added} jobs added, {len(self.requeued)} orphans re-queued, "
            f"{len(self.failed)} orphans failed for good"
        )


def schedule(
    tables: Iterable[dj.Table | type[dj.Table]],
    *,
    max_attempts: int = 3,
    orphan_timeout: float | None = None,
    host: str | None = None,
) -> ScheduleReport:
    """Select new items for the default parameter sets, add new jobs to every table's queue and re-queue
    orphaned reservations (see the module docstring).

    ``orphan_timeout`` overrides every table's ``orphan_timeout_s``; ``host`` is this machine's name.
    """
    from brainobs.pipeline import modules_of, select_defaults

    tables = list(tables)
    host = host or platform.node()
    local_pids = _local_pids(host)
    report = ScheduleReport(selected=select_defaults(modules_of(tables)))
    for table in tables:
        jobs = table.jobs
        report.added += jobs.refresh(delay=-1)["added"]
        timeout = orphan_timeout if orphan_timeout is not None else orphan_timeout_s(table)
        for row, reason in _orphans(jobs, timeout, host, local_pids):
            _requeue_orphan(table, jobs, row, reason, max_attempts, report)
    report.lost_workers = _mark_lost_workers(host, local_pids)
    return report


def _orphans(jobs: dj.Table, timeout: float, host: str, local_pids: set[int]) -> list[tuple[dict, str]]:
    """Reservations whose worker is gone from this host (among ``local_pids``) or that outlived ``timeout``."""
    fields = ("host", "pid", "error_message")
    found: dict[str, tuple[dict, str]] = {}
    for row in (jobs.reserved & {"host": host}).proj(*fields).to_dicts():
        if row["pid"] in local_pids and not pid_alive(row["pid"]):
            found[job_hash(row)] = (row, f"its worker (pid {row['pid']} on {host}) is gone")
    expired = jobs.reserved & f"reserved_time < CURRENT_TIMESTAMP(3) - {_interval(jobs.connection, timeout)}"
    for row in expired.proj(*fields).to_dicts():
        reason = f"reserved by {row['host']}:{row['pid']} for more than {timeout:.0f} s (orphan timeout)"
        found.setdefault(job_hash(row), (row, reason))
    return list(found.values())


def _requeue_orphan(
    table: dj.Table, jobs: dj.Table, row: dict, reason: str, max_attempts: int, report: ScheduleReport
) -> None:
    key = {k: row[k] for k in jobs.primary_key}
    message = f"orphaned: {reason}"
    attempts = _record_attempt(table, key, message, continuing=bool(row["error_message"]))
    expect = {"status": "reserved", "host": row["host"], "pid": row["pid"]}
    label = f"{table_label(table)} {key}: {reason}"
    if attempts >= max_attempts:
        assign = {"status": "error", "error_message": f"{message}; gave up after {attempts} attempts"}
        if _set_job(jobs, key, assign, expect=expect, times={"completed_time": 0}):
            report.failed.append(label)
            log.warning("failed for good: %s", label)
        return
    assign = {"status": "pending", "error_message": message, "reserved_time": None}
    if _set_job(jobs, key, assign, expect=expect, times={"scheduled_time": 0}):
        report.requeued.append(label)
        log.warning("re-queued: %s", label)


def _mark_lost_workers(host: str, local_pids: set[int]) -> int:
    workers = registry().Worker
    lost = 0
    for row in (workers & {"host": host} & f"state in {LIVE_STATES}").proj("pid").to_dicts():
        if row["pid"] in local_pids and not pid_alive(row["pid"]):
            lost += _update_worker(workers, row["worker_id"], {"state": "lost"}, touch=False)
    stale = workers & f"last_seen < CURRENT_TIMESTAMP(3) - {_interval(workers.connection, WORKER_RETENTION_S)}"
    stale.delete_quick()
    return lost


def _update_worker(workers: type[dj.Table], worker_id: str, assign: dict[str, Any], *, touch: bool = True) -> int:
    q = workers.connection.adapter.quote_identifier
    sets = [f"{q(name)}=%s" for name in assign] + ([f"{q('last_seen')}=CURRENT_TIMESTAMP(3)"] if touch else [])
    cursor = workers.connection.query(
        f"UPDATE {workers.full_table_name} SET {', '.join(sets)} WHERE {q('worker_id')}=%s",
        args=[*assign.values(), worker_id],
    )
    return cursor.rowcount


class Lease:
    """A named lock with an expiry time, in table ``workers.Lease``: one atomic UPDATE takes it, so it works
    the same on PostgreSQL and MySQL. A holder that dies loses it after ``ttl_s``, or at once to a process on
    its own host that finds its pid gone."""

    def __init__(self, name: str, holder: str):
        self.table = registry().Lease
        self.name, self.holder = name, holder
        self.table.insert1({"lease": name}, skip_duplicates=True)

    def acquire(self, ttl_s: float = LEASE_TTL_S, min_age_s: float = 0.0) -> bool:
        """Take the lease if it is free and its step last ran at least ``min_age_s`` ago."""
        q = self.table.connection.adapter.quote_identifier
        due = f"({q('last_run')} IS NULL OR {q('last_run')} <= CURRENT_TIMESTAMP(3) - {self._interval(min_age_s)})"
        free = f"({q('expires_at')} <= CURRENT_TIMESTAMP(3) OR {q('holder')}=%s)"
        if self._take(ttl_s, f"{free} AND {due}", [self.holder]):
            return True
        holder = (self.table & {"lease": self.name}).to_arrays("holder")[0]
        if holder == self.holder:  # MySQL counts an UPDATE that changed nothing (same millisecond) as no row
            return True
        host, _, pid = holder.partition(":")
        pid = pid.split(":", 1)[0]
        if (
            holder
            and host == platform.node()
            and pid.isdigit()
            and int(pid) in _local_pids(host)
            and not pid_alive(int(pid))
        ):
            log.warning("taking over lease %s from %s, which is gone", self.name, holder)
            return self._take(ttl_s, f"{q('holder')}=%s", [holder])
        return False

    def release(self) -> None:
        """Free the lease and note that its step ran now."""
        connection = self.table.connection
        q = connection.adapter.quote_identifier
        connection.query(
            f"UPDATE {self.table.full_table_name} SET {q('holder')}='', {q('expires_at')}=CURRENT_TIMESTAMP(3), "
            f"{q('last_run')}=CURRENT_TIMESTAMP(3) WHERE {q('lease')}=%s AND {q('holder')}=%s",
            args=[self.name, self.holder],
        )

    def _take(self, ttl_s: float, condition: str, args: list[Any]) -> bool:
        q = self.table.connection.adapter.quote_identifier
        cursor = self.table.connection.query(
            f"UPDATE {self.table.full_table_name} SET {q('holder')}=%s, "
            f"{q('expires_at')}=CURRENT_TIMESTAMP(3) + {self._interval(ttl_s)} "
            f"WHERE {q('lease')}=%s AND {condition}",
            args=[self.holder, self.name, *args],
        )
        return cursor.rowcount == 1

    def _interval(self, seconds: float) -> str:
        return _interval(self.table.connection, seconds)


def scheduler_lease(tables: Iterable[dj.Table | type[dj.Table]], holder: str) -> Lease:
    """The lease of the scheduler step over this set of tables (workers of other table sets have theirs)."""
    names = sorted(t.full_table_name for t in tables)
    return Lease("sched-" + hashlib.md5("\n".join(names).encode()).hexdigest()[:24], holder)


# -- the queue a worker drives ------------------------------------------------------------------------


class TableQueue:
    """A :class:`brainobs.worker.loop.JobQueue` over DataJoint computed tables (upstream first).

    ``tables`` may be a function that connects and returns them (:func:`load_tables`): it is called by
    :meth:`register`, so that a worker that starts while the database is away waits for it like a running one.
    ``made`` and ``failed`` count, per table label, the jobs this queue completed and those that failed for good.
    """

    def __init__(
        self,
        tables: Sequence[type[dj.Table]] | Callable[[], Sequence[type[dj.Table]]],
        *,
        max_attempts: int = 3,
        poll_s: float = 1.0,
        batch: int = 32,
    ):
        self._load = tables if callable(tables) else None
        self._tables: dict[str, dj.Table] = {}
        self._jobs: dict[str, dj.Table] = {}
        if self._load is None:
            self._attach(tables)
        self.max_attempts, self.poll_s, self.batch = max_attempts, poll_s, batch
        self.host, self.pid = platform.node(), os.getpid()
        self.worker_id = f"{self.host}:{self.pid}:{int(time.time() * 1000)}"
        self._empty_until: dict[str, float] = {}
        self._lease: Lease | None = None
        self.made: Counter[str] = Counter()
        self.failed: defaultdict[str, list[tuple[dict, str]]] = defaultdict(list)

    def _attach(self, tables: Sequence[type[dj.Table]]) -> None:
        if not tables:
            raise WorkerSetupError("a worker needs at least one computed table")
        made = {table_label(t): t() for t in tables}
        jobs = {label: table.jobs for label, table in made.items()}  # may query, and fail, while the server is away
        connection = next(iter(made.values())).connection
        # attached only whole: `connection_lost` and `reconnect` read a half-attached queue as a started one
        self._ready: dict[str, list[dict]] = {label: [] for label in made}
        self._jobs, self.connection, self._tables = jobs, connection, made

    def tables(self) -> list[str]:
        return list(self._tables)

    def register(self) -> None:
        """Enter this worker in ``workers.Worker``. Jobs still reserved under this host and pid by an earlier
        worker in this PID namespace were left by a dead process (the pid is ours now): back in the queue."""
        if not self._tables:
            self._attach(self._load())
        self._enter()
        predecessors = registry().Worker & {"host": self.host, "pid": self.pid, "pid_ns": pid_namespace()}
        if len(predecessors - {"worker_id": self.worker_id}) == 0:
            return
        report = ScheduleReport()
        reason = f"its worker (pid {self.pid} on {self.host}) was restarted"
        for table in self._tables.values():
            left = table.jobs.reserved & {"host": self.host, "pid": self.pid}
            for row in left.proj("host", "pid", "error_message").to_dicts():
                _requeue_orphan(table, table.jobs, row, reason, self.max_attempts, report)

    def claim(self, table: str) -> Job | None:
        ready = self._ready[table]
        if not ready:
            if time.monotonic() < self._empty_until.get(table, 0.0):
                return None
            ready.extend(self._pending(table))
            if not ready:
                self._empty_until[table] = time.monotonic() + self.poll_s
                return None
        jobs = self._jobs[table]
        while ready:
            row = ready.pop()
            key = {k: row[k] for k in jobs.primary_key}
            if jobs.reserve(key):
                return Job(table, key, retried=bool(row["error_message"]))
        return None

    def _pending(self, table: str) -> list[dict]:
        """Up to ``batch`` ready jobs, most urgent last, shuffled within a priority so that workers reading
        the same list at once seldom reach for the same job."""
        ready = self._jobs[table].pending & "scheduled_time <= CURRENT_TIMESTAMP(3)"
        rows = ready.proj("priority", "error_message").to_dicts(
            order_by=("priority", "scheduled_time"), limit=self.batch
        )
        random.shuffle(rows)
        rows.sort(key=lambda row: row["priority"], reverse=True)
        return rows

    def run(self, job: Job) -> None:
        self._tables[job.table].populate(job.key, reserve_jobs=False, suppress_errors=False)

    def complete(self, job: Job, duration_s: float) -> None:
        self._jobs[job.table].complete(job.key, duration=duration_s)
        self.made[job.table] += 1
        if job.retried:
            _forget_attempts(self._tables[job.table], [job.key])

    def release(self, job: Job) -> None:
        _set_job(
            self._jobs[job.table],
            job.key,
            {"status": "pending", "reserved_time": None},
            expect=self._mine(),
            times={"scheduled_time": 0},
        )

    def count_failure(self, job: Job, message: str) -> int:
        return _record_attempt(self._tables[job.table], job.key, message, continuing=job.retried)

    def fail(self, job: Job, message: str, stack: str, retry_in_s: float | None) -> None:
        jobs = self._jobs[job.table]
        message = message[:ERROR_MESSAGE_LENGTH]
        if retry_in_s is None:
            done = _set_job(
                jobs,
                job.key,
                {"status": "error", "error_message": message},
                expect=self._mine(),
                times={"completed_time": 0},
            )
        else:
            done = _set_job(
                jobs,
                job.key,
                {"status": "pending", "error_message": message, "reserved_time": None},
                expect=self._mine(),
                times={"scheduled_time": retry_in_s},
            )
        if done:
            _stamp_error(jobs, job.key, stack)
            if retry_in_s is None:
                self.failed[job.table].append((job.key, message))
        else:
            log.warning("%s was no longer reserved by this worker; its error is not recorded", job)

    def schedule(self, min_age_s: float) -> bool:
        tables = list(self._tables.values())
        if self._lease is None:
            self._lease = scheduler_lease(tables, self.worker_id)
        if not self._lease.acquire(min_age_s=min_age_s):
            return False
        try:
            report = schedule(tables, max_attempts=self.max_attempts, host=self.host)
        finally:
            self._lease.release()
        self._empty_until.clear()
        if report:
            log.info("scheduler step: %s", report)
        return True

    def outstanding(self) -> int:
        return sum(len(jobs & "status in ('pending', 'reserved')") for jobs in self._jobs.values())

    def heartbeat(self, status: WorkerStatus) -> None:
        values = {
            "state": status.state,
            "jobs_done": status.jobs_done,
            "jobs_failed": status.jobs_failed,
            "jobs_per_min": round(status.jobs_per_min, 3),
            "current_job": status.current_job[:1023],
        }
        if not _update_worker(registry().Worker, self.worker_id, values):
            self._enter()  # pruned, or registered while the database was away (no-op if the row is there)
            _update_worker(registry().Worker, self.worker_id, values)

    def connection_lost(self, error: BaseException) -> bool:
        if not self._tables:  # still starting: anything but a setup mistake means the database is away
            return not isinstance(error, WorkerSetupError)
        if isinstance(error, LostConnectionError):
            return True
        try:  # not Connection.is_connected: in DataJoint 2.3.5 it says True for a dead connection
            self.connection.query("SELECT 1", reconnect=False)
        except Exception:
            return True
        return False

    def reconnect(self) -> None:
        if not self._tables:
            self._attach(self._load())
            return
        with suppress(Exception):
            self.connection.close()
        self.connection.connect()
        if self.connection.in_transaction:  # the flag of a transaction the old connection lost
            self.connection.cancel_transaction()
        _update_worker(registry().Worker, self.worker_id, {"connection_id": self._connection_id()})

    def _enter(self) -> None:
        registry().Worker.insert1(
            {
                "worker_id": self.worker_id,
                "host": self.host,
                "pid": self.pid,
                "pid_ns": pid_namespace(),
                "connection_id": self._connection_id(),
            },
            skip_duplicates=True,
        )

    def _mine(self) -> dict[str, Any]:
        return {"status": "reserved", "host": self.host, "pid": self.pid}

    def _connection_id(self) -> int:
        sql = "SELECT CONNECTION_ID()" if self.connection.adapter.backend == "mysql" else "SELECT pg_backend_pid()"
        return int(self.connection.query(sql).fetchone()[0])


# -- what `brainobs status` and `brainobs jobs` show ---------------------------------------------------


def worker_rows(seen_within_s: float = 3600.0) -> list[dict[str, Any]]:
    """Workers seen in the last ``seen_within_s`` seconds, most recent first, with ``idle_s`` since then."""
    workers = registry().Worker
    now = _server_now(workers.connection)
    recent = workers & f"last_seen >= CURRENT_TIMESTAMP(3) - {_interval(workers.connection, seen_within_s)}"
    rows = recent.to_dicts(order_by="last_seen DESC")
    for row in rows:
        row["idle_s"] = max((now - row["last_seen"]).total_seconds(), 0.0)
    return rows


def throughput(rows: Iterable[dict[str, Any]], live_within_s: float = 60.0) -> tuple[float, int]:
    """Jobs per minute of the live workers among ``rows`` (as from :func:`worker_rows`), and their number."""
    live = [r for r in rows if r["state"] in LIVE_STATES and r["idle_s"] <= live_within_s]
    return sum(r["jobs_per_min"] for r in live), len(live)


def error_rows(tables: Iterable[type[dj.Table]], where: str | None = None) -> list[dict[str, Any]]:
    """The jobs in error, with their failed attempts, table by table."""
    attempt_table = registry().JobAttempt
    rows = []
    for table in tables:
        errors = table.jobs.errors & where if where else table.jobs.errors
        for row in errors.to_dicts(order_by="completed_time"):
            key = {k: row[k] for k in table.jobs.primary_key}
            ident = {"table_name": table.full_table_name, "job_hash": job_hash(key)}
            attempts = (attempt_table & ident).to_arrays("attempts")
            rows.append(
                {
                    "table": table_label(table),
                    "key": key,
                    "attempts": int(attempts[0]) if len(attempts) else 1,
                    **{k: row[k] for k in ("error_message", "error_stack", "host", "pid", "completed_time")},
                }
            )
    return rows


def retry_errors(tables: Iterable[type[dj.Table]], where: str | None = None) -> int:
    """Put the jobs in error (those matching ``where``) back in the queue with a fresh attempt count."""
    requeued = 0
    for table in tables:
        errors = table.jobs.errors & where if where else table.jobs.errors
        keys = errors.keys()
        if not keys:
            continue
        _forget_attempts(table(), keys)
        errors.delete_quick()
        requeued += table.jobs.refresh(keys, delay=-1)["added"]
    return requeued


def ignore_jobs(table: type[dj.Table], keys: Sequence[dict[str, Any]] = (), where: str | None = None) -> int:
    """Mark jobs to be skipped: the given keys, and the queued jobs matching ``where``."""
    jobs = table.jobs
    chosen = list(keys) + ((jobs & where).keys() if where else [])
    for key in chosen:
        jobs.ignore(key)
    return len(chosen)


def sbatch_commands(
    tables: Iterable[type[dj.Table]], *, workers: int, script: str = "deploy/slurm/brainobs-worker.sbatch"
) -> list[str]:
    """One ``sbatch`` command per resource class of the tables: an array of ``workers`` workers, each with
    what the most demanding table of its class asks for (see :func:`worker_resources`)."""
    groups: dict[tuple, list[str]] = {}
    for table in tables:
        res = worker_resources(table)
        groups.setdefault((res["cpus"], res["mem_gb"], res["hours"], res["gpus"]), []).append(table.__name__)
    commands = []
    for (cpus, mem_gb, hours, gpus), names in groups.items():
        options = [f"--array=0-{workers - 1}", f"--cpus-per-task={cpus}", f"--mem={mem_gb}G", f"--time={hours}:00:00"]
        options += [f"--gres=gpu:{gpus}"] if gpus else []
        options.append(f"--export=ALL,BRAINOBS_WORKER_TABLES={','.join(names)}")
        commands.append(shlex.join(["sbatch", *options, script]))
    return commands
