"""Readiness against the real servers: its probes never wait behind requests, callers share
one look, and a database migrated by a newer release is served on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from wallet.bootstrap import Resources, open_resources
from wallet.config import Settings
from wallet.persistence.database import drop_database, migrate
from wallet.web.readiness import Readiness, postgres_outage, redis_outage

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def _readiness(database_url: str, redis_url: str) -> AsyncIterator[Readiness]:
    settings = Settings(database_url=database_url, redis_url=redis_url, database_pool_size=1)
    async with open_resources(settings) as resources:
        readiness = Readiness(
            resources, postgres_outage(database_url), redis_outage(redis_url), detailed=True
        )
        watcher = asyncio.create_task(readiness.watch(interval=3600))
        try:
            yield readiness
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


@contextlib.asynccontextmanager
async def _every_request_connection_taken(resources: Resources) -> AsyncIterator[None]:
    """Hold all the connections of the requests' pool (its size and its overflow)."""
    async with contextlib.AsyncExitStack() as stack:
        held: list[AsyncConnection] = []
        while True:
            try:
                async with asyncio.timeout(2):
                    held.append(await stack.enter_async_context(resources.engine.connect()))
            except TimeoutError:
                break
        assert held
        yield


async def test_readiness_answers_while_every_connection_of_the_requests_pool_is_busy(
    database_url: str, redis_url: str
) -> None:
    async with (
        _readiness(database_url, redis_url) as readiness,
        _every_request_connection_taken(readiness._resources),
    ):
        report = await readiness.check()
    assert report.ready, report.problems
    assert not readiness.postgres.down


async def test_callers_at_the_same_time_or_within_a_second_share_one_look(
    database_url: str, redis_url: str
) -> None:
    async with _readiness(database_url, redis_url) as readiness:
        await asyncio.sleep(0)
        reports = await asyncio.gather(*(readiness.current() for _ in range(20)))
        again = await readiness.current()
    assert all(report is reports[0] for report in reports)
    assert again is reports[0]
    assert again.ready


@pytest.fixture
async def newer_database(database_url: str) -> AsyncIterator[str]:
    """A database a newer release migrated: at a migration this code does not know."""
    name = f"{make_url(database_url).database}_newer_{uuid.uuid4().hex[:6]}"
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    await migrate(url)
    settings = Settings(database_url=url)
    async with open_resources(settings) as resources, resources.engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeedbeef'"))
    yield url
    await drop_database(url)


async def test_a_database_newer_than_the_code_is_ahead_ready_and_said_once(
    newer_database: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wallet")
    async with _readiness(newer_database, redis_url) as readiness:
        first = await readiness.check()
        second = await readiness.check()
    for report in (first, second):
        assert (report.postgres, report.migrations, report.ready) == ("ok", "ahead", True)
    said = [r for r in caplog.records if "newer than this release" in r.getMessage()]
    assert len(said) == 1
    assert said[0].levelno == logging.WARNING
    assert "f00dfeedbeef" in said[0].getMessage()
    assert readiness.postgres.schema_behind is False
