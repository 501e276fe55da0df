"""A client with only DataJoint (no brainobs import) reads the tables through dj.virtual_schema, and the
``<npy@main>`` arrays (written with brainobs's checksummed codec) with DataJoint's own."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.manifests import make_manifest

pytestmark = pytest.mark.db

CLIENT = textwrap.dedent(
    """
    import json
    import sys
    import datajoint as dj
    import numpy as np
    dj.config["stores"] = json.loads(sys.argv[3])  # for <npy@main> arrays, as README shows
    acquisition = dj.virtual_schema(sys.argv[1])
    rows = (acquisition.Experiment & {"experiment_id": 11}).to_dicts()
    vsync = dj.virtual_schema(sys.argv[2]).SessionSync.fetch1("vsync_times")
    assert not any(name.startswith("brainobs") for name in sys.modules), "brainobs was imported"
    print("vsync", len(vsync), float(np.asarray(vsync).sum()))
    print(rows[0]["experiment_id"], rows[0]["container_id"], rows[0]["frame_rate"])
    """
)


def client_environment(settings) -> dict[str, str]:
    """DJ_* variables a plain DataJoint client needs to reach the brainobs database."""
    from brainobs.database import EmbeddedServer

    url = settings.database
    if url.backend == "embedded":
        host, port, user, backend = (
            str(EmbeddedServer(settings.home).status().socket_dir),
            5432,
            "postgres",
            "postgresql",
        )
    else:
        default_port = 5432 if url.backend == "postgresql" else 3306
        host, port, user, backend = url.host, url.port or default_port, url.user, url.backend
    env = {
        "DJ_BACKEND": backend,
        "DJ_HOST": host,
        "DJ_PORT": str(port),
        "DJ_USER": user,
        "DJ_PASS": url.password,
        "DJ_USE_TLS": "false",
    }
    if backend == "postgresql":  # DataJoint schemas are PostgreSQL schemas inside this one database
        env["DJ_DATABASE_NAME"] = (url.database if url.backend == "postgresql" else None) or "postgres"
    return env


def run_client(code: str, *args: str, env: dict[str, str], cwd) -> list[str]:
    """Run ``code`` in a fresh Python with ``args`` and ``env`` added to this environment; its output lines
    (the test fails with its stderr when it exits non-zero)."""
    run = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip().splitlines()


def test_plain_datajoint_client_reads_experiments(db, settings, tmp_path):
    from brainobs.database import reader_store_config
    from brainobs.ingest.manifest import load_manifest
    from brainobs.schemas.acquisition import Session
    from brainobs.schemas.behavior import SessionSync
    from brainobs.schemas.loading import insert_manifest

    insert_manifest(load_manifest(make_manifest(tmp_path)))
    vsync = np.arange(5, dtype=np.float64)
    sync = {"display_frame_rate": 60.0, "monitor_delay": 0.0, "n_display_frames": 5, "n_ophys_frames": 0}
    sync |= {"passive": True, "vsync_times": vsync, "ophys_frame_times": np.empty(0)}
    SessionSync.insert1({**Session.keys()[0], **sync}, allow_direct_insert=True)
    prefix, stores = settings.schema_prefix, json.dumps(reader_store_config(settings))
    lines = run_client(
        CLIENT, prefix + "acquisition", prefix + "behavior", stores, env=client_environment(settings), cwd=tmp_path
    )
    assert lines[-2:] == ["vsync 5 10.0", "11 7 31.0"], lines
