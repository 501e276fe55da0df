"""The worker loop against an in-memory queue: order, exits, retries, signals, lost connections."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

import pytest

from brainobs.worker.loop import (
    AbortWatchdog,
    DatabaseUnreachable,
    Job,
    RetryPolicy,
    Worker,
    WorkerOptions,
    WorkerStatus,
)

FAST = {"poll_s": 0.01, "refresh_every_s": 0.05, "heartbeat_s": 0.0}


class BadMovie(ValueError):
    pass


class MemoryQueue:
    """A JobQueue in memory; ConnectionError plays the lost database connection."""

    def __init__(self, work: dict[str, list[int]], make: Callable[[Job, int], None] | None = None):
        self.pending = {table: [{"id": i} for i in ids] for table, ids in work.items()}
        self.make = make or (lambda job, call: None)
        self.calls: Counter = Counter()
        self.attempts: Counter = Counter()
        self.events: list[tuple] = []
        self.beats: list[WorkerStatus] = []
        self.reconnect_failures = 0
        self.schedule_errors = 0
        self.schedules = 0

    def register(self) -> None:
        self.events.append(("register",))

    def tables(self) -> list[str]:
        return list(self.pending)

    def claim(self, table: str) -> Job | None:
        return Job(table, self.pending[table].pop(0)) if self.pending[table] else None

    def run(self, job: Job) -> None:
        self.calls[job.key["id"]] += 1
        self.make(job, self.calls[job.key["id"]])

    def complete(self, job: Job, duration_s: float) -> None:
        self.events.append(("complete", job.table, job.key["id"]))

    def release(self, job: Job) -> None:
        self.events.append(("release", job.table, job.key["id"]))
        self.pending[job.table].insert(0, job.key)

    def count_failure(self, job: Job, message: str) -> int:
        self.attempts[job.key["id"]] += 1
        return self.attempts[job.key["id"]]

    def fail(self, job: Job, message: str, stack: str, retry_in_s: float | None) -> None:
        self.events.append(("fail", job.key["id"], message, retry_in_s))
        assert "Traceback" in stack
        if retry_in_s is not None:
            self.pending[job.table].append(job.key)

    def schedule(self, min_age_s: float) -> bool:
        if self.schedule_errors:
            self.schedule_errors -= 1
            raise RuntimeError("deadlock detected")
        self.schedules += 1
        return True

    def outstanding(self) -> int:
        return sum(len(keys) for keys in self.pending.values())

    def heartbeat(self, status: WorkerStatus) -> None:
        self.beats.append(status)

    def connection_lost(self, error: BaseException) -> bool:
        return isinstance(error, ConnectionError)

    def reconnect(self) -> None:
        if self.reconnect_failures:
            self.reconnect_failures -= 1
            raise ConnectionError("server still down")

    def done(self) -> list[tuple]:
        return [event[1:] for event in self.events if event[0] == "complete"]


def test_retry_policy():
    policy = RetryPolicy(max_attempts=3, backoff_s=30, backoff_factor=4)
    assert policy.retry_delay(BadMovie("bad header"), 1) is None  # bad input is permanent
    assert policy.retry_delay(TimeoutError(), 1) == 30 and policy.retry_delay(TimeoutError(), 2) == 120
    assert policy.retry_delay(TimeoutError(), 3) is None
    assert RetryPolicy(backoff_s=1000, max_backoff_s=60).retry_delay(OSError(), 2) == 60
    assert RetryPolicy(permanent=(KeyError,)).retry_delay(ValueError(), 1) is not None
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff_factor=0.5)


def test_runs_upstream_tables_first_until_done():
    queue = MemoryQueue({"ophys.MotionCorrection": [1, 2], "ophys.Segmentation": [3, 4]})
    assert Worker(queue, WorkerOptions(until_done=True, **FAST)).run() == 0
    assert queue.done() == [
        ("ophys.MotionCorrection", 1),
        ("ophys.MotionCorrection", 2),
        ("ophys.Segmentation", 3),
        ("ophys.Segmentation", 4),
    ]
    assert queue.events[0] == ("register",) and queue.schedules >= 1
    assert queue.beats[-1].state == "stopped" and queue.beats[-1].jobs_done == 4


def test_max_jobs_and_max_idle():
    queue = MemoryQueue({"t.A": list(range(10))})
    assert Worker(queue, WorkerOptions(max_jobs=3, **FAST)).run() == 0
    assert len(queue.done()) == 3
    idle = MemoryQueue({"t.A": []})
    started = time.monotonic()
    assert Worker(idle, WorkerOptions(max_idle_s=0.1, **FAST)).run() == 0
    assert 0.1 <= time.monotonic() - started < 5
    assert "idle" in {beat.state for beat in idle.beats}


def test_transient_errors_are_retried_and_permanent_ones_are_not():
    def make(job, call):
        if job.key["id"] == 1:
            raise BadMovie("movie.h5: 3 frames, expected 100")
        if job.key["id"] == 2 and call < 3:
            raise TimeoutError("store timed out")
        if job.key["id"] == 3:
            raise OSError("disk full")

    queue = MemoryQueue({"t.A": [1, 2, 3, 4]}, make)
    policy = RetryPolicy(max_attempts=3, backoff_s=0.0)
    worker = Worker(queue, WorkerOptions(until_done=True, retry=policy, **FAST))
    assert worker.run() == 0
    assert queue.calls == Counter({1: 1, 2: 3, 3: 3, 4: 1})
    assert sorted(queue.done()) == [("t.A", 2), ("t.A", 4)]
    final = {event[1]: event for event in queue.events if event[0] == "fail" and event[3] is None}
    assert set(final) == {1, 3}
    assert final[1][2] == "BadMovie: movie.h5: 3 frames, expected 100"
    assert worker.jobs_failed == 1 + 2 + 3 and worker.jobs_done == 2


def test_sigterm_finishes_the_job_in_hand_then_exits_0():
    def make(job, call):
        if job.key["id"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the rest of the job still runs

    before = signal.getsignal(signal.SIGTERM)
    queue = MemoryQueue({"t.A": [1, 2, 3]}, make)
    assert Worker(queue, WorkerOptions(**FAST)).run() == 0
    assert queue.done() == [("t.A", 1)], "the job in hand is finished and no other is taken"
    assert not any(event[0] in ("fail", "release") for event in queue.events)
    assert queue.beats[-1].state == "stopped"
    assert signal.getsignal(signal.SIGTERM) is before


def test_second_signal_aborts_and_puts_the_job_back():
    def make(job, call):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
        pytest.fail("the second signal should have interrupted make()")

    queue = MemoryQueue({"t.A": [1, 2]}, make)
    assert Worker(queue, WorkerOptions(**FAST)).run() == 128 + signal.SIGINT
    assert queue.events[-1] == ("release", "t.A", 1) and not queue.done()
    assert queue.beats[-1].state == "aborted"


SWALLOWING_WORKER = """
import sys, time
from brainobs.worker.loop import Worker, WorkerOptions
from tests.test_worker_loop import FAST, MemoryQueue

def make(job, call):  # like code that catches KeyboardInterrupt, or a long call that never lets it through
    print("working", flush=True)
    while True:
        try:
            time.sleep(0.05)
        except BaseException:
            pass

sys.exit(Worker(MemoryQueue({"t.A": [1]}, make), WorkerOptions(**FAST, abort_grace_s=1.0)).run())
"""


def test_second_signal_ends_a_worker_whose_job_swallows_the_abort():
    from tests.conftest import REPO

    worker = subprocess.Popen(
        [sys.executable, "-c", SWALLOWING_WORKER], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout.readline().strip() == "working"
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert worker.poll() is None, "the first signal lets the job finish"
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 128 + signal.SIGTERM
        assert time.monotonic() - started < 10
        assert "after a second signal" in worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()


NJIT_WORKER = """
import sys
import numba
from brainobs.worker.loop import Worker, WorkerOptions
from tests.test_worker_loop import FAST, MemoryQueue

@numba.njit
def spin(n):  # compiled: holds the interpreter lock, so no Python code of this process runs meanwhile
    total = 0.0
    for i in range(n):
        total += (i % 7) * 1e-9
    return total

spin(1)

def make(job, call):
    print("working", flush=True)
    spin(10**12)  # minutes

sys.exit(Worker(MemoryQueue({"t.A": [1]}, make), WorkerOptions(**FAST, abort_grace_s=1.0)).run())
"""


def test_second_signal_ends_a_worker_stuck_in_compiled_code():
    """numba's njit code holds the interpreter lock: neither the signal handler nor the watchdog thread can
    run, so the watchdog's helper process kills the worker shortly after the grace period."""
    from tests.conftest import REPO

    worker = subprocess.Popen(
        [sys.executable, "-c", NJIT_WORKER], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout.readline().strip() == "working"
        time.sleep(0.3)  # inside spin()
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert worker.poll() is None, "the first signal lets the job finish"
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == -signal.SIGKILL
        assert time.monotonic() - started < 1.0 + AbortWatchdog.KILL_AFTER_S + 3
        assert "a compiled call holds the interpreter" in worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()


def test_lost_connection_reconnects_and_requeues_without_counting_a_failure():
    def make(job, call):
        if job.key["id"] == 1 and call == 1:
            raise ConnectionError("server closed the connection unexpectedly")

    queue = MemoryQueue({"t.A": [1, 2]}, make)
    queue.reconnect_failures = 2
    worker = Worker(queue, WorkerOptions(until_done=True, **FAST))
    assert worker.run() == 0
    assert ("release", "t.A", 1) in queue.events
    assert sorted(queue.done()) == [("t.A", 1), ("t.A", 2)]
    assert worker.jobs_failed == 0 and not queue.attempts and queue.reconnect_failures == 0


def test_a_worker_waits_for_a_database_that_is_away_at_start():
    queue = MemoryQueue({"t.A": [1]})
    queue.reconnect_failures = 3  # then the server is up
    failures = iter([ConnectionError("no server")])

    def register():
        error = next(failures, None)
        if error:
            raise error
        queue.events.append(("register",))

    queue.register = register
    assert Worker(queue, WorkerOptions(**FAST, until_done=True)).run() == 0
    assert queue.events[0] == ("register",) and queue.done() == [("t.A", 1)]


def test_database_that_stays_away_stops_the_worker():
    def make(job, call):
        raise ConnectionError("server closed the connection unexpectedly")

    queue = MemoryQueue({"t.A": [1]}, make)
    queue.reconnect_failures = 10**6
    with pytest.raises(DatabaseUnreachable, match="did not come back"):
        Worker(queue, WorkerOptions(reconnect_timeout_s=0.3, **FAST)).run()
    assert queue.beats[-1].state == "failed"


def test_a_failing_scheduler_step_does_not_stop_the_worker():
    queue = MemoryQueue({"t.A": [1, 2]})
    queue.schedule_errors = 2
    assert Worker(queue, WorkerOptions(until_done=True, **FAST)).run() == 0
    assert len(queue.done()) == 2 and queue.schedules >= 1


def test_status_reports_throughput():
    queue = MemoryQueue({"t.A": list(range(5))})
    worker = Worker(queue, WorkerOptions(until_done=True, **FAST))
    worker.run()
    status = worker.status("idle")
    assert status.jobs_done == 5 and status.jobs_per_min == pytest.approx(5 * 60 / 1.0)


def test_a_queue_whose_tables_fail_to_attach_is_still_starting():
    """Opening a job table queries the server; when that fails mid-attach (the server went away between
    connecting and opening), the queue is not half attached: reconnecting loads the tables again."""
    from brainobs.worker.queue import TableQueue

    server = {"up": False}

    class Connection:
        def query(self, sql, reconnect=True):
            if not server["up"]:
                raise ConnectionError("server closed the connection unexpectedly")

    class Movie:
        connection = Connection()

        @property
        def jobs(self):
            Movie.connection.query("CREATE TABLE IF NOT EXISTS `~~movie`")
            return "jobs of Movie"

    queue = TableQueue(lambda: [Movie])
    with pytest.raises(ConnectionError) as lost:
        queue.reconnect()
    assert queue.connection_lost(lost.value) and queue.tables() == []
    server["up"] = True
    queue.reconnect()
    assert queue.tables() == ["test_worker_loop.Movie"] and queue.connection is Movie.connection
    assert not queue.connection_lost(RuntimeError("a bug in a make"))
