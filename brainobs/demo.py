"""`brainobs demo`: a synthetic survey from raw files to tables, on the embedded database."""

from __future__ import annotations

import dataclasses
import os
import time

from rich.console import Console
from rich.table import Table

from brainobs.settings import Settings

DEMO_OPHYS_PARAMSET = "allen_short_movies"


class DemoSeedError(RuntimeError):
    """The database already holds the demo survey of another seed."""


def run_demo(settings: Settings, console: Console, seed: int = 0) -> None:
    """Generate (once) and ingest the `demo` survey of `seed`, populate every table, and print what the database
    holds and what its release keeps.

    One database holds one demo survey (the surveys of two seeds share their ids): another seed needs another
    BRAINOBS_HOME or schema prefix, or `DemoSeedError` is raised before anything is written.
    """
    from brainobs.ingest.manifest import load_manifest
    from brainobs.ingest.synthetic import generate_survey
    from brainobs.pipeline import computed_tables, manual_tables, populate_all
    from brainobs.schemas import activate
    from brainobs.schemas.loading import insert_manifest

    default_root = settings.home / ("demo-data" if seed == 0 else f"demo-data-seed{seed}")
    data_root = (settings.data_root or default_root).resolve()
    _claim_seed(settings, seed)
    # the demo's movies (4000 frames) are shorter than Allen's 600 s dF/F window, which `allen` refuses
    preset = os.environ.get("BRAINOBS_OPHYS_PARAMSET") or DEMO_OPHYS_PARAMSET
    settings = dataclasses.replace(settings, data_root=data_root, ophys_paramset=preset)
    os.environ.update(BRAINOBS_DATA_ROOT=str(data_root), BRAINOBS_OPHYS_PARAMSET=preset)
    console.rule(f"brainobs demo (seed {seed})")
    console.print(f"database: {settings.database}   home: {settings.home.resolve()}   data: {data_root}")
    console.print(f"2-photon preset: {preset} (later commands on this database: BRAINOBS_OPHYS_PARAMSET={preset})")
    manifest = data_root / "manifest.yaml"
    if not manifest.exists():
        console.print("generating the synthetic 'demo' survey (once) ...")
        started = time.perf_counter()
        generate_survey(data_root, preset="demo", seed=seed)
        console.print(f"  generated in {time.perf_counter() - started:.0f} s")
    activate(settings)
    report = insert_manifest(load_manifest(manifest, data_root))
    console.print(f"ingest: {report}")
    started = time.perf_counter()
    for name, result in populate_all(settings).items():
        failed = len(result["error_list"])
        console.print(f"  {name}: {result['success_count']} made" + (f", [red]{failed} failed[/red]" if failed else ""))
    console.print(f"pipeline ran in {time.perf_counter() - started:.0f} s")
    view = Table("table", "rows", title="what the database holds")
    for table in manual_tables(settings) + computed_tables(settings):
        view.add_row(table.__name__, str(len(table())))
    console.print(view)
    for summary in (_ophys_summary, _decrosstalk_summary, _container_summary, _ephys_summary, _behavior_summary):
        console.print(summary())
    _release_summary(settings, console)


def _claim_seed(settings: Settings, seed: int) -> None:
    """Record which seed this database's demo survey has; refuse another one."""
    marker = settings.home / f"demo-seed-{settings.schema_prefix.rstrip('_')}"
    held = marker.read_text().strip() if marker.exists() else str(seed)
    if held != str(seed):
        raise DemoSeedError(
            f"the database of {marker.parent} (schema prefix {settings.schema_prefix!r}) holds the demo survey of "
            f"seed {held}, not {seed}; run seed {seed} with another BRAINOBS_HOME or BRAINOBS_SCHEMA_PREFIX"
        )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{seed}\n")


def _ophys_summary() -> Table:
    import numpy as np

    from brainobs.schemas import ophys

    view = Table("experiment", "ROIs", "valid ROIs", "events", title="2-photon experiments")
    for row in (ophys.Segmentation * ophys.EventDetection).to_dicts(order_by="experiment_id"):
        key = {"experiment_id": row["experiment_id"], "ophys_paramset": row["ophys_paramset"]}
        events = ophys.EventDetection.Event & key
        n_events = sum(int(np.count_nonzero(np.nan_to_num(np.asarray(e)) > 0)) for e in events.to_arrays("events"))
        view.add_row(str(row["experiment_id"]), str(row["n_rois"]), str(row["n_valid"]), str(n_events))
    return view


def _decrosstalk_summary() -> Table:
    from brainobs.schemas.ophys import Decrosstalk

    view = Table("plane", "paired plane", "crosstalk", "ghosts", "flagged", title="mesoscope planes (decrosstalk)")
    for row in Decrosstalk.to_dicts(order_by="experiment_id"):
        crosstalk = "-" if row["crosstalk"] is None else f"{row['crosstalk']:.3f}"
        view.add_row(
            str(row["experiment_id"]), str(row["paired_experiment_id"]), crosstalk, str(row["n_ghosts"]),
            str(row["n_flagged"]),
        )  # fmt: skip
    return view


def _container_summary() -> Table:
    from brainobs.schemas.matching import CellMatching

    view = Table("container", "sessions", "cells", "tracked in all sessions", title="containers")
    for row in CellMatching.to_dicts(order_by="container_id"):
        view.add_row(
            str(row["container_id"]), str(row["n_experiments"]), str(row["n_cells"]), str(row["n_cells_all_sessions"])
        )
    return view


def _ephys_summary() -> Table:
    from brainobs.schemas.ephys import SpikeSorting, units_table

    view = Table("session", "probe", "sorter", "units", "pass Visual Coding", title="Neuropixels")
    for row in SpikeSorting.to_dicts(order_by="session_id"):
        key = {"session_id": row["session_id"], "probe_name": row["probe_name"]}
        passing = units_table(key, preset="visual_coding")
        view.add_row(
            str(row["session_id"]), row["probe_name"], row["sorter_name"], str(row["n_units"]), str(len(passing))
        )
    return view


def _behavior_summary() -> Table:
    from brainobs.schemas.behavior import Behavior

    view = Table("session", "go trials", "hit rate", "false-alarm rate", "d'", "engaged", title="behavior")

    def number(value) -> str:
        return "-" if value is None else f"{value:.2f}"

    for row in Behavior.Performance.to_dicts(order_by="session_id"):
        view.add_row(
            str(row["session_id"]),
            str(row["n_go"]),
            number(row["hit_rate"]),
            number(row["false_alarm_rate"]),
            number(row["dprime"]),
            number(row["engaged_fraction"]),
        )
    return view


def _release_summary(settings: Settings, console: Console) -> None:
    from brainobs.cli import release_table
    from brainobs.publish import publish

    result = publish("demo", settings.home.resolve() / "releases", settings=settings)
    size = sum(f.size for f in result.files)
    state = result.validation.summary().splitlines()[0] if result.validation else "not validated"
    console.print(f"release 'demo': {result.folder}  {len(result.files)} files, {size / 1e6:.1f} MB")
    console.print(f"  {state}")
    console.print(release_table("demo"))
