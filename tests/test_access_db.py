"""`brainobs db grant-reader`: the account reads every brainobs schema through dj.virtual_schema and its
inserts are refused (embedded PostgreSQL over its socket, and MariaDB when the MySQL pass runs)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from brainobs.cli import app
from tests.manifests import make_manifest
from tests.test_virtual_schema import client_environment, run_client

pytestmark = pytest.mark.db

READER_CLIENT = textwrap.dedent(
    """
    import json
    import sys
    import datajoint as dj
    prefix = sys.argv[1]
    if len(sys.argv) > 2:
        dj.config["stores"] = json.loads(sys.argv[2])  # as grant-reader prints it, for <npy@main> arrays
    acquisition = dj.virtual_schema(prefix + "acquisition")
    subject = dj.virtual_schema(prefix + "subject")
    print("subjects", len(subject.Subject()))
    row = (acquisition.Experiment & {"experiment_id": 11}).fetch1()
    print("experiment", row["experiment_id"], row["container_id"])
    try:
        subject.Subject.insert1({**subject.Subject.to_dicts()[0], "subject_id": "intruder"})
    except Exception as err:
        print("insert refused:", type(err).__name__, str(err).splitlines()[0])
    else:
        print("insert accepted")
    quote = '"' if dj.config["database.backend"] == "postgresql" else "`"
    try:
        dj.conn().query(f"CREATE TABLE {quote}{prefix}subject{quote}.intruder (a int)")
    except Exception as err:
        print("create refused:", type(err).__name__, str(err).splitlines()[0])
    else:
        print("create accepted")
    """
)


def printed_client_settings(output: str) -> dict[str, str]:
    """The ``DJ_*`` settings and the ``stores`` JSON that ``grant-reader`` printed for a DataJoint client."""
    settings = {}
    for line in output.splitlines():
        if line.strip().startswith("DataJoint:"):
            settings.update(
                item.split("=", 1) for item in line.split(":", 1)[1].split() if not item.startswith("DJ_PASS")
            )
        elif "dj.config['stores'] = " in line:
            settings["stores"] = line.split("dj.config['stores'] = ", 1)[1]
    return settings


@pytest.fixture
def reader_name(settings):
    """A reader account name of this run, dropped afterwards."""
    import datajoint as dj

    name = f"bor{os.getpid()}"
    yield name
    connection = dj.conn()
    if settings.database.backend == "mysql":
        connection.query("DROP USER IF EXISTS %s@'%%'", (name,))
    elif connection.query("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
        connection.query(f'DROP OWNED BY "{name}"')
        connection.query(f'DROP ROLE "{name}"')


def test_reader_reads_through_virtual_schema_and_cannot_insert(db, settings, tmp_path, reader_name):
    from brainobs.ingest.manifest import load_manifest
    from brainobs.schemas.loading import insert_manifest

    insert_manifest(load_manifest(make_manifest(tmp_path)))
    env = {
        "BRAINOBS_DATABASE_URL": settings.database_url,
        "BRAINOBS_HOME": str(settings.home),
        "BRAINOBS_SCHEMA_PREFIX": settings.schema_prefix,
        "BRAINOBS_READER_PASSWORD": "r3ad@er:pa/ss",
    }
    result = CliRunner().invoke(app, ["db", "grant-reader", reader_name], env=env)
    assert result.exit_code == 0, result.output
    assert f"{reader_name} can read 9 schemas" in result.output
    assert "r3ad@er:pa/ss" not in result.output  # a password from the environment is never printed
    again = CliRunner().invoke(app, ["db", "grant-reader", reader_name], env=env)  # idempotent
    assert again.exit_code == 0, again.output

    printed = printed_client_settings(result.output)
    assert printed["DJ_USER"] == reader_name
    assert json.loads(printed["stores"])["main"]["location"] == settings.store_location
    stores = printed.pop("stores")
    client = {**client_environment(settings), **printed, "DJ_PASS": env["BRAINOBS_READER_PASSWORD"]}
    lines = run_client(READER_CLIENT, settings.schema_prefix, stores, env=client, cwd=tmp_path)
    assert "subjects 1" in lines and "experiment 11 7" in lines
    for verb in ("insert", "create"):
        refused = [line for line in lines if line.startswith(verb)]
        assert len(refused) == 1 and refused[0].startswith(f"{verb} refused"), lines
        assert "denied" in refused[0].lower(), refused[0]


API_CLIENT = "from brainobs import api; print(api.ophys_experiments()['experiment_id'].tolist())"


def test_reader_queries_through_brainobs_api_with_its_url(db, settings, tmp_path, reader_name):
    """The account's URL as BRAINOBS_DATABASE_URL: over the embedded server's socket, or with the password
    (holding '@', ':' and '/') percent-encoded on MySQL."""
    from brainobs.access import grant_reader
    from brainobs.database import EmbeddedServer
    from brainobs.ingest.manifest import load_manifest
    from brainobs.schemas.loading import insert_manifest
    from brainobs.settings import quote_password

    insert_manifest(load_manifest(make_manifest(tmp_path)))
    import datajoint as dj

    url = settings.database
    password = "r3ad@er:pa/ss"
    if url.backend == "embedded":
        grant_reader(dj.conn(), "postgresql", settings.schema_prefix, reader_name, password)
        socket = EmbeddedServer(settings.home).status().socket_dir
        reader_url = f"postgresql://{reader_name}@/postgres?host={socket}"
    else:
        grant_reader(dj.conn(), url.backend, settings.schema_prefix, reader_name, password)
        reader_url = f"{url.backend}://{reader_name}:{quote_password(password)}@{url.host}:{url.port}"
        if url.backend == "postgresql":
            reader_url += f"/{url.database or 'postgres'}"
    env = {**os.environ, "BRAINOBS_DATABASE_URL": reader_url, "BRAINOBS_SCHEMA_PREFIX": settings.schema_prefix}
    env["BRAINOBS_HOME"] = str(tmp_path / "reader-home")
    run = subprocess.run(
        [sys.executable, "-c", API_CLIENT], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[11]"


def test_reader_name_is_checked_and_the_pipeline_account_refused(db, settings):
    import datajoint as dj

    from brainobs.access import AccessError, grant_reader

    backend = "postgresql" if settings.database.backend == "embedded" else settings.database.backend
    with pytest.raises(AccessError, match="lower-case letters"):
        grant_reader(dj.conn(), backend, settings.schema_prefix, "Robert'); DROP TABLE x;--", "pw")
    own = dj.conn().query("SELECT current_user" if backend == "postgresql" else "SELECT CURRENT_USER()")
    own_name = own.fetchone()[0].rsplit("@", 1)[0]
    with pytest.raises(AccessError, match="the account brainobs connects with"):
        grant_reader(dj.conn(), backend, settings.schema_prefix, own_name, "pw")


def test_an_existing_account_that_can_write_is_refused_or_reduced(db, settings, tmp_path, reader_name):
    """PostgreSQL refuses a role that can write; MySQL takes every other privilege from the account."""
    import datajoint as dj

    from brainobs.access import AccessError, grant_reader
    from brainobs.ingest.manifest import load_manifest
    from brainobs.schemas.loading import insert_manifest

    connection, prefix = dj.conn(), settings.schema_prefix
    if settings.database.backend != "mysql":
        connection.query(f'CREATE ROLE "{reader_name}" LOGIN')
        connection.query(f'GRANT USAGE ON SCHEMA "{prefix}subject" TO "{reader_name}"')
        connection.query(f'GRANT INSERT ON "{prefix}subject"."subject" TO "{reader_name}"')
        with pytest.raises(AccessError, match="can write to 1 brainobs tables"):
            grant_reader(connection, "postgresql", prefix, reader_name, "pw")
        return
    insert_manifest(load_manifest(make_manifest(tmp_path)))
    connection.query("CREATE USER %s@'%%' IDENTIFIED BY 'pw'", (reader_name,))
    connection.query(f"GRANT SELECT, INSERT, CREATE ON `{prefix}subject`.* TO '{reader_name}'@'%'", None)
    grant_reader(connection, "mysql", prefix, reader_name, "pw2")
    client = {**client_environment(settings), "DJ_USER": reader_name, "DJ_PASS": "pw2"}
    lines = run_client(READER_CLIENT, prefix, env=client, cwd=tmp_path)
    assert "subjects 1" in lines
    assert any(line.startswith("insert refused") for line in lines), lines
    assert any(line.startswith("create refused") for line in lines), lines
