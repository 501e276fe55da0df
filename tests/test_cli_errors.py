"""Errors a user meets at the command line are one line, not a traceback: a database that cannot be
reached (for every command that needs one), a malformed release tag, a tag released already."""

import json
import os
import subprocess
import sys

import pytest

PASSWORD = "p@ss:w/rd"
UNREACHABLE = {  # nothing listens on port 9
    "postgresql": f"postgresql://bob:{PASSWORD}@127.0.0.1:9/brain",
    "mysql": "mysql://bob:p%40ss%3Aw%2Frd@127.0.0.1:9",
}


def brainobs(*arguments: str, url: str, cwd) -> tuple[int, list[str]]:
    """Run the CLI in a fresh process; its exit status and the non-empty lines it printed."""
    env = {
        **os.environ,
        "BRAINOBS_DATABASE_URL": url,
        "BRAINOBS_HOME": str(cwd / "home"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "brainobs.cli", *arguments],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


COMMANDS = [
    ["status"],
    ["populate", "MotionCorrection"],
    ["ingest", "manifest.yaml"],
    ["diagram"],
    ["report", "1"],
    ["release", "v1", "--out", "releases"],
    ["db", "grant-reader", "alice"],
    ["jobs", "errors"],
    ["jobs", "retry"],
    ["jobs", "slurm"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_unreachable_database_is_one_line_naming_the_redacted_url(command, tmp_path):
    from tests.manifests import make_manifest

    make_manifest(tmp_path).rename(tmp_path / "manifest.yaml")
    code, lines = brainobs(*command, url=UNREACHABLE["postgresql"], cwd=tmp_path)
    assert code == 1, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: cannot connect to postgresql://bob:***@127.0.0.1:9/brain"), lines
    assert "Connection refused" in lines[0] or "refused" in lines[0].lower()
    assert "p@ss" not in lines[0] and "w/rd" not in lines[0]


def test_unreachable_mysql_with_an_encoded_password(tmp_path):
    code, lines = brainobs("status", url=UNREACHABLE["mysql"], cwd=tmp_path)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: cannot connect to mysql://bob:***@127.0.0.1:9"), lines
    assert "%40" not in lines[0] and "p@ss" not in lines[0]


@pytest.mark.parametrize("tag", ["../escape", "v 1", "_v1", ".hidden", "", "v1/x", "a" * 33, "tag;drop"])
def test_malformed_tag_is_refused_before_the_database(tag, tmp_path):
    code, lines = brainobs("release", tag, "--out", "releases", url=UNREACHABLE["postgresql"], cwd=tmp_path)
    assert code == 1, lines
    assert len(lines) == 1 and "must be 1 to 32 letters, digits" in lines[0], lines
    assert not (tmp_path / "releases").exists()


def test_released_tag_is_one_line_before_the_database(tmp_path):
    (tmp_path / "releases" / "v1").mkdir(parents=True)
    code, lines = brainobs("release", "v1", "--out", "releases", url=UNREACHABLE["postgresql"], cwd=tmp_path)
    assert code == 1, lines
    assert len(lines) == 1 and "exists; a release tag is never rebuilt" in lines[0], lines


def test_valid_tags_pass_the_check(tmp_path):
    from brainobs.export.release import check_new_tag

    for tag in ("v1", "2026-11", "r1.2_final", "a" * 32):
        assert check_new_tag(tag, tmp_path) == tmp_path / tag


LOSING_CLIENT = """
import json, os, sys
import brainobs.pipeline
from brainobs.cli import app
from tests.dbgate import Gate

target = json.loads(sys.argv[1])
gate = Gate(target if isinstance(target, str) else tuple(target))
gate.open()
os.environ["BRAINOBS_DATABASE_URL"] = sys.argv[2].format(port=gate.port)
table_status = brainobs.pipeline.table_status

def cut_then_count(table):  # the server goes away in the middle of the command
    gate.cut()
    return table_status(table)

brainobs.pipeline.table_status = cut_then_count
app(["status"], prog_name="brainobs")
"""


@pytest.mark.db
def test_connection_lost_mid_command_is_one_line_naming_the_database(database, settings, tmp_path):
    from tests.conftest import REPO
    from tests.dbgate import gate_route

    target, gated = gate_route(settings, embedded_user=f"postgres:{PASSWORD}")
    env = {
        **os.environ,
        "BRAINOBS_HOME": str(settings.home),
        "BRAINOBS_SCHEMA_PREFIX": settings.schema_prefix,
    }
    result = subprocess.run(
        [sys.executable, "-c", LOSING_CLIENT, json.dumps(target), gated],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 1, lines
    assert len(lines) == 1 and "Traceback" not in lines[0], "\n".join(lines[-12:])
    assert lines[0].startswith("error: lost the connection to "), lines
    assert "127.0.0.1" in lines[0] and PASSWORD not in lines[0], lines
