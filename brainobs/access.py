"""Read-only database accounts for scientists: ``brainobs db grant-reader NAME``.

A reader can SELECT from every schema of the configured prefix and write nothing.

- PostgreSQL: a LOGIN role with USAGE, SELECT and REFERENCES on each schema of the prefix, and default
  privileges in those schemas, so tables created there later (job tables, new tables of a module) are
  readable too. REFERENCES is there because PostgreSQL hides a table's primary key from
  ``information_schema.table_constraints`` for a role with SELECT alone, and DataJoint reads the key there;
  it writes nothing, and with no CREATE on any schema (PostgreSQL 15+) the role cannot use it.
  PostgreSQL cannot grant by schema name, so a schema created after the grant (a plugin module) needs the
  command run again; it is idempotent. The embedded server trusts its Unix socket, so there the role logs
  in by name alone.
- MySQL / MariaDB: a user with SELECT on ```prefix%`.*``, which covers databases created later.

Running it again for an existing reader sets its password anew and repeats the grants. The account brainobs
itself connects with is refused. An existing PostgreSQL role that may create databases or roles, or write to
a table of the prefix, is refused; an existing MySQL account loses every other privilege first (MySQL lets
an account with CREATE USER revoke, but not read, another account's grants), so it reads this prefix only.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

READER_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class AccessError(ValueError):
    """A reader account cannot be created as asked."""


@dataclass(frozen=True)
class Reader:
    """The account made by :func:`grant_reader` and the schemas it can read now."""

    name: str
    password: str = field(repr=False)
    schemas: tuple[str, ...]
    generated: bool  # True when brainobs chose the password (shown once, then never again)


def new_password() -> str:
    """A random password of URL-safe characters."""
    return secrets.token_urlsafe(18)


def grant_reader(
    connection, backend: str, prefix: str, name: str, password: str | None = None, *, host: str = "%"
) -> Reader:
    """Create (or renew) the read-only account ``name`` for the schemas of ``prefix`` through ``connection``
    (a DataJoint connection of an account allowed to create roles and grant SELECT on them); ``host`` is the
    MySQL host part of the account. A password is generated when none is given."""
    if not READER_NAME.fullmatch(name):
        raise AccessError(f"reader name {name!r}: use lower-case letters, digits and '_', starting with a letter")
    generated = password is None
    password = new_password() if password is None else password
    if not password:
        raise AccessError("the reader's password is empty")
    if backend == "postgresql":
        with connection.transaction:  # PostgreSQL's role and grant statements are transactional: all or none
            schemas = _grant_postgresql(connection, prefix, name, password)
    elif backend == "mysql":
        schemas = _grant_mysql(connection, prefix, name, password, host)
    else:
        raise AccessError(f"grant-reader works on PostgreSQL and MySQL, not {backend!r}")
    return Reader(name=name, password=password, schemas=schemas, generated=generated)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern for names starting with ``prefix`` (its ``_`` and ``%`` taken literally)."""
    return re.sub(r"([\\_%])", r"\\\1", prefix) + "%"


def _grant_postgresql(connection, prefix: str, name: str, password: str) -> tuple[str, ...]:
    role = f'"{name}"'
    current = connection.query("SELECT current_user").fetchone()[0]
    if name == current:
        raise AccessError(f"{name!r} is the account brainobs connects with; choose another name for the reader")
    existing = connection.query(
        "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls FROM pg_roles "
        "WHERE rolname = %s",
        (name,),
    ).fetchone()
    if existing and existing[0]:
        raise AccessError(f"role {name!r} exists and may create databases or roles; choose another name")
    pattern = _like_prefix(prefix)
    if existing:
        writable = connection.query(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname LIKE %s AND c.relkind IN ('r', 'p') "
            "AND has_table_privilege(%s, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')",
            (pattern, name),
        ).fetchone()[0]
        if writable:
            raise AccessError(f"role {name!r} exists and can write to {writable} brainobs tables; choose another name")
    verb = "ALTER" if existing else "CREATE"
    connection.query(f"{verb} ROLE {role} LOGIN PASSWORD %s", (password,))
    database = connection.query("SELECT current_database()").fetchone()[0]
    connection.query(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
    schemas = tuple(
        row[0]
        for row in connection.query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY nspname", (pattern,)
        ).fetchall()
    )
    for schema in schemas:
        quoted = f'"{schema}"'
        connection.query(f"GRANT USAGE ON SCHEMA {quoted} TO {role}")
        connection.query(f"GRANT SELECT, REFERENCES ON ALL TABLES IN SCHEMA {quoted} TO {role}")
        connection.query(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} GRANT SELECT, REFERENCES ON TABLES TO {role}")
    return schemas


def _grant_mysql(connection, prefix: str, name: str, password: str, host: str) -> tuple[str, ...]:
    if "'" in host or "\\" in host:
        raise AccessError(f"MySQL host {host!r} may not hold quotes or backslashes")
    account = f"'{name}'@'{host}'"
    current = connection.query("SELECT CURRENT_USER()").fetchone()[0]
    if current.rsplit("@", 1)[0] == name:
        raise AccessError(f"{name!r} is the account brainobs connects with; choose another name for the reader")
    connection.query("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (name, host, password))
    connection.query("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (name, host))  # exactly SELECT below
    connection.query("ALTER USER %s@%s IDENTIFIED BY %s", (name, host, password))
    pattern = _like_prefix(prefix)
    connection.query(f"GRANT SELECT ON `{pattern}`.* TO {account}", None)  # None: '%' is not a placeholder
    return tuple(
        row[0]
        for row in connection.query(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s ORDER BY schema_name",
            (pattern,),
        ).fetchall()
    )
