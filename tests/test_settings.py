import logging

import pytest

from brainobs.database import DatabaseError, connect
from brainobs.settings import DatabaseURL, Settings, SettingsError, redact_url

SECRET = "s3cr3t-Pa55"


def test_defaults_without_environment(tmp_path):
    settings = Settings.load(config_file=tmp_path / "none.toml", environ={})
    assert settings.database_url == "embedded"
    assert settings.schema_prefix == "brainobs_"
    assert settings.database.backend == "embedded"
    assert settings.store_location.endswith(".brainobs/store")
    assert settings.ophys_paramset == "allen"
    assert Settings.load(environ={"BRAINOBS_OPHYS_PARAMSET": "allen_short_movies"}).ophys_paramset == (
        "allen_short_movies"
    )


def test_environment_overrides_toml(tmp_path):
    toml = tmp_path / "brainobs.toml"
    toml.write_text('schema_prefix = "from_toml_"\nhome = "/srv/bo"\n')
    settings = Settings.load(config_file=toml, environ={"BRAINOBS_SCHEMA_PREFIX": "from_env_"})
    assert settings.schema_prefix == "from_env_"
    assert str(settings.home) == "/srv/bo"


def test_toml_with_unknown_key_is_refused(tmp_path):
    toml = tmp_path / "brainobs.toml"
    toml.write_text('databse_url = "embedded"\n')
    with pytest.raises(SettingsError, match="unknown settings.*databse_url"):
        Settings.load(config_file=toml, environ={})


@pytest.mark.parametrize(
    ("url", "backend", "host", "port", "database"),
    [
        ("postgresql://alice:pw@db.lab.org:5433/brain", "postgresql", "db.lab.org", 5433, "brain"),
        ("postgres://alice@db", "postgresql", "db", None, ""),
        ("mysql://bob:pw@127.0.0.1:3307", "mysql", "127.0.0.1", 3307, ""),
    ],
)
def test_database_url_parsing(url, backend, host, port, database):
    parsed = DatabaseURL.parse(url)
    assert (parsed.backend, parsed.host, parsed.port, parsed.database) == (backend, host, port, database)


def test_bad_scheme_and_bad_prefix_are_refused():
    with pytest.raises(SettingsError, match="unknown scheme 'sqlite'"):
        DatabaseURL.parse("sqlite:///x.db")
    with pytest.raises(SettingsError, match="BRAINOBS_SCHEMA_PREFIX"):
        Settings.load(environ={"BRAINOBS_SCHEMA_PREFIX": "Bad-Prefix"})


def test_password_never_in_repr_str_or_parsed_url():
    url = f"mysql://bob:{SECRET}@db.lab.org:3306"
    settings = Settings.load(environ={"BRAINOBS_DATABASE_URL": url, "BRAINOBS_STORE_URL": f"s3://k:{SECRET}@b/x"})
    for text in (repr(settings), str(settings), str(settings.database), repr(settings.database)):
        assert SECRET not in text
        assert "***" in text or "password" not in text
    assert redact_url(f"see {url} and postgresql://u:{SECRET}@h/db") == (
        "see mysql://bob:***@db.lab.org:3306 and postgresql://u:***@h/db"
    )


@pytest.fixture
def restored_config():
    """Put DataJoint's global configuration back after a test that points it elsewhere."""
    import datajoint as dj

    keys = ("database.backend", "database.host", "database.port", "database.user", "database.password", "stores")
    keys += ("database.name",)
    saved = {key: dj.config[key] for key in keys}
    yield
    for key, value in saved.items():
        dj.config[key] = value


def test_password_not_in_connection_error_or_logs(caplog, tmp_path, restored_config):
    # nothing listens on port 9; the error must name the server but not the password
    settings = Settings(database_url=f"mysql://bob:{SECRET}@127.0.0.1:9", home=tmp_path)
    with caplog.at_level(logging.DEBUG), pytest.raises(DatabaseError) as raised:
        connect(settings, reset=True)
    assert "127.0.0.1" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert (
        raised.value.__cause__ is None
        and raised.value.__context__ is None
        or SECRET not in repr(raised.value.__context__)
    )
    assert SECRET not in caplog.text


SPECIAL = "p@ss:w/rd%x"  # '@', ':', '/' and a '%' that starts no escape


@pytest.mark.parametrize(
    "url",
    [
        "mysql://bob:p%40ss%3Aw%2Frd%25x@db.lab.org:3306",  # percent-encoded
        "mysql://bob:p@ss:w/rd%x@db.lab.org:3306",  # as typed
    ],
)
def test_password_with_at_colon_slash_is_parsed_and_redacted(url):
    parsed = DatabaseURL.parse(url)
    assert (parsed.user, parsed.password, parsed.host, parsed.port) == ("bob", SPECIAL, "db.lab.org", 3306)
    assert str(parsed) == "mysql://bob:***@db.lab.org:3306"
    message = redact_url(f"cannot reach {url}: refused")
    assert message == "cannot reach mysql://bob:***@db.lab.org:3306: refused"
    for fragment in ("p@ss", "w/rd", "ss:w", "%40"):
        assert fragment not in message


def test_redaction_of_several_urls_with_awkward_passwords():
    text = "a postgresql://u:a@b/c:d@h:5432/db and mysql://v:x:y@z@h2 end"
    assert redact_url(text) == "a postgresql://u:***@h:5432/db and mysql://v:***@h2 end"


def test_quoted_password_round_trips_and_reaches_datajoint(tmp_path, restored_config):
    import datajoint as dj

    from brainobs.database import configure
    from brainobs.settings import quote_password

    url = f"postgresql://alice:{quote_password(SPECIAL)}@db.lab.org:5433/brain"
    assert DatabaseURL.parse(url).password == SPECIAL
    configure(Settings(database_url=url, home=tmp_path))
    assert (dj.config["database.user"], dj.config["database.password"]) == ("alice", SPECIAL)
    assert (dj.config["database.host"], dj.config["database.port"]) == ("db.lab.org", 5433)


def test_url_without_host_or_with_bad_port_is_refused():
    with pytest.raises(SettingsError, match="names no host"):
        DatabaseURL.parse("mysql://bob:pw@:3306")
    with pytest.raises(SettingsError, match="Port") as raised:
        DatabaseURL.parse("mysql://bob:secret@h:notaport")
    assert "secret" not in str(raised.value)


def test_unix_socket_url_as_libpq_writes_it():
    parsed = DatabaseURL.parse("postgresql://reader@/postgres?host=/tmp/bo/socket")
    assert (parsed.backend, parsed.user, parsed.host, parsed.database) == (
        "postgresql",
        "reader",
        "/tmp/bo/socket",
        "postgres",
    )
    assert str(parsed) == "postgresql://reader@/postgres?host=/tmp/bo/socket"
