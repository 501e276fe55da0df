"""The populate worker loop, free of any database code (tested with a fake queue).

A :class:`Worker` takes jobs from a :class:`JobQueue` (the computed tables, upstream first), runs them one
at a time and records each outcome: done, retried after a back-off, failed for good, or put back. The
queue does all the talking to the database (:class:`brainobs.worker.queue.TableQueue` for DataJoint tables,
which says what DataJoint's job API does and what is added here: retries by error type, liveness, signals).

Signals. The first SIGTERM or SIGINT (SLURM preemption, Kubernetes eviction, Ctrl-C) stops the worker
taking jobs: it finishes the job in hand and exits with status 0. A second signal aborts the job in hand
(its transaction is rolled back and the job is put back in the queue) and exits with 128 + the signal.
Python runs signal handlers only between bytecodes of the main thread, and code that catches
KeyboardInterrupt (or a long compiled call) can delay or swallow the abort; so a watchdog also sees the
signals (a helper process reading the interpreter's wakeup fd, see :class:`AbortWatchdog`) and, if the
worker has not exited ``abort_grace_s`` after the second one, ends the process with status 128 + the
signal, or with SIGKILL a moment later when a compiled call (numba) holds the interpreter lock so that no
Python thread of the worker can run. The server then rolls the job's transaction back as the connection
closes, and the next scheduler step re-queues the job, whose worker is gone.

Lost database connection. The worker reconnects, with back-off, for up to ``reconnect_timeout_s``; the job
that was running is put back in the queue without counting as a failed attempt. A worker that cannot
reach the database while starting (``JobQueue.register``) waits for it the same way.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
RATE_WINDOW_S = 300.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class WorkerAborted(KeyboardInterrupt):
    """A second stop signal: abandon the job in hand. A KeyboardInterrupt, so that make() code that catches
    Exception lets it through and DataJoint rolls the job's transaction back."""


class DatabaseUnreachable(RuntimeError):
    """The database did not come back within the reconnect timeout."""


@dataclass(frozen=True)
class Job:
    """One key of one computed table, reserved for this worker."""

    table: str
    key: dict[str, Any]
    retried: bool = False  # the job failed before: it carries an error history

    def __str__(self) -> str:
        return f"{self.table} {self.key}"


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed job is tried again, and after how long.

    Errors of a ``permanent`` class (bad input: ValueError and its subclasses such as MovieError,
    ManifestError, DataPathError) fail the job at once; any other error is retried after
    ``backoff_s * backoff_factor ** (attempt - 1)`` seconds (at most ``max_backoff_s``) until
    ``max_attempts`` attempts have failed.
    """

    max_attempts: int = 3
    backoff_s: float = 30.0
    backoff_factor: float = 4.0
    max_backoff_s: float = 3600.0
    permanent: tuple[type[BaseException], ...] = (ValueError,)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.backoff_s < 0 or self.backoff_factor < 1 or self.max_backoff_s < 0:
            raise ValueError("backoff_s and max_backoff_s must be >= 0 and backoff_factor >= 1")

    def is_permanent(self, error: BaseException) -> bool:
        return isinstance(error, self.permanent)

    def retry_delay(self, error: BaseException, attempts: int) -> float | None:
        """Seconds until the next attempt after ``attempts`` failed ones, or None: the job has failed for good."""
        if self.is_permanent(error) or attempts >= self.max_attempts:
            return None
        return min(self.backoff_s * self.backoff_factor ** (attempts - 1), self.max_backoff_s)


@dataclass(frozen=True)
class WorkerOptions:
    max_idle_s: float | None = None  # exit after this long without work; None: never
    max_jobs: int | None = None  # exit after running this many jobs
    until_done: bool = False  # exit once every table's queue is empty and nothing is reserved
    poll_s: float = 1.0  # pause between looks at empty queues
    refresh_every_s: float = 30.0  # how often (cluster-wide) the scheduler step runs while there is work
    heartbeat_s: float = 10.0
    reconnect_timeout_s: float = 600.0
    abort_grace_s: float = 10.0  # after a second signal, the process ends this long after if still running
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def idle_refresh_s(self) -> float:
        """How often idle workers run the scheduler step, to pick up new work soon after it appears."""
        return min(self.refresh_every_s, 5.0)


@dataclass(frozen=True)
class WorkerStatus:
    state: str  # starting, working, idle, stopped, aborted, failed
    jobs_done: int
    jobs_failed: int
    jobs_per_min: float
    current_job: str = ""


class JobQueue(Protocol):
    """What a worker needs from the job store; every method may raise when the connection is lost."""

    def register(self) -> None:
        """Announce this worker."""

    def tables(self) -> Sequence[str]:
        """The tables to work on, upstream first."""

    def claim(self, table: str) -> Job | None:
        """Reserve one pending job of ``table``, or None when it has none ready."""

    def run(self, job: Job) -> None:
        """Compute the job (make() in one transaction); raises what make() raises."""

    def complete(self, job: Job, duration_s: float) -> None: ...

    def release(self, job: Job) -> None:
        """Put a reserved job back in the queue, ready at once, without counting a failure."""

    def count_failure(self, job: Job, message: str) -> int:
        """Record one more failed attempt of ``job``; returns the number of failed attempts so far."""

    def fail(self, job: Job, message: str, stack: str, retry_in_s: float | None) -> None:
        """Record the error; re-queue the job after ``retry_in_s`` seconds, or (None) leave it failed."""

    def schedule(self, min_age_s: float) -> bool:
        """Run the scheduler step unless another worker runs it, or ran it less than ``min_age_s`` ago.
        Returns whether it ran."""

    def outstanding(self) -> int:
        """Jobs pending (now or later) or reserved, over all tables."""

    def heartbeat(self, status: WorkerStatus) -> None: ...

    def connection_lost(self, error: BaseException) -> bool:
        """Whether ``error`` means the database connection is gone."""

    def reconnect(self) -> None:
        """Open a new connection; raises when the server cannot be reached."""


class AbortWatchdog:
    """Ends the process ``grace_s`` after its second stop signal, unless :meth:`close` was called first (the
    worker exited on its own), even while the main thread is stuck in compiled code.

    The stop signals are seen in a helper process: the interpreter's C-level handler writes each signal's
    number to the wakeup fd, a pipe that the helper reads, so it counts them while a compiled call (numba's
    ``njit`` code, which holds the interpreter lock) keeps every Python thread of the worker from running.
    ``grace_s`` after the second signal the helper tells this process's watchdog thread, which exits with
    128 + that signal; if the thread cannot run either (the lock is still held) the helper kills the worker
    with SIGKILL ``KILL_AFTER_S`` later. Either way the server rolls the job's transaction back as the
    connection closes and the next scheduler step re-queues the job, whose worker is gone."""

    KILL_AFTER_S = 2.0

    def __init__(self, grace_s: float):
        self.grace_s = grace_s
        self._closed = threading.Event()
        signals_read, self._signals = os.pipe()  # the wakeup fd: signal numbers, written by the C handler
        self._expired, expired_write = os.pipe()  # the helper's word that the grace period is over
        os.set_blocking(self._signals, False)
        self._helper(signals_read, expired_write)
        os.close(signals_read)
        os.close(expired_write)
        self._previous_fd = signal.set_wakeup_fd(self._signals, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="abort-watchdog", daemon=True)
        self._thread.start()

    def _helper(self, signals_read: int, expired_write: int) -> None:
        """Start the helper process (forked twice, so that nobody has to reap it)."""
        worker = os.getpid()
        child = os.fork()
        if child:
            os.waitpid(child, 0)
            return
        try:
            if os.fork() == 0:
                for signum in STOP_SIGNALS:  # Ctrl-C reaches the whole process group: the worker counts it
                    signal.signal(signum, signal.SIG_IGN)
                keep = sorted((2, signals_read, expired_write))
                os.closerange(0, 2)  # and every descriptor but these: the database connection among them
                os.closerange(3, keep[1])
                os.closerange(keep[1] + 1, keep[2])
                os.closerange(keep[2] + 1, os.sysconf("SC_OPEN_MAX"))
                _watch_from_outside(worker, signals_read, expired_write, self.grace_s, self.KILL_AFTER_S)
        finally:
            os._exit(0)

    def _watch(self) -> None:
        try:
            data = os.read(self._expired, 1)
            if data and not self._closed.is_set():
                signum = data[0]
                print(
                    f"worker {os.getpid()}: still running {self.grace_s:.0f} s after a second signal; "
                    f"exiting with {128 + signum}",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(128 + signum)
        finally:
            os.close(self._expired)

    def close(self) -> None:
        self._closed.set()
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._signals)  # the helper reads the end of the pipe and exits; so does the thread


def _watch_from_outside(worker: int, signals: int, expired: int, grace_s: float, kill_after_s: float) -> None:
    """The helper process of :class:`AbortWatchdog`: count ``worker``'s stop signals on ``signals`` until
    the worker closes it; ``grace_s`` after the second one write that signal to ``expired``, and kill the
    worker ``kill_after_s`` later if it still runs."""
    stops = 0
    while data := os.read(signals, 64):
        for signum in data:
            stops += signum in STOP_SIGNALS
            if stops < 2:
                continue
            if _closed_within(signals, grace_s):
                return
            os.write(expired, bytes([signum]))
            if _closed_within(signals, kill_after_s):
                return
            message = (
                f"worker {worker}: a compiled call holds the interpreter {grace_s + kill_after_s:.0f} s after a "
                "second signal; killing it (SIGKILL)\n"
            )
            os.write(2, message.encode())
            os.kill(worker, signal.SIGKILL)
            return


def _closed_within(fd: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for the writer of pipe ``fd`` to close it (the worker exited); further signals
    on it are read and dropped."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0] and not os.read(fd, 64):
            return True
    return False


class _StopNow(Exception):
    """Stop requested while the database is unreachable: leave at once."""


class Worker:
    """Runs jobs from a queue until it is idle too long, has run enough jobs, or is told to stop."""

    def __init__(self, queue: JobQueue, options: WorkerOptions | None = None):
        self.queue = queue
        self.options = options or WorkerOptions()
        self.jobs_done = 0
        self.jobs_failed = 0
        self.signals: list[int] = []
        self._wake = threading.Event()
        self._finished: deque[float] = deque()
        self._started = time.monotonic()
        self._last_beat: tuple[str, float] | None = None
        self._current: Job | None = None

    @property
    def stopping(self) -> bool:
        return bool(self.signals)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop taking jobs (what the first signal does)."""
        self.signals.append(signum)
        self._wake.set()

    def run(self) -> int:
        """Work until done; returns the exit status (0, or 128 + signal after an abort)."""
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS} if in_main_thread else {}
        watchdog = AbortWatchdog(self.options.abort_grace_s) if in_main_thread else None
        try:
            self._call(self.queue.register)
            self._loop()
        except WorkerAborted:
            log.warning("aborted by a second signal")
            self._beat_quietly("aborted")
            return 128 + self.signals[-1]
        except _StopNow:
            log.warning("stopped while the database was unreachable; the job in hand stays reserved")
            return 0
        except BaseException:
            self._beat_quietly("failed")
            raise
        finally:
            if watchdog is not None:
                watchdog.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self._beat("stopped", force=True)
        log.info("worker stopped: %d jobs done, %d failed", self.jobs_done, self.jobs_failed)
        return 0

    # -- the loop ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        options = self.options
        idle_since: float | None = None
        next_refresh = 0.0
        while not self.stopping:
            if options.max_jobs is not None and self.jobs_done + self.jobs_failed >= options.max_jobs:
                log.info("ran %d jobs (--max-jobs)", options.max_jobs)
                return
            now = time.monotonic()
            if now >= next_refresh:
                self._housekeeping(self.queue.schedule, options.refresh_every_s)
                next_refresh = now + options.refresh_every_s
            job = self._call(self._claim)
            if job is not None:
                idle_since = None
                self._execute(job)
                continue
            idle_since = idle_since if idle_since is not None else now
            if self._idle_done(idle_since):
                return
            self._beat("idle")
            self._sleep(options.poll_s)

    def _claim(self) -> Job | None:
        for table in self.queue.tables():
            job = self.queue.claim(table)
            if job is not None:
                return job
        return None

    def _idle_done(self, idle_since: float) -> bool:
        """Run the scheduler step if it is due; says whether the worker should exit."""
        options = self.options
        ran = self._housekeeping(self.queue.schedule, 0.0 if options.until_done else options.idle_refresh_s)
        if options.until_done and ran and self._call(self.queue.outstanding) == 0:
            log.info("every queue is empty")
            return True
        if options.max_idle_s is not None and time.monotonic() - idle_since >= options.max_idle_s:
            log.info("no work for %.0f s (--max-idle)", options.max_idle_s)
            return True
        return False

    def _execute(self, job: Job) -> None:
        self._current = job
        self._beat("working")
        started = time.monotonic()
        try:
            self.queue.run(job)
        except WorkerAborted:
            self._release_quietly(job)
            raise
        except Exception as error:
            self._on_failure(job, error, traceback.format_exc())
        else:
            duration = time.monotonic() - started
            self._call(self.queue.complete, job, duration)
            self.jobs_done += 1
            self._finished.append(time.monotonic())
            log.info("made %s in %.2f s", job, duration)
        finally:
            self._current = None

    def _on_failure(self, job: Job, error: Exception, stack: str) -> None:
        if self.queue.connection_lost(error):
            log.warning("lost the database connection while making %s: %s", job, error)
            self._reconnect()
            self._call(self.queue.release, job)
            return
        message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        attempts = self._call(self.queue.count_failure, job, message)
        delay = self.options.retry.retry_delay(error, attempts)
        self._call(self.queue.fail, job, message, stack, delay)
        self.jobs_failed += 1
        if delay is None:
            log.error("%s failed for good after %d attempt(s): %s", job, attempts, message)
        else:
            log.warning("%s failed (attempt %d), retry in %.1f s: %s", job, attempts, delay, message)

    # -- database trouble -------------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a queue method; after a lost connection, reconnect and call it once more."""
        try:
            return fn(*args)
        except WorkerAborted:
            raise
        except Exception as error:
            if not self.queue.connection_lost(error):
                raise
            log.warning("lost the database connection: %s", error)
            self._reconnect()
            return fn(*args)

    def _housekeeping(self, fn: Callable[..., bool], *args: Any) -> bool:
        """Scheduler steps are not worth dying for: log their errors and go on."""
        try:
            return self._call(fn, *args)
        except (WorkerAborted, _StopNow, DatabaseUnreachable):
            raise
        except Exception:
            log.exception("scheduler step failed; will try again")
            return False

    def _reconnect(self) -> None:
        deadline = time.monotonic() + self.options.reconnect_timeout_s
        pause = 0.25
        while True:
            try:
                self.queue.reconnect()
            except Exception as error:
                if self.stopping:
                    raise _StopNow from error
                if time.monotonic() + pause > deadline:
                    raise DatabaseUnreachable(
                        f"the database did not come back within {self.options.reconnect_timeout_s:.0f} s: {error}"
                    ) from error
                self._sleep(pause)
                pause = min(pause * 2, 10.0)
            else:
                log.info("reconnected to the database")
                return

    def _release_quietly(self, job: Job) -> None:
        try:
            self.queue.release(job)
            log.warning("put %s back in the queue", job)
        except Exception as error:  # the scheduler's liveness check re-queues it once this process is gone
            log.warning("could not put %s back in the queue: %s", job, error)

    # -- signals, pauses, heartbeats --------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stopping:
            self.signals.append(signum)
            raise WorkerAborted(signum)
        log.warning("%s: finishing the job in hand, then stopping", signal.Signals(signum).name)
        self.stop(signum)

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)

    def status(self, state: str) -> WorkerStatus:
        now = time.monotonic()
        while self._finished and self._finished[0] < now - RATE_WINDOW_S:
            self._finished.popleft()
        window = max(min(RATE_WINDOW_S, now - self._started), 1.0)
        return WorkerStatus(
            state=state,
            jobs_done=self.jobs_done,
            jobs_failed=self.jobs_failed,
            jobs_per_min=60.0 * len(self._finished) / window,
            current_job=str(self._current) if self._current else "",
        )

    def _beat(self, state: str, force: bool = False) -> None:
        now = time.monotonic()
        last = self._last_beat
        if force or last is None or last[0] != state or now - last[1] >= self.options.heartbeat_s:
            self._last_beat = (state, now)
            self._housekeeping(self.queue.heartbeat, self.status(state))

    def _beat_quietly(self, state: str) -> None:
        try:
            self.queue.heartbeat(self.status(state))
        except Exception as error:
            log.debug("last heartbeat not recorded: %s", error)
