"""Shared fixtures: every test run gets its own PostgreSQL database and its own Redis prefix."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from wallet.domain.ports import UnitOfWorkFactory
from wallet.persistence.database import create_engine, drop_database, migrate
from wallet.persistence.unit_of_work import SqlUnitOfWork

RUN_ID = uuid.uuid4().hex[:10]
BASE_DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/wallet")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN_ID


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_prefix() -> str:
    return f"wallet-test-{RUN_ID}"


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    url = make_url(BASE_DATABASE_URL).set(database=f"wallet_test_{RUN_ID}")
    rendered = url.render_as_string(hide_password=False)
    await migrate(rendered)
    yield rendered
    await drop_database(rendered)


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
    """The environment for a `wallet` process of this test run."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WALLET_REDIS_PREFIX=redis_prefix,
    )
    return env
