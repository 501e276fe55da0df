"""Populate workers: overhead per job, and the speed-up of two workers over one.

    python -m benchmarks.bench_workers [--jobs 1000] [--burn-jobs 24] [--burn-s 0.25]

Runs on a fresh embedded PostgreSQL server in a temporary folder, or on BRAINOBS_DATABASE_URL when that names
a server. Overhead: one worker makes --jobs trivial jobs (make() inserts one row); the time per job is the
worker's own cost: reserve, a direct-mode populate of the key in its transaction, complete, and its share of
scheduler steps and heartbeats (target < 20 ms). Filling the queue (DataJoint's jobs.refresh) is timed on its
own, and DataJoint's plain populate() of the same keys (no queue) is the reference. Speed-up: CPU-bound jobs
(--burn-s seconds of CPU each) are made by one, then two `brainobs worker` processes; throughput is jobs /
(last end - first start) of the make() calls, so process start-up does not count (target >= 1.8x).

Reading it: the overhead is per job and holds on a busy machine too; the speed-up needs two idle cores
(the load average before the runs is printed beside it) and means nothing on a machine that others share, so
measure it on a quiet one. ``python -m benchmarks --quick bench_workers`` (200 trivial jobs, 8 CPU-bound
ones) checks that the benchmark runs end to end; it is not a measurement.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datajoint as dj

MODULE = "benchmarks.bench_workers"
REPO = Path(__file__).resolve().parents[1]
schema = dj.Schema()


@schema
class Item(dj.Manual):
    definition = """
    item_id : int32
    """


@schema
class Trivial(dj.Computed):
    definition = """
    -> Item
    ---
    value : int64
    """

    def make(self, key):
        self.insert1({**key, "value": 2 * key["item_id"]})


@schema
class Burn(dj.Computed):
    definition = """
    -> Item
    ---
    started : float64             # time.time() when make() began
    ended : float64
    pid : int32
    """

    def make(self, key):
        started = time.time()
        seconds = float(os.environ.get("BENCH_BURN_S", "0.25"))
        cpu = time.process_time()
        while time.process_time() - cpu < seconds:
            sum(i * i for i in range(2000))
        self.insert1({**key, "started": started, "ended": time.time(), "pid": os.getpid()})


def _fresh_items(n: int) -> None:
    """Items 0..n-1, with nothing made from them and empty job queues."""
    Item.delete(prompt=False)
    for table in (Trivial, Burn):
        table.jobs.delete()
    Item.insert({"item_id": i} for i in range(n))


def _job_states(table: type[dj.Computed]) -> str:
    """The job table's rows by status, and the first error message, for a benchmark that came up short."""
    rows = table.jobs.to_dicts()
    states = {status: sum(row["status"] == status for row in rows) for status in {row["status"] for row in rows}}
    errors = [row.get("error_message") for row in rows if row["status"] == "error"]
    return f"jobs by status {states}" + (f", first error: {errors[0]}" if errors else "")


def overhead(n_jobs: int) -> dict[str, float]:
    """Milliseconds per trivial job: queue filling, the worker loop, and plain populate()."""
    from brainobs.worker.loop import Worker, WorkerOptions
    from brainobs.worker.queue import TableQueue, schedule

    _fresh_items(n_jobs)
    started = time.perf_counter()
    schedule([Trivial])
    fill = time.perf_counter() - started
    options = WorkerOptions(until_done=True, poll_s=0.05, refresh_every_s=30.0)
    started = time.perf_counter()
    Worker(TableQueue([Trivial]), options).run()
    loop = time.perf_counter() - started
    if len(Trivial()) != n_jobs:
        raise RuntimeError(f"the worker made {len(Trivial())} of {n_jobs} trivial jobs; {_job_states(Trivial)}")
    Trivial.delete_quick()
    started = time.perf_counter()
    Trivial.populate()
    plain = time.perf_counter() - started
    Trivial.delete_quick()
    return {"fill_ms": 1e3 * fill / n_jobs, "worker_ms": 1e3 * loop / n_jobs, "plain_populate_ms": 1e3 * plain / n_jobs}


def throughput(workers: int, n_jobs: int, burn_s: float, env: dict[str, str]) -> float:
    """CPU-bound jobs per second made by ``workers`` worker processes."""
    _fresh_items(n_jobs)
    command = [sys.executable, "-m", "brainobs.cli", "worker", "Burn", "--module", MODULE, "--until-done"]
    command += ["--poll", "0.1", "--refresh-every", "5"]
    env = {**env, "BENCH_BURN_S": str(burn_s), "BRAINOBS_LOG_LEVEL": "WARNING"}
    processes = [subprocess.Popen(command, cwd=REPO, env=env) for _ in range(workers)]
    if any(process.wait() for process in processes):
        raise RuntimeError("a benchmark worker failed")
    first, last = Burn().to_arrays("started").min(), Burn().to_arrays("ended").max()
    pids = set(Burn().to_arrays("pid"))
    if len(Burn()) < n_jobs or len(pids) != workers:
        raise RuntimeError(f"{len(Burn())} of {n_jobs} jobs made by {len(pids)} of {workers} workers")
    return n_jobs / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="trivial jobs for the overhead (default 1000)")
    parser.add_argument("--burn-jobs", type=int, default=24, help="CPU-bound jobs per run (default 24)")
    parser.add_argument("--burn-s", type=float, default=0.25, help="CPU seconds per CPU-bound job")
    args = parser.parse_args()

    from brainobs.database import EmbeddedServer
    from brainobs.settings import Settings
    from brainobs.worker.queue import load_tables, registry

    with tempfile.TemporaryDirectory(prefix="bench-workers-") as home:
        settings = Settings(
            database_url=os.environ.get("BRAINOBS_DATABASE_URL", "embedded"),
            home=Path(home),
            schema_prefix=f"bench{os.getpid()}_",
        )
        env = {
            **os.environ,
            "BRAINOBS_DATABASE_URL": settings.database_url,
            "BRAINOBS_HOME": home,
            "BRAINOBS_SCHEMA_PREFIX": settings.schema_prefix,
        }
        load_tables(settings, [MODULE])
        try:
            cost = overhead(args.jobs)
            print(f"database: {settings.database}, {os.cpu_count()} CPUs")
            print(
                f"overhead over {args.jobs} trivial jobs: worker {cost['worker_ms']:.1f} ms/job (target < 20), "
                f"queue filling {cost['fill_ms']:.1f} ms/job, plain populate() {cost['plain_populate_ms']:.1f} ms/job"
            )
            load = os.getloadavg()[0]
            one = throughput(1, args.burn_jobs, args.burn_s, env)
            two = throughput(2, args.burn_jobs, args.burn_s, env)
            print(
                f"{args.burn_jobs} CPU-bound jobs of {args.burn_s} s: 1 worker {one:.2f} jobs/s, "
                f"2 workers {two:.2f} jobs/s, speed-up {two / one:.2f}x (target >= 1.8; needs 2 idle cores: "
                f"load average was {load:.1f} on {os.cpu_count()})"
            )
        finally:
            schema.drop(prompt=False)
            registry().schema.drop(prompt=False)
            if settings.database.backend == "embedded":
                EmbeddedServer(settings.home).stop()


if __name__ == "__main__":  # run as the module the workers import, whose schema load_tables activates
    importlib.import_module(MODULE).main()
