"""brainobs benchmarks: python -m benchmarks.<name>. Shared helpers for the benchmark modules."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SHORT_MOVIE_PRESET = "allen_short_movies"  # synthetic movies are shorter than the 600 s dF/F window

REPO = Path(__file__).resolve().parents[1]
# glibc malloc tuning that makes suite2p registration 2.5-3.4x faster; read at process start
MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "17179869184", "MALLOC_TOP_PAD_": "1073741824"}


def load_average() -> str:
    """The 1/5/15-minute load averages, printed next to every figure."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def peak_bytes() -> int:
    """This process's peak resident memory."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(module: str, kind: str, *args: object) -> dict:
    """Run ``python -m MODULE --child KIND ARGS`` with the malloc variables set; return its last line as JSON."""
    command = [sys.executable, "-m", module, "--child", kind, *map(str, args)]
    env = {**os.environ, **MALLOC, "BRAINOBS_LOG_LEVEL": "WARNING"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{kind} child failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextmanager
def ingested_survey(manifest: Path, home: Path, schema_prefix: str) -> Iterator:
    """An embedded PostgreSQL under ``home`` holding the rows of ``manifest`` (a generated survey), with the
    brainobs schemas under ``schema_prefix``; yields its Settings and stops the server on exit.
    BRAINOBS_HOME, BRAINOBS_DATA_ROOT and BRAINOBS_OPHYS_PARAMSET are set too, for code that activates from
    the environment."""
    from brainobs.database import EmbeddedServer
    from brainobs.ingest.manifest import load_manifest
    from brainobs.schemas import activate
    from brainobs.schemas.loading import insert_manifest
    from brainobs.settings import Settings

    root = manifest.parent
    # the synthetic movies are shorter than Allen's 600 s dF/F window: the preset that clamps it
    settings = Settings(
        database_url="embedded",
        home=home,
        data_root=root,
        schema_prefix=schema_prefix,
        ophys_paramset=SHORT_MOVIE_PRESET,
    )
    os.environ.update(BRAINOBS_HOME=str(home), BRAINOBS_DATA_ROOT=str(root), BRAINOBS_OPHYS_PARAMSET=SHORT_MOVIE_PRESET)
    try:
        activate(settings)
        insert_manifest(load_manifest(manifest, root))
        yield settings
    finally:
        EmbeddedServer(home).stop()


def populate(settings, tables: list[str]) -> None:
    """Populate ``tables`` (and nothing upstream); RuntimeError listing the jobs' errors if any failed."""
    from brainobs.pipeline import populate_all

    results = populate_all(settings, tables=tables)
    errors = {name: r["error_list"] for name, r in results.items() if r["error_list"]}
    if errors:
        raise RuntimeError(f"pipeline did not finish: {errors}")
