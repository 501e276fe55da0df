"""One settings object, read from environment variables and an optional ``brainobs.toml``.

Precedence: environment variable, then ``brainobs.toml`` (``BRAINOBS_CONFIG`` or the working directory),
then the default. Passwords are kept out of every repr, log line and error message: use
:func:`redact_url` whenever a database or store URL is shown.

A password with ``@``, ``:`` or ``/`` may be written percent-encoded (``p%40ss``, what
:func:`quote_password` gives) or as is: the user part of a URL runs to its last ``@``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

ENV_KEYS = {
    "database_url": "BRAINOBS_DATABASE_URL",
    "home": "BRAINOBS_HOME",
    "data_root": "BRAINOBS_DATA_ROOT",
    "store_url": "BRAINOBS_STORE_URL",
    "schema_prefix": "BRAINOBS_SCHEMA_PREFIX",
    "ophys_paramset": "BRAINOBS_OPHYS_PARAMSET",
}
# user up to the first ':', password up to the last '@' of the URL (a raw password may hold '@', ':' and '/')
_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>\S*)(?P<tail>@)", re.I)


class SettingsError(ValueError):
    """A setting has a value brainobs cannot use."""


def redact_url(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``text`` with ``***``."""
    return _PASSWORD_IN_URL.sub(lambda m: f"{m['head']}***{m['tail']}", text)


def quote_password(password: str) -> str:
    """``password`` percent-encoded for the user part of a URL (``@``, ``:``, ``/`` and the like escaped)."""
    return quote(password, safe="")


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed ``BRAINOBS_DATABASE_URL``: ``embedded``, ``postgresql://...`` or ``mysql://...``.

    A PostgreSQL server's Unix socket is named as libpq does: ``postgresql://user@/db?host=/socket/folder``.
    """

    backend: str  # "embedded", "postgresql" or "mysql"
    host: str = ""
    port: int | None = None
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""

    @classmethod
    def parse(cls, url: str) -> DatabaseURL:
        if url.strip().lower() == "embedded":
            return cls(backend="embedded")
        scheme, separator, rest = url.partition("://")
        backend = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql"}.get(scheme.lower())
        if not separator or backend is None:
            raise SettingsError(
                f"BRAINOBS_DATABASE_URL {redact_url(url)!r}: unknown scheme {scheme.lower()!r}; "
                "use 'embedded', 'postgresql://user:pass@host:port/db' or 'mysql://user:pass@host:port'"
            )
        userinfo, at, location = rest.rpartition("@")  # a raw password may hold '@' and '/'
        user, _, password = userinfo.partition(":")
        try:
            parts = urlsplit(f"{backend}://{location}")
            port = parts.port
        except ValueError as err:
            raise SettingsError(f"BRAINOBS_DATABASE_URL {redact_url(url)!r}: {err}") from None
        host = parts.hostname or parse_qs(parts.query).get("host", [""])[0]  # ?host=/socket/folder (PostgreSQL)
        if not host:
            raise SettingsError(f"BRAINOBS_DATABASE_URL {redact_url(url)!r} names no host")
        return cls(
            backend=backend,
            host=host,
            port=port,
            user=unquote(user) if at else "",
            password=unquote(password) if at else "",
            database=parts.path.lstrip("/"),
        )

    def __str__(self) -> str:
        if self.backend == "embedded":
            return "embedded"
        auth = f"{self.user}:***@" if self.password else (f"{self.user}@" if self.user else "")
        port = f":{self.port}" if self.port else ""
        path = f"/{self.database}" if self.database else ""
        if self.host.startswith("/"):  # a Unix socket folder
            return f"{self.backend}://{auth}{port}{path}?host={self.host}"
        return f"{self.backend}://{auth}{self.host}{port}{path}"


@dataclass(frozen=True)
class Settings:
    """Where the database, the object store and the raw data live."""

    database_url: str = "embedded"
    home: Path = Path(".brainobs")
    data_root: Path | None = None
    store_url: str | None = None
    schema_prefix: str = "brainobs_"
    ophys_paramset: str = "allen"  # 2-photon preset new experiments are paired with (docs/methods.md)

    def __repr__(self) -> str:
        store = redact_url(self.store_url) if self.store_url else None
        return (
            f"Settings(database_url={redact_url(self.database_url)!r}, home={str(self.home)!r}, "
            f"data_root={str(self.data_root) if self.data_root else None!r}, store_url={store!r}, "
            f"schema_prefix={self.schema_prefix!r}, ophys_paramset={self.ophys_paramset!r})"
        )

    __str__ = __repr__

    @property
    def database(self) -> DatabaseURL:
        return DatabaseURL.parse(self.database_url)

    @property
    def store_location(self) -> str:
        """The object store: a folder path, or an ``s3://`` URL."""
        return self.store_url or str((self.home / "store").resolve())

    @classmethod
    def load(cls, config_file: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
        """Read the settings: environment first, then ``brainobs.toml``, then defaults."""
        env = os.environ if environ is None else environ
        path = config_file or Path(env.get("BRAINOBS_CONFIG", "brainobs.toml"))
        values: dict[str, object] = {}
        if path.is_file():
            try:
                values = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as err:
                raise SettingsError(f"{path}: not valid TOML: {err}") from err
            unknown = set(values) - set(ENV_KEYS)
            if unknown:
                raise SettingsError(f"{path}: unknown settings {sorted(unknown)}; known: {sorted(ENV_KEYS)}")
        for name, variable in ENV_KEYS.items():
            if env.get(variable):
                values[name] = env[variable]
        if "home" in values:
            values["home"] = Path(str(values["home"]))
        if values.get("data_root"):
            values["data_root"] = Path(str(values["data_root"]))
        prefix = str(values.get("schema_prefix", cls.schema_prefix))
        if not re.fullmatch(r"[a-z][a-z0-9_]*", prefix):
            raise SettingsError(
                f"BRAINOBS_SCHEMA_PREFIX {prefix!r}: use lower-case letters, digits and '_', starting with a letter"
            )
        settings = cls(**values)  # type: ignore[arg-type]
        settings.database  # noqa: B018 - validates the URL early
        return settings
