"""Engines, and the `migrate` step that creates the database and brings it to the newest schema."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# Two `wallet migrate` started at once (one per container, say) take turns on this lock.
_MIGRATION_LOCK = 7_220_011


def async_url(database_url: str) -> str:
    """postgresql://... as given by the user, in the form SQLAlchemy's asyncpg dialect takes."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, not {url.drivername}://")


# SQLSTATE class 08 (connection exception), and of class 57 (operator intervention) the
# server shutting down, crashed, starting up, or ending an idle session. Not 57014, a query
# cancelled (a statement timeout): running it again would only be cancelled again.
_GONE_CLASSES = ("08",)
_GONE_STATES = ("57P01", "57P02", "57P03", "57P05")


def _through_asyncpg(error: OSError) -> bool:
    """Whether the error passed through asyncpg on its way up: raised while connecting to, or
    talking with, PostgreSQL. The same OSError raised by Redis, a file or anything else does
    not say PostgreSQL is gone."""
    frame = error.__traceback__
    while frame is not None:
        if str(frame.tb_frame.f_globals.get("__name__", "")).startswith("asyncpg."):
            return True
        frame = frame.tb_next
    return False


def is_disconnect(error: BaseException) -> bool:
    """Whether the error says PostgreSQL (or the way to it) went away, rather than refusing
    a statement: the connection is then useless, and the same work may well succeed later.
    """
    if isinstance(error, OSError):
        # A connection refused, reset or aborted says the peer is gone whoever raised it; any
        # other OSError (a timeout, no route, a permission) only when asyncpg raised it.
        return isinstance(error, ConnectionError) or _through_asyncpg(error)
    if isinstance(
        error,
        asyncpg.InterfaceError
        # What asyncpg raises when the server's goodbye arrived between two statements.
        | asyncpg.InternalClientError
        | OperationalError
        | InterfaceError,
    ):
        return True
    if isinstance(error, DBAPIError):
        # The driver's own error (`orig`, then what asyncpg raised under it) says why: "the
        # database system is starting up" arrives while connecting, on no connection to
        # invalidate.
        cause = error.orig.__cause__ if error.orig is not None else None
        return error.connection_invalidated or any(
            e is not None and is_disconnect(e) for e in (error.orig, cause)
        )
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and (state.startswith(_GONE_CLASSES) or state in _GONE_STATES)


# SQLSTATEs that say the database cannot serve at all, whatever the request: it does not exist,
# refuses the credentials, or has no room for another connection.
_UNAVAILABLE_STATES = {"3D000", "28000", "28P01", "53300"}
# A table or column missing: an outage while the schema is known to be behind the code (not
# migrated yet), a bug otherwise (a mistyped name).
SCHEMA_STATES = {"42P01", "42703"}


def _raised_from(error: BaseException) -> Iterator[BaseException]:
    """The error, then the errors it was explicitly raised from: `raise ... from` and the
    driver's error SQLAlchemy wraps. Not `__context__`: an error raised while another was being
    handled is a different failure (a KeyError in an `except OSError:` is a bug)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = current.orig if isinstance(current, DBAPIError) else None
        current = current.__cause__ or orig


def is_unavailable(error: BaseException, *, schema_behind: bool = False) -> bool:
    """Whether the error (or one it was raised from) says PostgreSQL cannot serve requests
    now: gone, missing, refusing us, or (when `schema_behind`, as readiness found it) lacking
    the tables or columns of a migration not applied yet. Such a request may succeed later;
    retrying it at once will not help."""
    states = _UNAVAILABLE_STATES | SCHEMA_STATES if schema_behind else _UNAVAILABLE_STATES
    for e in _raised_from(error):
        if isinstance(e, OSError):
            # Only from asyncpg: redis-py raises its ConnectionError from the socket's
            # ConnectionRefusedError, and a Redis outage is not PostgreSQL's.
            if _through_asyncpg(e):
                return True
        elif is_disconnect(e) or getattr(e, "sqlstate", None) in states:
            return True
    return False


def create_engine(
    database_url: str, *, pool_size: int = 16, max_overflow: int | None = None
) -> AsyncEngine:
    url = make_url(async_url(database_url))
    connect_args: dict[str, object] = {"statement_cache_size": 512}
    if url.host in ("127.0.0.1", "localhost", "::1") and not url.query.keys() & {"ssl", "sslmode"}:
        # asyncpg's default ("prefer") first asks a loopback server for TLS, which costs a
        # second connection attempt each time; there is nothing to protect on loopback.
        connect_args["ssl"] = False
    return create_async_engine(
        url,
        # Enough connections for the requests a process serves at once: a connection opened
        # past pool_size is closed again when returned, and PostgreSQL forks a backend for
        # each new one. The small overflow only absorbs bursts.
        pool_size=pool_size,
        max_overflow=max(2, pool_size // 4) if max_overflow is None else max_overflow,
        # No ping on checkout: it costs a round trip per unit of work. A connection that died
        # fails its first statement instead, and the unit of work is retried or reported.
        pool_recycle=1800,
        connect_args=connect_args,
    )


def _dsn(database_url: str, database: str | None = None) -> str:
    url = make_url(database_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


async def create_database(database_url: str) -> bool:
    """Create the URL's database when it is missing. Returns whether it was created."""
    name = make_url(database_url).database
    if not name:
        raise ValueError("DATABASE_URL names no database")
    conn = await asyncpg.connect(_dsn(database_url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False  # another migrate created it meanwhile
        return True
    finally:
        await conn.close()


async def drop_database(database_url: str) -> None:
    name = make_url(database_url).database
    assert name
    conn = await asyncpg.connect(_dsn(database_url, "postgres"))
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await conn.close()


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    script_location = resources.files("wallet.persistence").joinpath("migrations")
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _migrations() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


@functools.cache
def newest_revision() -> str:
    """The newest migration this code knows of."""
    head = _migrations().get_current_head()
    assert head is not None, "no migrations"
    return head


SchemaState = Literal["current", "behind", "ahead"]


def schema_state(revision: str | None) -> SchemaState:
    """Where a database at `revision` stands against this code: at its newest migration,
    behind it (`wallet migrate` brings it up), or ahead: at a migration this code does not
    know, applied by a newer release."""
    if revision == newest_revision():
        return "current"
    if revision is None:
        return "behind"
    try:
        _migrations().get_revision(revision)
    except CommandError:
        return "ahead"
    return "behind"


class SchemaAhead(Exception):
    """The database is at a migration this code does not know: a newer release migrated it,
    and this one cannot migrate it further (nor back)."""

    def __init__(self, revision: str) -> None:
        super().__init__(
            f"the database is at migration {revision}, newer than this release knows "
            f"(its newest is {newest_revision()}): nothing to do here; "
            "migrate with the newer release"
        )
        self.revision = revision


async def schema_revision(engine: AsyncEngine) -> str | None:
    """The migration the database is at; None when it was never migrated.

    Read with plain SQL: Alembic's MigrationContext logs two lines each time it is made."""
    async with engine.connect() as connection:
        if await connection.scalar(text("SELECT to_regclass('alembic_version')")) is None:
            return None
        revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        return None if revision is None else str(revision)


@dataclass(frozen=True, slots=True)
class Migrated:
    """What `migrate` did."""

    database: str
    created: bool
    applied: tuple[str, ...]
    revision: str

    def summary(self) -> str:
        if not self.created and not self.applied:
            return (
                f"database {self.database} is at the newest migration ({self.revision}); "
                "nothing to do"
            )
        count = f"{len(self.applied)} migration{'' if len(self.applied) == 1 else 's'}"
        done = f"applied {count} ({', '.join(self.applied)})" if self.applied else "applied none"
        created = f"created database {self.database}, " if self.created else ""
        return f"{created}{done}; database {self.database} is at {self.revision}"


def _upgrade(connection: Connection) -> tuple[str, ...]:
    """Apply the missing migrations; returns their ids, oldest first."""
    # Held until the migration's transaction ends.
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    config = _alembic_config(connection)
    before = MigrationContext.configure(connection).get_current_revision()
    if schema_state(before) == "ahead":
        assert before is not None
        raise SchemaAhead(before)
    command.upgrade(config, "head")
    applied = _migrations().iterate_revisions(newest_revision(), before or "base")
    return tuple(reversed([revision.revision for revision in applied]))


async def migrate(database_url: str) -> Migrated:
    """Create the database if needed and apply every migration not applied yet."""
    created = await create_database(database_url)
    engine = create_async_engine(async_url(database_url), pool_size=1)
    try:
        async with engine.connect() as connection:
            applied = await connection.run_sync(_upgrade)
            await connection.commit()
    finally:
        await engine.dispose()
    name = make_url(database_url).database or ""
    return Migrated(name, created, applied, newest_revision())
