"""The ``brainobs`` command line."""

from __future__ import annotations

import multiprocessing
import shutil
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from brainobs.settings import Settings, SettingsError

app = typer.Typer(
    help="brainobs: Allen Brain Observatory style pipeline on DataJoint 2.x.", no_args_is_help=True
)
db_app = typer.Typer(
    help="The embedded PostgreSQL server (BRAINOBS_DATABASE_URL=embedded).", no_args_is_help=True
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
        console.print(
            f"[yellow]BRAINOBS_DATABASE_URL is {settings.database}; no embedded server is used[/yellow]"
        )
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


@app.command()
def ingest(
    manifest: Path = typer.Argument(..., help="A manifest.yaml (docs/formats/manifest.md)."),
) -> None:
    """Insert the subjects, sessions, containers, experiments and probe insertions of a manifest, atomically."""
    from brainobs.ingest.manifest import ManifestError, load_manifest
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
    console.print(f"ingested {manifest}: {report}")
    if settings.data_root is None:
        console.print(
            f"raw paths are relative to {parsed.data_root}: set BRAINOBS_DATA_ROOT to it for workers"
        )


def _populate_worker(tables: list[str] | None) -> None:
    from brainobs.pipeline import populate_all

    populate_all(tables=tables, reserve_jobs=True, display_progress=False)


@app.command()
def populate(
    tables: list[str] = typer.Argument(None, help="Table class names to populate (default: all, in order)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes on this machine."),
) -> None:
    """Populate the computed tables in dependency order; errors are recorded in each table's jobs."""
    from brainobs.pipeline import populate_all

    settings = _settings()
    if workers == 1:
        results = populate_all(settings, tables=tables or None)
        for name, result in results.items():
            errors = len(result["error_list"])
            console.print(
                f"{name}: {result['success_count']} made"
                + (f", [red]{errors} failed[/red]" if errors else "")
            )
    else:
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=_populate_worker, args=(tables or None,)) for _ in range(workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    status(watch=False)


@app.command()
def status(watch: bool = typer.Option(False, "--watch", help="Refresh every 2 s until interrupted.")) -> None:
    """Per computed table: rows done, keys remaining, and jobs pending, reserved and in error."""
    import time

    from brainobs.pipeline import computed_tables, table_status

    settings = _settings()
    while True:
        view = Table(
            "table", "done", "remaining", "pending", "reserved", "error", title=str(settings.database)
        )
        for table in computed_tables(settings):
            s = table_status(table)
            view.add_row(
                s.table, str(s.done), str(s.remaining), str(s.pending), str(s.reserved), str(s.error)
            )
        if watch:
            console.clear()
        console.print(view)
        if not watch:
            return
        time.sleep(2)


@app.command()
def diagram(
    output: Path = typer.Option(
        None, "--output", "-o", help="File to write (.svg or .mmd); default: stdout."
    ),
    fmt: str = typer.Option("mermaid", "--format", "-f", help="mermaid or svg (svg needs Graphviz's dot)."),
) -> None:
    """The schema diagram of the whole pipeline, as mermaid text or SVG."""
    import datajoint as dj

    from brainobs.schemas import activate

    if fmt not in ("mermaid", "svg"):
        console.print(f"[red]error:[/red] unknown format {fmt!r}; use mermaid or svg")
        raise typer.Exit(2)
    if fmt == "svg" and shutil.which("dot") is None:
        console.print(
            "[red]error:[/red] SVG needs Graphviz's `dot` (apt-get install graphviz); or use -f mermaid"
        )
        raise typer.Exit(1)
    modules = activate(_settings())
    graph = dj.Diagram(modules[0].schema)
    for module in modules[1:]:
        graph += dj.Diagram(module.schema)
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
    preset: str = typer.Option("tiny", help="tiny, demo or benchmark."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same bytes."),
) -> None:
    """Generate a synthetic ground-truth survey: raw files, manifest.yaml and ground_truth/."""
    from brainobs.ingest.synthetic import generate_survey

    summary = generate_survey(out_dir, preset=preset, seed=seed)
    console.print(summary)


@app.command()
def demo() -> None:
    """Start the embedded database, generate and ingest a small survey, run the pipeline, print what it holds."""
    from brainobs.demo import run_demo

    run_demo(_settings(), console)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
