"""The cluster path on fresh schema prefixes, as a new user meets it, through the real CLI in subprocesses:
the scheduler step selects what ingest and upstream tables add, declarations do not race, a worker that
starts before its database waits for it, and the whole `tiny` survey survives killed workers and a database
restart during `brainobs populate --workers 3`.

Each test uses its own prefix (and object store), dropped at the end. The database restart of the fault
test is done by the test itself on the embedded server, and by the command in BRAINOBS_TEST_DB_RESTART on a
server (tests/run.sh sets it for its MariaDB and PostgreSQL passes).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.dbgate import Gate, gate_route

pytestmark = pytest.mark.db
SCHEMA_MODULES = ("subject", "acquisition", "behavior", "ophys", "matching", "ephys", "qc", "release", "workers")


# -- fresh prefixes -----------------------------------------------------------------------------------


class Fresh:
    """A schema prefix no one has used, its object store, and the environment of processes that use it."""

    def __init__(self, settings, name: str, tmp_path: Path, url: str | None = None):
        self.prefix = f"bof{os.getpid()}{name}_"
        self.env = {
            **os.environ,
            "BRAINOBS_DATABASE_URL": url or settings.database_url,
            "BRAINOBS_HOME": str(settings.home),
            "BRAINOBS_DATA_ROOT": str(settings.data_root),
            "BRAINOBS_STORE_URL": str(tmp_path / "store"),
            "BRAINOBS_SCHEMA_PREFIX": self.prefix,
            "BRAINOBS_LOG_LEVEL": "INFO",
        }

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "brainobs.cli", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, log: Path, *args: str) -> subprocess.Popen:
        with log.open("w") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "brainobs.cli", *args],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check(self) -> dict:
        """What :func:`completeness` finds, run in a process of this prefix."""
        code = "import json, tests.test_scheduling_db as t; print(json.dumps(t.completeness()))"
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    def drop(self) -> None:
        import datajoint as dj

        from brainobs.database import revive

        connection = revive(dj.conn())
        q = connection.adapter.quote_identifier
        if connection.adapter.backend == "mysql":
            connection.query("SET FOREIGN_KEY_CHECKS=0")
        for name in [*reversed(SCHEMA_MODULES), "test_worker_db"]:
            if connection.adapter.backend == "mysql":
                connection.query(f"DROP DATABASE IF EXISTS {q(self.prefix + name)}")
            else:
                connection.query(f"DROP SCHEMA IF EXISTS {q(self.prefix + name)} CASCADE")
        if connection.adapter.backend == "mysql":
            connection.query("SET FOREIGN_KEY_CHECKS=1")


@pytest.fixture
def fresh(database, settings, tmp_path, request):
    made = []

    def make(name: str, url: str | None = None) -> Fresh:
        made.append(Fresh(settings, name, tmp_path, url))
        return made[-1]

    yield make
    for prefix in made:
        prefix.drop()


# -- what "finished" means ------------------------------------------------------------------------------

# (part, master column): the part holds as many rows per master row as the column says
COUNTED_PARTS = (
    ("behavior.Behavior.Presentation", "n_presentations"),
    ("behavior.Behavior.Trial", "n_trials"),
    ("ophys.Segmentation.ROI", "n_rois"),
    ("ephys.EphysRecording.Channel", "n_channels"),
    ("ephys.SpikeSorting.Unit", "n_units"),
    ("qc.UnitQC.Unit", "n_units"),
)
# (part, part upstream): one row per row upstream, for the same key of the upstream master
SAME_ROWS = (
    ("ophys.Fluorescence.Trace", "ophys.Segmentation.ROI"),
    ("ophys.Demixing.Trace", "ophys.Fluorescence.Trace"),
    ("ophys.NeuropilCorrection.Trace", "ophys.Demixing.Trace"),
    ("ophys.DeltaFOverF.Trace", "ophys.NeuropilCorrection.Trace"),
    ("ophys.EventDetection.Event", "ophys.DeltaFOverF.Trace"),
    ("ephys.UnitMetrics.Unit", "ephys.SpikeSorting.Unit"),
)


def _resolve(dotted: str):
    import importlib

    module, *names = dotted.split(".")
    obj = importlib.import_module(f"brainobs.schemas.{module}")
    for name in names:
        obj = getattr(obj, name)
    return obj


def completeness() -> dict:
    """Per computed table of the configured prefix: rows, keys of its key source, keys made more than once or
    not at all, jobs reserved or in error, items waiting for a selection; and the Part tables whose row
    counts disagree with their master or with the stage upstream."""
    from brainobs.pipeline import computed_tables, table_status
    from brainobs.worker.queue import table_label

    tables = {}
    for table in computed_tables():
        status = table_status(table)
        source = table().key_source
        made = table().proj()
        tables[table_label(table)] = {
            "rows": len(table()),
            "keys": len(source),
            "missing": len(source - made),
            "extra": len(made - source.proj()),
            "reserved": status.reserved,
            "error": status.error,
            "not_selected": status.not_selected,
            "errors": [r["error_message"] for r in table().jobs.errors.to_dicts()][:3],
        }
    wrong = []
    for part_name, column in COUNTED_PARTS:
        part = _resolve(part_name)
        master = part.master
        for row in master().to_dicts():
            key = {k: row[k] for k in master.primary_key}
            if len(part & key) != row[column]:
                wrong.append(f"{part_name} {key}: {len(part & key)} rows, {column}={row[column]}")
    for part_name, upstream_name in SAME_ROWS:
        part, upstream = _resolve(part_name), _resolve(upstream_name)
        for key in part.master():
            upstream_key = {k: key[k] for k in upstream.master.primary_key if k in key}
            if len(part & key) != len(upstream & upstream_key):
                wrong.append(f"{part_name} {key}: {len(part & key)} rows, {len(upstream & upstream_key)} upstream")
    return {"tables": tables, "wrong_parts": wrong}


def assert_finished(report: dict, *, required: tuple[str, ...]) -> None:
    problems = {
        label: t
        for label, t in report["tables"].items()
        if t["missing"] or t["extra"] or t["reserved"] or t["error"] or t["not_selected"] or t["rows"] != t["keys"]
    }
    assert not problems, problems
    assert not report["wrong_parts"], report["wrong_parts"]
    for label in required:
        assert report["tables"][label]["rows"] > 0, f"{label} made nothing: {report['tables'][label]}"


# -- scheduling ------------------------------------------------------------------------------------------


def test_ingest_then_one_worker_selects_and_sorts_what_upstream_makes(fresh, settings):
    """On a fresh prefix, ingest, then `brainobs worker --until-done` alone: MotionCorrection jobs (selected
    at ingest) and SpikeSorting jobs (selected after the worker made EphysRecording) are created and done;
    before the worker, `brainobs status` shows recordings not selected and no table finished."""
    prefix = fresh("sel")
    ingest = prefix.cli("ingest", str(settings.data_root / "manifest.yaml"))
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "new items selected" in ingest.stdout
    before = prefix.cli("status")
    assert before.returncode == 0, before.stderr
    assert "unfinished:" in before.stdout and "every table is finished" not in before.stdout
    tables = ("EphysRecording", "SpikeSorting", "MotionCorrection")
    worker = prefix.cli("worker", "--until-done", "--poll", "0.2", *tables)
    assert worker.returncode == 0, worker.stderr[-3000:]
    report = prefix.check()["tables"]
    for label in ("ephys.EphysRecording", "ephys.SpikeSorting", "ophys.MotionCorrection"):
        row = report[label]
        assert row["rows"] == row["keys"] > 0 and not row["error"] and not row["reserved"], (label, row)
    assert report["ephys.SpikeSorting"]["not_selected"] == 0


def test_status_counts_items_not_selected(fresh, settings):
    """Experiments ingested by an older client (no selection made) show as "not selected" downstream, and
    the scheduler step (`brainobs jobs refresh`) selects them."""
    prefix = fresh("ns")
    code = (
        "from brainobs.ingest.manifest import load_manifest; from brainobs.schemas import activate;"
        "from brainobs.schemas.loading import insert_manifest; from brainobs.settings import Settings;"
        "s = Settings.load(); activate(s); insert_manifest(load_manifest(s.data_root / 'manifest.yaml', s.data_root))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=prefix.env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = prefix.check()["tables"]
    experiments = report["ophys.MotionCorrection"]
    assert experiments["not_selected"] > 0 and experiments["keys"] == 0
    assert report["ophys.EventDetection"]["not_selected"] == experiments["not_selected"]
    status = prefix.cli("status")
    assert "not selected yet" in status.stdout and "MotionCorrection" in status.stdout
    refresh = prefix.cli("jobs", "refresh")
    assert refresh.returncode == 0, refresh.stderr
    after = prefix.check()["tables"]["ophys.MotionCorrection"]
    assert after["not_selected"] == 0 and after["keys"] == experiments["not_selected"]


def test_processes_starting_at_once_on_a_fresh_prefix_declare_each_table_once(fresh, settings, tmp_path):
    prefix = fresh("ddl")
    manifest = str(settings.data_root / "manifest.yaml")
    commands = [["ingest", manifest], ["status"]] + [["worker", "--until-done", "--max-jobs", "1"]] * 3
    logs = [tmp_path / f"p{i}.log" for i in range(len(commands))]
    processes = [prefix.start(log, *command) for log, command in zip(logs, commands, strict=True)]
    codes = [p.wait(timeout=600) for p in processes]
    outputs = [log.read_text() for log in logs]
    assert codes == [0] * len(commands), "\n---\n".join(o[-2000:] for o in outputs)
    assert not any("Duplicate" in o or "already exists" in o for o in outputs)


def test_a_worker_started_before_its_database_waits_for_it(fresh, settings, tmp_path):
    target, gated = gate_route(settings)
    gate = Gate(target)
    prefix = fresh("late", gated.format(port=gate.port))
    log = tmp_path / "worker.log"
    worker = prefix.start(log, "worker", "--module", "tests.test_worker_db", "--until-done", "--poll", "0.1")
    try:
        time.sleep(4)
        assert worker.poll() is None, f"the worker gave up without a database:\n{log.read_text()[-3000:]}"
        gate.open()
        assert worker.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
        gate.close()
    text = log.read_text()
    assert "reconnected to the database" in text and "Traceback" not in text, text[-3000:]


# -- the fault test -----------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _working(prefix: Fresh) -> dict[int, str]:
    """pid -> current job of the workers of ``prefix`` that say they are working."""
    import datajoint as dj

    from brainobs.database import revive

    q = dj.conn().adapter.quote_identifier
    table = f"{q(prefix.prefix + 'workers')}.{q('worker')}"
    try:
        connection = revive(dj.conn())
        rows = connection.query(f"SELECT pid, current_job FROM {table} WHERE state='working'").fetchall()
    except Exception:  # the server is restarting, or the table is not declared yet
        return {}
    return {int(pid): job for pid, job in rows}


def _restart_database(settings) -> None:
    if settings.database.backend == "embedded":
        from brainobs.database import EmbeddedServer

        server = EmbeddedServer(settings.home)
        server.stop()
        time.sleep(3)
        server.start()
        return
    command = os.environ["BRAINOBS_TEST_DB_RESTART"]
    subprocess.run(["bash", "-c", command], check=True, timeout=300)


def _tail(folder: Path, chars: int = 2500) -> str:
    """The end of every log in ``folder``, without DataJoint's declaration warnings."""
    parts = []
    for log in sorted(folder.glob("*.log")):
        lines = [line for line in log.read_text().splitlines() if "Native type" not in line]
        parts.append(f"--- {log.name}\n" + "\n".join(lines)[-chars:])
    return "\n".join(parts)


@pytest.mark.slow
def test_populate_with_three_workers_survives_kill_9_and_a_database_restart(fresh, settings, tmp_path):
    """`tiny` survey, fresh prefix, `brainobs populate --workers 3` with no manual selection. During the
    run three workers that hold different jobs are killed with SIGKILL (each replaced by a new
    `brainobs worker --until-done`, as a cluster would) and the database is restarted once. Afterwards every
    table holds one row per key of its key source, no job is reserved or in error, and the Part rows of
    every master are complete."""
    if settings.database.backend != "embedded" and not os.environ.get("BRAINOBS_TEST_DB_RESTART"):
        if os.environ.get("CI") == "true":
            pytest.fail("BRAINOBS_TEST_DB_RESTART must name the command that restarts this database server")
        pytest.skip("no BRAINOBS_TEST_DB_RESTART: this test cannot restart the server (tests/run.sh sets it)")
    started = time.monotonic()
    prefix = fresh("fault")
    ingest = prefix.cli("ingest", str(settings.data_root / "manifest.yaml"))
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    populate = prefix.start(tmp_path / "populate.log", "populate", "--workers", "3")
    extra: list[subprocess.Popen] = []
    killed_jobs: list[str] = []
    killed_pids: set[int] = set()
    restarted = False
    rng = random.Random(0)
    try:
        deadline = time.monotonic() + 900
        while len(killed_jobs) < 3 or not restarted:
            assert time.monotonic() < deadline, "the faults were not all injected in time"
            assert populate.poll() is None, "populate ended before every fault was injected:\n" + _tail(tmp_path)
            time.sleep(rng.uniform(1.5, 3.0))
            if len(killed_jobs) == 2 and not restarted:
                _restart_database(settings)
                restarted = True
                continue
            ours = set(_children(populate.pid)) | {p.pid for p in extra if p.poll() is None}
            victims = [(pid, job) for pid, job in _working(prefix).items() if pid in ours and job not in killed_jobs]
            if not victims:
                continue
            pid, job = rng.choice(victims)
            os.kill(pid, signal.SIGKILL)
            killed_jobs.append(job)
            killed_pids.add(pid)
            extra.append(prefix.start(tmp_path / f"extra{len(extra)}.log", "worker", "--until-done"))
        code = populate.wait(timeout=900)
        extra_codes = [p.wait(timeout=900) for p in extra]
    finally:
        for p in [populate, *extra]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    log = (tmp_path / "populate.log").read_text()
    assert code == 128 + signal.SIGKILL and "a worker exited with status -9" in log, _tail(tmp_path)
    # a replacement worker may itself be a victim; every other one finishes the queue and exits 0
    assert extra_codes == [-signal.SIGKILL if p.pid in killed_pids else 0 for p in extra], _tail(tmp_path)
    assert_finished(
        prefix.check(),
        required=("ophys.MotionCorrection", "ophys.EventDetection", "ephys.SpikeSorting", "matching.CellMatching"),
    )
    print(f"fault test: {time.monotonic() - started:.0f} s, killed while running {killed_jobs}")
