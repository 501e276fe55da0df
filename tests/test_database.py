"""The embedded PostgreSQL server: start, reuse, stop, and two processes starting it at once."""

import subprocess
import sys
import textwrap

import pytest

from brainobs.database import EmbeddedServer

pytestmark = pytest.mark.db

STARTER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from brainobs.database import EmbeddedServer
    status = EmbeddedServer(Path(sys.argv[1])).start()
    print(status.pid)
    """
)


@pytest.fixture
def fresh_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("emb")
    yield home
    EmbeddedServer(home).stop()


def test_start_reuse_stop(fresh_home):
    server = EmbeddedServer(fresh_home)
    assert not server.status().running
    first = server.start()
    assert first.running and first.pid
    assert server.start().pid == first.pid  # reused, not restarted
    assert server.status().url.startswith("postgresql://postgres@/postgres?host=")
    assert server.stop()
    assert not server.status().running
    assert not server.stop()


def test_two_processes_starting_at_once_share_one_server(fresh_home):
    procs = [
        subprocess.Popen([sys.executable, "-c", STARTER, str(fresh_home)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    pids = [int(p.communicate(timeout=120)[0].split()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert pids[0] == pids[1] == EmbeddedServer(fresh_home).status().pid
    # the cluster is healthy: a client can create and read a table
    import psycopg2

    status = EmbeddedServer(fresh_home).status()
    with psycopg2.connect(host=str(status.socket_dir), user="postgres", dbname="postgres") as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42); SELECT x FROM t")
        assert cur.fetchone() == (42,)


def test_a_schema_declaration_cut_off_midway_is_redone_on_the_next_try(database, settings, monkeypatch):
    """A server that goes away while a worker declares its schemas must not leave tables unbound for good."""
    import types

    import datajoint as dj

    from brainobs.schemas import declare

    module = types.ModuleType("halfway")
    module.schema = dj.Schema()

    @module.schema
    class First(dj.Manual):
        definition = "first_id : int32"

    @module.schema
    class Second(dj.Manual):
        definition = "second_id : int32"

    decorate = dj.Schema._decorate_master
    calls = []

    def cut_off(self, cls, context):
        calls.append(cls.__name__)
        if cls is Second and calls.count("Second") == 1:
            raise ConnectionError("server closed the connection unexpectedly")
        return decorate(self, cls, context)

    monkeypatch.setattr(dj.Schema, "_decorate_master", cut_off)
    name = settings.schema_prefix + "halfway"
    with pytest.raises(ConnectionError):
        declare(dj.conn(), [(module, name)])
    try:
        declare(dj.conn(), [(module, name)])
        Second.insert1({"second_id": 1})
        assert len(First()) == 0 and len(Second()) == 1
    finally:
        module.schema.drop(prompt=False)
