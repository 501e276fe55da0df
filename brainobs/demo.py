"""`brainobs demo`: a synthetic survey from raw files to tables, on the embedded database."""

from __future__ import annotations

import dataclasses
import os
import time

from rich.console import Console
from rich.table import Table

from brainobs.settings import Settings


def run_demo(settings: Settings, console: Console) -> None:
    """Generate (once) and ingest the `demo` survey, populate every table, and print what the database holds."""
    from brainobs.ingest.manifest import load_manifest
    from brainobs.ingest.synthetic import generate_survey
    from brainobs.pipeline import computed_tables, manual_tables, populate_all
    from brainobs.schemas import activate
    from brainobs.schemas.loading import insert_manifest

    data_root = (settings.data_root or settings.home / "demo-data").resolve()
    settings = dataclasses.replace(settings, data_root=data_root)
    os.environ["BRAINOBS_DATA_ROOT"] = str(data_root)
    console.rule("brainobs demo")
    console.print(f"database: {settings.database}   home: {settings.home.resolve()}   data: {data_root}")
    manifest = data_root / "manifest.yaml"
    if not manifest.exists():
        console.print("generating the synthetic 'demo' survey (once) ...")
        started = time.perf_counter()
        generate_survey(data_root, preset="demo", seed=0)
        console.print(f"  generated in {time.perf_counter() - started:.0f} s")
    activate(settings)
    report = insert_manifest(load_manifest(manifest, data_root))
    console.print(f"ingest: {report}")
    started = time.perf_counter()
    for name, result in populate_all(settings, display_progress=True).items():
        failed = len(result["error_list"])
        console.print(
            f"  {name}: {result['success_count']} made" + (f", [red]{failed} failed[/red]" if failed else "")
        )
    console.print(f"pipeline ran in {time.perf_counter() - started:.0f} s")
    view = Table("table", "rows", title="what the database holds")
    for table in manual_tables(settings) + computed_tables(settings):
        view.add_row(table.__name__, str(len(table())))
    console.print(view)
