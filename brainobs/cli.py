"""The ``brainobs`` command line."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from brainobs.settings import Settings, SettingsError, redact_url


class _QuietReconnects(logging.Filter):
    """Drops DataJoint's "Reconnecting to database server." notes: a reconnect that works needs no word, and a
    connection that stays lost ends the command with its one-line error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Reconnecting to database server")


QUIET_RECONNECTS = _QuietReconnects()  # one instance: invoking commands again (CliRunner) adds no second filter


class Commands(TyperGroup):
    """The command group: a database that cannot be reached, or whose connection is lost in the middle of a
    command (a server restart), ends any command with one line and exit 1."""

    def invoke(self, ctx):
        from click.exceptions import Abort, ClickException, Exit

        from brainobs.database import DatabaseError, lost_connection

        logging.getLogger("datajoint").addFilter(QUIET_RECONNECTS)
        try:
            return super().invoke(ctx)
        except (Abort, ClickException, Exit):
            raise
        except Exception as err:
            failure = err if isinstance(err, DatabaseError) else lost_connection(err)
            if failure is None:
                raise
            typer.echo(f"error: {' '.join(redact_url(str(failure)).split())}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=Commands, help="brainobs: Allen Brain Observatory style pipeline on DataJoint 2.x.", no_args_is_help=True
)
db_app = typer.Typer(
    help="The embedded PostgreSQL server (BRAINOBS_DATABASE_URL=embedded), and read-only accounts.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
console = Console()


def _settings() -> Settings:
    try:
        return Settings.load()
    except SettingsError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None


def _embedded(settings: Settings):
    from brainobs.database import EmbeddedServer

    if settings.database.backend != "embedded":
        console.print(f"[yellow]BRAINOBS_DATABASE_URL is {settings.database}; no embedded server is used[/yellow]")
        raise typer.Exit(1)
    return EmbeddedServer(settings.home)


@db_app.command("start")
def db_start() -> None:
    """Start the embedded server under BRAINOBS_HOME, or attach to the one already running."""
    status = _embedded(_settings()).start()
    console.print(f"embedded PostgreSQL running (pid {status.pid}), socket {status.socket_dir}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded server."""
    stopped = _embedded(_settings()).stop()
    console.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@db_app.command("status")
def db_status() -> None:
    """Say whether the embedded server runs, and where its data lives. Exit code 3 when stopped."""
    status = _embedded(_settings()).status()
    if status.running:
        console.print(f"running: pid {status.pid}, data {status.pgdata}, socket {status.socket_dir}")
    else:
        console.print(f"stopped: data {status.pgdata}")
        raise typer.Exit(3)


@db_app.command("url")
def db_url() -> None:
    """Print the connection URL of the running embedded server (for psql or other clients)."""
    status = _embedded(_settings()).status()
    if not status.running:
        console.print("embedded PostgreSQL is not running; start it with `brainobs db start`")
        raise typer.Exit(3)
    print(status.url)


@db_app.command("grant-reader")
def db_grant_reader(
    name: str = typer.Argument(..., help="The account to create: lower-case letters, digits and '_'."),
    host: str = typer.Option("%", "--host", help="MySQL only: the host part of the account ('%': any host)."),
) -> None:
    """Create (or renew) a read-only account for every schema of BRAINOBS_SCHEMA_PREFIX, and print how to
    connect with it. The password is $BRAINOBS_READER_PASSWORD, or else generated and printed once."""
    import json
    import os

    import datajoint as dj

    from brainobs.access import AccessError, grant_reader
    from brainobs.database import STORE, EmbeddedServer, reader_store_config
    from brainobs.schemas import activate
    from brainobs.settings import quote_password

    settings = _settings()
    activate(settings)  # every brainobs schema exists before it is granted
    url = settings.database
    backend = "postgresql" if url.backend == "embedded" else url.backend
    try:
        reader = grant_reader(
            dj.conn(), backend, settings.schema_prefix, name, os.environ.get("BRAINOBS_READER_PASSWORD"), host=host
        )
    except AccessError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    print(f"{name} can read {len(reader.schemas)} schemas ({settings.schema_prefix}*) and write nothing.")
    if url.backend == "embedded":
        socket = EmbeddedServer(settings.home).status().socket_dir
        print("The embedded server lets local users in by name over its socket: no password is needed.")
        print(f"  URL:       postgresql://{name}@/postgres?host={socket}")
        print(
            f"  DataJoint: DJ_BACKEND=postgresql DJ_HOST={socket} DJ_PORT=5432 DJ_DATABASE_NAME=postgres DJ_USER={name}"
        )
    else:
        if reader.generated:
            print(f"password (shown this once): {reader.password}")
        port = url.port or (5432 if url.backend == "postgresql" else 3306)
        database = url.database or "postgres"
        path = f"/{database}" if url.backend == "postgresql" else ""
        secret = quote_password(reader.password) if reader.generated else "<password, percent-encoded>"
        named = f" DJ_DATABASE_NAME={database}" if url.backend == "postgresql" else ""
        print(f"  URL:       {url.backend}://{name}:{secret}@{url.host}:{port}{path}")
        print(
            f"  DataJoint: DJ_BACKEND={url.backend} DJ_HOST={url.host} DJ_PORT={port}{named} DJ_USER={name} "
            "DJ_PASS=<password>"
        )
    print(f"  Arrays (<npy@{STORE}>): dj.config['stores'] = {json.dumps(reader_store_config(settings))}")


@app.command()
def ingest(
    manifest: Path = typer.Argument(..., help="A manifest.yaml (docs/formats/manifest.md)."),
) -> None:
    """Insert the subjects, sessions, containers, experiments and probe insertions of a manifest, atomically."""
    from brainobs.ingest.manifest import ManifestError, load_manifest
    from brainobs.pipeline import schedule_defaults
    from brainobs.schemas import activate
    from brainobs.schemas.loading import insert_manifest

    settings = _settings()
    try:
        parsed = load_manifest(manifest, settings.data_root)
        activate(settings)
        report = insert_manifest(parsed)
    except ManifestError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    console.print(f"ingested {manifest}: {report}; {schedule_defaults(settings)} new items selected for processing")
    if settings.data_root is None:
        console.print(f"raw paths are relative to {parsed.data_root}: set BRAINOBS_DATA_ROOT to it for workers")


@app.command("split-mesoscope")
def split_mesoscope(
    recording: Path = typer.Argument(..., help="An interleaved mesoscope TIFF (page k: plane k mod PLANES)."),
    planes: int = typer.Option(..., help="Planes in the recording (1 to 8)."),
) -> None:
    """Split an interleaved mesoscope TIFF into <stem>_plane<p>.tif next to it, one per plane (manifest.md)."""
    from brainobs.ingest.mesoscope import MesoscopeError, split_interleaved_tiff

    try:
        paths = split_interleaved_tiff(recording, planes)
    except MesoscopeError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    for path in paths:
        console.print(f"wrote {path}")


select_app = typer.Typer(help="Pair items with a named parameter set, beside any other set's results.")
app.add_typer(select_app, name="select")


@select_app.command("ophys")
def select_ophys(
    paramset: str = typer.Argument(..., help="A 2-photon preset: allen, allen_short_movies or enhanced."),
    experiment: list[int] = typer.Option(
        None, "--experiment", help="Experiment id (repeatable; default: every experiment not yet paired with it)."
    ),
) -> None:
    """Pair 2-photon experiments with PARAMSET; the next populate processes them with it. New experiments
    still get BRAINOBS_OPHYS_PARAMSET (allen by default); results of different sets live side by side."""
    from brainobs.schemas import activate
    from brainobs.schemas.ophys import select_paramset

    activate(_settings())
    try:
        added = select_paramset(paramset, experiment)
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    console.print(f"{added} experiment(s) newly paired with the {paramset} 2-photon parameter set")


MODULES_HELP = (
    "Populate the tables of this schema module (importable, or found from the current folder) instead of "
    "brainobs's (repeatable)."
)


def _tables(settings: Settings, modules: list[str], names: list[str] | None):
    import os

    from brainobs.worker.queue import WorkerSetupError, load_tables

    if modules and os.getcwd() not in sys.path:  # as `python -m` would: plugin modules in this folder
        sys.path.insert(0, os.getcwd())
    try:
        return load_tables(settings, modules or (), names or ())
    except WorkerSetupError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None


@app.command()
def worker(
    tables: list[str] = typer.Argument(
        None, help="Tables to work on (Class or module.Class; default: all, or $BRAINOBS_WORKER_TABLES)."
    ),
    max_idle: float = typer.Option(None, "--max-idle", min=0, help="Exit after this many seconds without work."),
    max_jobs: int = typer.Option(None, "--max-jobs", min=1, help="Exit after running this many jobs."),
    until_done: bool = typer.Option(False, "--until-done", help="Exit once every queue is empty."),
    poll: float = typer.Option(1.0, "--poll", min=0.01, help="Seconds between looks at empty queues."),
    refresh_every: float = typer.Option(
        30.0, "--refresh-every", min=0.1, help="Seconds between scheduler steps (new jobs, orphans)."
    ),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, help="Attempts before a job is left in error."),
    backoff: float = typer.Option(30.0, "--backoff", min=0, help="Seconds before the first retry (x4 each time)."),
    reconnect_timeout: float = typer.Option(
        600.0, "--reconnect-timeout", min=0, help="Seconds to keep trying to reach a lost database."
    ),
    modules: list[str] = typer.Option([], "--module", help=MODULES_HELP),
) -> None:
    """Run populate jobs from the shared job queues, upstream tables first, until stopped or idle.

    SIGTERM or Ctrl-C: finish the job in hand, then exit 0; a second one aborts the job (it goes back in the
    queue). Crashed workers' jobs are re-queued by the scheduler step that workers run in turn.
    """
    import os

    from brainobs.worker.loop import RetryPolicy, WorkerOptions

    names = tables or os.environ.get("BRAINOBS_WORKER_TABLES", "").replace(",", " ").split()
    options = WorkerOptions(
        max_idle_s=max_idle,
        max_jobs=max_jobs,
        until_done=until_done,
        poll_s=poll,
        refresh_every_s=refresh_every,
        reconnect_timeout_s=reconnect_timeout,
        retry=RetryPolicy(max_attempts=max_attempts, backoff_s=backoff),
    )
    raise typer.Exit(_run_worker(_settings(), modules, names, options))


def _run_worker(settings: Settings, modules: list[str], names: list[str], options) -> int:
    """One worker in this process: what `brainobs worker` and `brainobs populate` (one worker) run. It
    connects through the queue, so that a worker started while the database is away waits for it."""
    import os
    from functools import partial

    from brainobs.worker.loop import Worker
    from brainobs.worker.queue import TableQueue, WorkerSetupError, load_tables

    logging.basicConfig(
        level=os.environ.get("BRAINOBS_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s worker %(process)d: %(message)s",
        stream=sys.stderr,
    )
    if modules and os.getcwd() not in sys.path:  # as `python -m` would: plugin modules in this folder
        sys.path.insert(0, os.getcwd())
    queue = TableQueue(
        partial(load_tables, settings, modules, names), max_attempts=options.retry.max_attempts, poll_s=options.poll_s
    )
    try:
        return Worker(queue, options).run()
    except WorkerSetupError as err:
        console.print(f"[red]error:[/red] {err}")
        return 2


def _run_local_workers(count: int, tables: list[str], modules: list[str]) -> int:
    """Start ``count`` `brainobs worker --until-done` processes, each with thread pools sized to its share of the
    cores (`brainobs.worker.threads`), and forward stop signals to them; returns the first non-zero exit status
    (negative: killed by that signal), or 0."""
    import signal
    import subprocess

    from brainobs.worker.threads import shared_thread_env

    command = [sys.executable, "-m", "brainobs.cli", "worker", "--until-done", *tables]
    for module in modules:
        command += ["--module", module]
    env = {**os.environ, **shared_thread_env(count, os.environ)}
    processes = [subprocess.Popen(command, start_new_session=True, env=env) for _ in range(count)]

    def forward(signum, _frame):
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        codes = [process.wait() for process in processes]
        return next((code for code in codes if code), 0)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@app.command()
def populate(
    tables: list[str] = typer.Argument(None, help="Table class names to populate (default: all, in order)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes on this machine."),
    modules: list[str] = typer.Option([], "--module", help=MODULES_HELP),
) -> None:
    """Populate the computed tables in dependency order: `brainobs worker --until-done`, in this process
    (one worker) or in N processes (--workers N) that share the job queues and the cores (each one's thread
    pools sized to an even share, unless OMP_NUM_THREADS and kin are set). Either way the scheduler step
    selects new items for the default parameter sets; failed jobs are retried by the worker's policy and
    left in error after that (see `brainobs jobs errors` and `brainobs jobs retry`)."""
    from brainobs.worker.loop import WorkerOptions

    settings = _settings()
    _tables(settings, modules, tables)  # fail early on unknown names; declares what is missing, once
    if workers == 1:
        code = _run_worker(settings, modules, tables or [], WorkerOptions(until_done=True))
    else:
        code = _run_local_workers(workers, tables or [], modules)
    if code:
        console.print(f"[red]a worker exited with status {code}[/red]")
    status(watch=False, modules=modules)
    if code:
        raise typer.Exit(code if code > 0 else 128 - code)


@app.command()
def status(
    watch: bool = typer.Option(False, "--watch", help="Refresh every 2 s until interrupted."),
    modules: list[str] = typer.Option([], "--module", help=MODULES_HELP),
) -> None:
    """Per computed table: rows done, keys remaining, items upstream not selected yet, jobs pending, reserved
    and in error, and whether it is finished; the workers seen in the last hour (host, pid, state, last
    activity) and the throughput of the live ones."""
    import time

    from brainobs.pipeline import table_status
    from brainobs.worker.queue import throughput, worker_rows

    settings = _settings()
    computed = _tables(settings, modules, None)
    while True:
        view = Table("table", "done", "remaining", "not selected", "pending", "reserved", "error")
        view.title = str(settings.database)
        statuses = [table_status(table) for table in computed]
        for s in statuses:
            counts = (s.done, s.remaining, s.not_selected, s.pending, s.reserved, s.error)
            view.add_row(s.table, *map(str, counts))
        unfinished = [s.table for s in statuses if not s.finished]
        waiting = [s.table for s in statuses if s.not_selected]
        rows = worker_rows()
        seen = Table("host", "pid", "state", "last seen", "done", "failed", "jobs/min", "job", title="workers")
        for row in rows:
            seen.add_row(
                row["host"],
                str(row["pid"]),
                row["state"],
                f"{row['idle_s']:.0f} s ago",
                str(row["jobs_done"]),
                str(row["jobs_failed"]),
                f"{row['jobs_per_min']:.1f}",
                row["current_job"],
            )
        rate, live = throughput(rows)
        if watch:
            console.clear()
        console.print(view)
        if waiting:
            console.print(f"not selected yet, upstream of {', '.join(waiting)}: the next scheduler step selects them")
        console.print(f"unfinished: {', '.join(unfinished)}" if unfinished else "every table is finished")
        console.print(seen)
        console.print(f"throughput: {rate:.1f} jobs/min from {live} live worker(s)")
        if not watch:
            return
        time.sleep(2)


jobs_app = typer.Typer(
    help="The job queues: re-queue orphans, list errors, retry or ignore jobs.", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")
WHERE_HELP = "SQL condition on the job rows, e.g. \"error_message LIKE 'MovieError%'\"."


@jobs_app.command("refresh")
def jobs_refresh(
    tables: list[str] = typer.Argument(None, help="Tables (default: all)."),
    orphan_timeout: float = typer.Option(
        None, "--orphan-timeout", min=0, help="Seconds after which a reservation is orphaned (default: per table)."
    ),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, help="Orphaned jobs past this many attempts fail."),
    wait: float = typer.Option(60.0, "--wait", min=0, help="Seconds to wait for a worker's scheduler step."),
    modules: list[str] = typer.Option([], "--module", help=MODULES_HELP),
) -> None:
    """The scheduler step, now: add new jobs and re-queue orphaned ones (at once when their worker's pid is
    gone from this host, else after the orphan timeout). Runs under the lease the workers take."""
    import os
    import platform
    import time

    from brainobs.worker.queue import schedule, scheduler_lease

    chosen = _tables(_settings(), modules, tables)
    lease = scheduler_lease(chosen, f"{platform.node()}:{os.getpid()}:cli")
    deadline = time.monotonic() + wait
    while not lease.acquire():
        if time.monotonic() > deadline:
            console.print("[red]error:[/red] a worker has held the scheduler lease too long; try again")
            raise typer.Exit(1)
        time.sleep(0.5)
    try:
        report = schedule(chosen, max_attempts=max_attempts, orphan_timeout=orphan_timeout)
    finally:
        lease.release()
    console.print(str(report))
    for line in report.requeued + report.failed:
        console.print(f"  {line}")


@jobs_app.command("errors")
def jobs_errors(
    tables: list[str] = typer.Argument(None, help="Tables (default: all)."),
    where: str = typer.Option(None, "--where", help=WHERE_HELP),
    show_traceback: bool = typer.Option(False, "--traceback", help="Print each error's traceback."),
    modules: list[str] = typer.Option([], "--module", help=MODULES_HELP),
) -> None:
    """The jobs in error: table, key, attempts, host:pid, message (and traceback)."""
    from brainobs.worker.queue import error_rows

    rows = error_rows(_tables(_settings(), modules, tables), where)
    view = Table("table", "key", "attempts", "worker", "when", "error", title=f"{len(rows)} jobs in error")
    for row in rows:
        view.add_row(
            row["table"],
            str(row["key"]),
            str(row["attempts"]),
            f"{row['host']}:{row['pid']}",
            str(row["completed_time"]),
            row["error_message"],
        )
    console.print(view)
    if show_traceback:
        for row in rows:
            console.rule(f"{row['table']} {row['key']}")
            console.print(row["error_stack"] or "(no traceback)", markup=False, highlight=False)


@jobs_app.command("retry")
def jobs_retry(
    tables: list[str] = typer.Argument(None, help="Tables (default: all)."),
    where: str = typer.Option(None, "--where", help=WHERE_HELP),
    modules: list[str] = typer.Option([], "--module", help=MODULES_HELP),
) -> None:
    """Put the jobs in error back in the queue, with a fresh count of attempts."""
    from brainobs.worker.queue import retry_errors

    count = retry_errors(_tables(_settings(), modules, tables), where)
    console.print(f"{count} jobs back in the queue")


@jobs_app.command("ignore")
def jobs_ignore(
    table: str = typer.Argument(..., help="The table (Class or module.Class)."),
    keys: list[str] = typer.Option([], "--key", help="A job key as JSON, e.g. '{\"experiment_id\": 7}' (repeatable)."),
    where: str = typer.Option(None, "--where", help=WHERE_HELP),
    modules: list[str] = typer.Option([], "--module", help=MODULES_HELP),
) -> None:
    """Mark jobs to be skipped by the workers (until `brainobs jobs retry` or a delete of the job rows)."""
    import json

    from brainobs.worker.queue import ignore_jobs

    if not keys and not where:
        console.print("[red]error:[/red] name the jobs with --key or --where")
        raise typer.Exit(2)
    try:
        parsed = [json.loads(key) for key in keys]
    except json.JSONDecodeError as err:
        console.print(f"[red]error:[/red] --key is not JSON: {err}")
        raise typer.Exit(2) from None
    (chosen,) = _tables(_settings(), modules, [table])
    console.print(f"{ignore_jobs(chosen, parsed, where)} jobs ignored")


@jobs_app.command("slurm")
def jobs_slurm(
    tables: list[str] = typer.Argument(None, help="Tables (default: all)."),
    workers: int = typer.Option(8, "--workers", "-w", min=1, help="Array tasks (workers) per resource class."),
    modules: list[str] = typer.Option([], "--module", help=MODULES_HELP),
) -> None:
    """Print the sbatch commands that start worker arrays, one per resource class of the tables."""
    from brainobs.worker.queue import sbatch_commands

    for command in sbatch_commands(_tables(_settings(), modules, tables), workers=workers):
        print(command)


@app.command()
def diagram(
    output: Path = typer.Option(None, "--output", "-o", help="File to write (.svg or .mmd); default: stdout."),
    fmt: str = typer.Option("mermaid", "--format", "-f", help="mermaid or svg (svg needs Graphviz's dot)."),
) -> None:
    """The schema diagram of the whole pipeline, as mermaid text or SVG."""
    from brainobs.pipeline import diagram as pipeline_diagram

    if fmt not in ("mermaid", "svg"):
        console.print(f"[red]error:[/red] unknown format {fmt!r}; use mermaid or svg")
        raise typer.Exit(2)
    if fmt == "svg" and shutil.which("dot") is None:
        console.print("[red]error:[/red] SVG needs Graphviz's `dot` (apt-get install graphviz); or use -f mermaid")
        raise typer.Exit(1)
    graph = pipeline_diagram(_settings())
    text = graph.make_mermaid() if fmt == "mermaid" else graph.make_dot().create_svg()
    text = text if isinstance(text, str) else text.decode()
    if output:
        output.write_text(text)
        console.print(f"wrote {output}")
    else:
        sys.stdout.write(text + "\n")


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write the survey into."),
    preset: str = typer.Option("tiny", help="tiny, demo, benchmark or multiplane."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same bytes."),
) -> None:
    """Generate a synthetic ground-truth survey: raw files, manifest.yaml and ground_truth/."""
    from brainobs.ingest.synthetic import generate_survey

    summary = generate_survey(out_dir, preset=preset, seed=seed)
    console.print(summary)


@app.command()
def release(
    tag: str = typer.Argument(
        ..., help="Release tag, e.g. v1 or 2026-11: 1 to 32 letters, digits, '.', '_', '-', starting alphanumeric."
    ),
    out: Path = typer.Option(..., "--out", help="Folder that receives <TAG>/ (the DANDI layout)."),
    description: str = typer.Option("", help="Release description (dandiset.yaml, changelog)."),
    qc_policy: str = typer.Option("WARNING", help="Worst effective QC outcome released: PASS or WARNING."),
    pages: bool = typer.Option(True, help="Write one HTML QC page per released item under <TAG>-reports/."),
    config: Path = typer.Option(
        None, "--config", help="Release configuration (YAML): dandiset metadata and embargo rules."
    ),
    include_embargoed: bool = typer.Option(
        False, "--include-embargoed", help="A team release: keep embargoed sessions, mark the dandiset embargoed."
    ),
) -> None:
    """Export every item that passes QC as NWB, verify and validate it, and build a DANDI-ready folder.

    Ends with a table of released and withheld items (for a withheld one: the check, value and threshold that
    decided it). Exits 0 when the release was built, 1 when nothing could be released (with the reasons).
    """
    import warnings

    from brainobs.database import DatabaseError
    from brainobs.export.release import ReleaseError
    from brainobs.export.release_config import ReleaseConfigError, load_release_config
    from brainobs.pages import experiment_page, session_page
    from brainobs.publish import publish

    if qc_policy not in ("PASS", "WARNING"):
        console.print(f"[red]error:[/red] --qc-policy must be PASS or WARNING, not {qc_policy!r}")
        raise typer.Exit(2)
    try:
        release_config = load_release_config(config)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = publish(
                tag,
                out,
                description=description,
                qc_policy=qc_policy,
                settings=_settings(),
                config=release_config,
                include_embargoed=include_embargoed,
            )
    except (ReleaseError, ReleaseConfigError, FileExistsError) as err:
        console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except RuntimeError as err:
        if isinstance(err, DatabaseError):
            raise  # one line, by the command group
        console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    for warning in caught:
        if "release configuration" in str(warning.message):
            console.print(f"[yellow]warning:[/yellow] {warning.message}")
    size = sum(f.size for f in result.files)
    console.print(
        f"release {tag}: {result.folder}: {len(result.files)} files ({result.written} written, "
        f"{result.reused} reused), {size / 1e6:.1f} MB"
    )
    if result.validation:
        console.print(result.validation.summary().splitlines()[0])
    console.print(release_table(tag))
    if pages:
        from brainobs.schemas.release import ReleaseFile

        folder = Path(out) / f"{tag}-reports"
        for row in (ReleaseFile.File & {"release_tag": tag}).to_dicts():
            if row["nwb_label"] in ("session", "behavior"):
                session_page(row["session_id"], folder / f"session_{row['session_id']}.html", release_tag=tag)
            else:
                experiment_page(int(row["nwb_label"]), folder / f"experiment_{row['nwb_label']}.html", release_tag=tag)
        console.print(f"QC pages: {folder}")


def release_table(tag: str) -> Table:
    """Released and withheld items of a release; for a withheld one, the check, value and threshold that decided."""
    from brainobs.publish import release_summary

    summary = release_summary(tag)
    withheld = int((summary["status"] == "withheld").sum())
    title = f"release {tag}: {len(summary) - withheld} released, {withheld} withheld"
    table = Table("subject", "session", "item", "status", "check", "value", "threshold", "reason", title=title)

    def number(value) -> str:
        return "" if value is None or value != value else f"{value:.4g}"

    for row in summary.itertuples():
        status = "[green]released[/green]" if row.status == "released" else "[red]withheld[/red]"
        table.add_row(
            str(row.subject_id),
            str(row.session_id),
            str(row.item),
            status,
            row.check if isinstance(row.check, str) else "",
            number(row.value),
            number(row.threshold),
            row.reason if isinstance(row.reason, str) else "",
        )
    return table


@app.command()
def report(
    item: int = typer.Argument(..., help="An experiment_id or a session_id."),
    out: Path = typer.Option(None, "--out", help="HTML file to write (default: <item>.html here)."),
) -> None:
    """Write a static HTML QC page for an experiment (or a session) with its figures and QC table."""
    from brainobs.pages import experiment_page, session_page
    from brainobs.schemas import activate
    from brainobs.schemas.acquisition import Experiment, Session

    activate(_settings())
    if Experiment & {"experiment_id": item}:
        path = experiment_page(item, out or Path(f"experiment_{item}.html"))
    elif Session & {"session_id": item}:
        path = session_page(item, out or Path(f"session_{item}.html"))
    else:
        console.print(f"[red]error:[/red] {item} is neither an experiment_id nor a session_id")
        raise typer.Exit(1)
    console.print(f"wrote {path}")


@app.command()
def conformance(
    folders: list[Path] = typer.Argument(  # noqa: B008 - typer reads the default
        None, help="Folders of <algorithm>__<case>.json/.npz vectors (default: the Allen vectors brainobs ships)."
    ),
    failed_only: bool = typer.Option(False, "--failed-only", help="Print only the outputs that fail."),
) -> None:
    """Run Allen's conformance vectors through brainobs's own functions and compare every output.

    Prints one row per output (algorithm, case, output, max abs diff, max rel diff, pass/fail) and exits
    with status 1 when any case fails: an output beyond its tolerance, an expected error not raised, or an
    algorithm brainobs has no adapter for. The format and the algorithms are described in the vectors'
    README.md; docs/methods.md says which brainobs stage each algorithm is.
    """
    from brainobs.conformance import ConformanceError, run

    try:
        checks = run(folders or None)
    except ConformanceError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    table = Table("algorithm", "case", "output", "max abs diff", "max rel diff", "result", "detail")
    for check in checks:
        if failed_only and check.passed:
            continue
        table.add_row(
            check.algorithm,
            check.case,
            check.output,
            "-" if check.max_abs_diff != check.max_abs_diff else f"{check.max_abs_diff:.3g}",
            "-" if check.max_rel_diff != check.max_rel_diff else f"{check.max_rel_diff:.3g}",
            "[green]pass[/green]" if check.passed else "[red]FAIL[/red]",
            check.detail,
        )
    console.print(table)
    cases = {(c.algorithm, c.case) for c in checks}
    failed = {(c.algorithm, c.case) for c in checks if not c.passed}
    console.print(f"{len(cases) - len(failed)} of {len(cases)} cases pass ({len(checks)} outputs checked)")
    if failed:
        console.print("failed: " + ", ".join(f"{a}__{c}" for a, c in sorted(failed)))
        raise typer.Exit(1)


@app.command()
def demo(
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic survey (another seed needs another home)."),
) -> None:
    """Start the embedded database, generate and ingest a small survey, run the pipeline, print what it holds
    and build its release."""
    from brainobs.demo import DemoSeedError, run_demo

    try:
        run_demo(_settings(), console, seed=seed)
    except DemoSeedError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
