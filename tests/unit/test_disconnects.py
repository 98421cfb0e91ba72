"""Which database errors mean PostgreSQL went away (worth waiting out), and which do not."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from wallet.persistence.database import is_disconnect


class _DriverError(Exception):
    """What SQLAlchemy's asyncpg adapter raises: asyncpg's own error is its cause."""


def _through_sqlalchemy(error: Exception) -> DBAPIError:
    driver = _DriverError(str(error))
    driver.__cause__ = error
    return DBAPIError("SELECT 1", None, driver)


GONE = [
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    ConnectionRefusedError(111, "Connection refused"),
]
REFUSED = [
    asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
    asyncpg.CheckViolationError("new row violates check constraint"),
    asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
]


@pytest.mark.parametrize("error", GONE, ids=lambda e: type(e).__name__)
def test_postgresql_gone_is_a_disconnect_raw_or_wrapped(error: Exception) -> None:
    assert is_disconnect(error)
    assert is_disconnect(_through_sqlalchemy(error))


@pytest.mark.parametrize("error", REFUSED, ids=lambda e: type(e).__name__)
def test_a_statement_refused_or_cancelled_is_not_a_disconnect(error: Exception) -> None:
    assert not is_disconnect(error)
    assert not is_disconnect(_through_sqlalchemy(error))
