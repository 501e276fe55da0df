"""A client with only DataJoint (no brainobs import) reads the tables through dj.virtual_schema."""

import os
import subprocess
import sys
import textwrap

import pytest

from tests.manifests import make_manifest

pytestmark = pytest.mark.db

CLIENT = textwrap.dedent(
    """
    import sys
    import datajoint as dj
    acquisition = dj.virtual_schema(sys.argv[1])
    rows = (acquisition.Experiment & {"experiment_id": 11}).to_dicts()
    assert not any(name.startswith("brainobs") for name in sys.modules), "brainobs was imported"
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


def test_plain_datajoint_client_reads_experiments(db, settings, tmp_path):
    from brainobs.ingest.manifest import load_manifest
    from brainobs.schemas.loading import insert_manifest

    insert_manifest(load_manifest(make_manifest(tmp_path)))
    env = {**os.environ, **client_environment(settings)}
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, settings.schema_prefix + "acquisition"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == ["11", "7", "31.0"]
