"""Which database errors mean PostgreSQL went away (worth waiting out), and which do not."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tests.processes import free_port
from wallet.persistence.database import is_disconnect, is_unavailable
from wallet.persistence.outages import postgres_outage


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


async def _refused_by_a_closed_port() -> OSError:
    """What asyncpg raises when nothing listens where PostgreSQL should."""
    try:
        await asyncpg.connect(host="127.0.0.1", port=free_port(), user="wallet", timeout=5)
    except OSError as error:
        return error
    pytest.fail("something listens on a free port")


async def _redis_refused_by_a_closed_port() -> Exception:
    """What redis-py raises there: its own ConnectionError, raised from the socket's OSError."""
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=5)
    try:
        await client.ping()
    except RedisConnectionError as error:
        return error
    finally:
        await client.aclose()
    pytest.fail("something listens on a free port")


@pytest.mark.timeout(10)
async def test_postgresql_refusing_connections_is_unavailable_raw_wrapped_or_raised_from() -> None:
    refused = await _refused_by_a_closed_port()
    assert is_unavailable(refused)
    assert is_unavailable(_through_sqlalchemy(asyncpg.CannotConnectNowError("starting up")))
    assert is_unavailable(_through_sqlalchemy(asyncpg.InvalidCatalogNameError("no database")))
    with pytest.raises(RuntimeError) as raised:
        raise RuntimeError("could not open the unit of work") from refused
    assert is_unavailable(raised.value)


@pytest.mark.timeout(10)
async def test_redis_refusing_connections_is_not_postgresql_unavailable() -> None:
    refused = await _redis_refused_by_a_closed_port()
    # Raised while handling the socket's OSError: what made the old check count it.
    assert isinstance(refused.__cause__ or refused.__context__, OSError)
    assert not is_unavailable(refused)


@pytest.mark.timeout(10)
async def test_an_error_raised_while_handling_an_outage_is_a_bug_not_the_outage() -> None:
    refused = await _refused_by_a_closed_port()

    def look_up_after(error: OSError) -> None:
        try:
            raise error
        except OSError:
            {}["missing"]

    with pytest.raises(KeyError) as raised:
        look_up_after(refused)
    assert raised.value.__context__ is refused
    assert not is_unavailable(raised.value)


NOT_AN_OUTAGE = [
    TimeoutError(),
    PermissionError(13, "Permission denied"),
    ConnectionRefusedError(111, "Connection refused"),  # raised by something other than asyncpg
    KeyError("wallet"),
    PoolTimeout("QueuePool limit of size 16 overflow 4 reached"),
    _through_sqlalchemy(asyncpg.UniqueViolationError("duplicate key value")),
    _through_sqlalchemy(asyncpg.UndefinedTableError('relation "walets" does not exist')),
    _through_sqlalchemy(asyncpg.UndefinedColumnError('column "amout" does not exist')),
]


@pytest.mark.parametrize("error", NOT_AN_OUTAGE, ids=lambda e: type(e).__name__)
@pytest.mark.timeout(5)
def test_other_failures_are_not_postgresql_unavailable(error: Exception) -> None:
    assert not is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [asyncpg.UndefinedTableError("no table"), asyncpg.UndefinedColumnError("no column")],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.timeout(5)
def test_a_missing_table_or_column_is_unavailable_only_while_the_schema_is_behind(
    error: Exception,
) -> None:
    assert not is_unavailable(_through_sqlalchemy(error), schema_behind=False)
    assert is_unavailable(_through_sqlalchemy(error), schema_behind=True)


@pytest.mark.parametrize(
    ("schema_behind", "outage"),
    [(True, True), (None, True), (False, False)],
    ids=["behind", "not looked at yet", "current"],
)
@pytest.mark.timeout(5)
def test_the_api_answers_a_missing_table_503_unless_readiness_found_the_schema_current(
    schema_behind: bool | None, outage: bool
) -> None:
    postgres = postgres_outage(
        "postgresql://127.0.0.1/wallet",
        logging.getLogger("test"),
        meanwhile="",
        schema_behind=schema_behind,
    )
    missing = _through_sqlalchemy(asyncpg.UndefinedTableError('relation "walets" does not exist'))
    assert postgres.explains(missing) is outage
