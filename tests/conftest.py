"""Shared fixtures: a real database for every `db` test, and a tiny synthetic survey.

The database is BRAINOBS_TEST_DATABASE_URL when set (tests/run.sh sets it to the MariaDB server for the
second pass), else an embedded PostgreSQL server under a temporary BRAINOBS_HOME, stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from brainobs.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHORT_MOVIE_PRESET = "allen_short_movies"


@pytest.fixture(scope="session")
def test_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="bo-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_survey(test_home: Path) -> Path:
    """The `tiny` synthetic survey (seed 0), generated once per test run; it is the tests' data root."""
    from brainobs.ingest.synthetic import generate_survey

    out = test_home / "data"
    generate_survey(out, preset="tiny", seed=0)
    return out


@pytest.fixture(scope="session")
def settings(test_home: Path, tiny_survey: Path) -> Settings:
    """Settings of the test database; schema names carry this run's pid so runs never collide."""
    url = os.environ.get("BRAINOBS_TEST_DATABASE_URL", "embedded")
    # the tiny survey's movies are shorter than Allen's 600 s dF/F window, which the `allen` preset refuses;
    # workers and CLI runs started by the tests inherit the preset through the environment
    os.environ["BRAINOBS_OPHYS_PARAMSET"] = SHORT_MOVIE_PRESET
    return Settings(
        database_url=url,
        home=test_home,
        data_root=tiny_survey,
        schema_prefix=f"bot{os.getpid()}_",
        ophys_paramset=SHORT_MOVIE_PRESET,
    )


@pytest.fixture(scope="session")
def database(settings: Settings):
    """Every brainobs schema, activated on the test database; dropped (and the server stopped) at the end."""
    from brainobs.database import EmbeddedServer
    from brainobs.schemas import activate

    modules = activate(settings)
    yield modules
    for module in reversed(modules):
        module.schema.drop(prompt=False)
    if settings.database.backend == "embedded":
        EmbeddedServer(settings.home).stop()


@pytest.fixture
def db(database):
    """The schemas, emptied of subjects (and so of everything downstream) before the test."""
    from brainobs.schemas.subject import Subject

    Subject.delete(prompt=False)
    return database
