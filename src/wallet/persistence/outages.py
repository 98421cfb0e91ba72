"""A server this process depends on, lost and found again: one log line each way.

A request, a probe or a worker's loop that finds PostgreSQL or Redis gone says so once, naming
the server by address, rather than logging a traceback each time; the tracebacks of the
failures that follow go to the debug level. When the server answers again, one line says so.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from wallet.persistence.database import is_unavailable


def address(url: str) -> str:
    """Where a server is, without its credentials: `host:port`, or a Unix socket's path."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    default_port = {"redis": 6379, "rediss": 6379}.get(parts.scheme, 5432)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or default_port}"


def describe(error: BaseException) -> str:
    """An error in one line: the type and the first line of the message of the error it
    came from (SQLAlchemy's and redis-py's wrappers say less than asyncpg's or the socket's)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class Outage:
    """Whether `server` ("PostgreSQL at 127.0.0.1:5432") is known to be away, and the lines
    that say so."""

    def __init__(self, server: str, log: logging.Logger, *, meanwhile: str = "") -> None:
        self.server = server
        self.down = False
        self._log = log
        # What the process does until the server is back, appended to the line.
        self._meanwhile = meanwhile

    def lost(self, error: BaseException | str) -> None:
        reason = error if isinstance(error, str) else describe(error)
        if not self.down:
            self.down = True
            meanwhile = f"; {self._meanwhile}" if self._meanwhile else ""
            self._log.error("%s is unavailable (%s)%s", self.server, reason, meanwhile)
        if isinstance(error, BaseException):
            self._log.debug("%s: %s", self.server, reason, exc_info=error)

    def back(self) -> None:
        if self.down:
            self.down = False
            self._log.info("%s answers again", self.server)


class PostgresOutage(Outage):
    """PostgreSQL's outage, and whether its schema is known to be behind this code (readiness
    looks): a missing table or column is then the outage too, and a bug otherwise."""

    def __init__(
        self,
        server: str,
        log: logging.Logger,
        *,
        meanwhile: str = "",
        schema_behind: bool | None = False,
    ) -> None:
        super().__init__(server, log, meanwhile=meanwhile)
        # None until readiness has looked: a request racing its first look at a database never
        # migrated is answered 503 too, not "Internal error.".
        self.schema_behind = schema_behind

    def explains(self, error: BaseException) -> bool:
        """Whether the error is this outage's doing rather than a bug."""
        return is_unavailable(error, schema_behind=self.schema_behind is not False)


def postgres_outage(
    database_url: str,
    log: logging.Logger,
    *,
    meanwhile: str,
    schema_behind: bool | None = False,
) -> PostgresOutage:
    """PostgreSQL, named the same way by every process: address and database."""
    database = urlsplit(database_url).path.lstrip("/") or "postgres"
    return PostgresOutage(
        f"PostgreSQL at {address(database_url)} (database {database})",
        log,
        meanwhile=meanwhile,
        schema_behind=schema_behind,
    )


def redis_outage(redis_url: str, log: logging.Logger, *, meanwhile: str) -> Outage:
    return Outage(f"Redis at {address(redis_url)}", log, meanwhile=meanwhile)
