"""A service started against a PostgreSQL or Redis that is away, missing or never migrated says
so in one line naming the server by address, answers with the right status, and exits with the
right code; it never answers "Internal error." or logs a traceback for it.

Servers that are "away" are closed ports on this machine: nothing here stops the shared ones.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests import tokens
from tests.client import Api
from tests.faults.servers import PostgresServer
from tests.processes import (
    WALLET,
    Process,
    api_server,
    free_port,
    private_redis,
    start,
    wait_until,
)
from tests.waits import eventually
from wallet.persistence.database import create_database, drop_database, migrate, newest_revision

CREATE_WALLET = 'mutation { createWallet(input: {currency: "USD"}) { wallet { id } } }'


def _lines(process: Process, level: str, text: str) -> list[dict[str, Any]]:
    """The JSON log lines at `level` whose message contains `text`."""
    found = []
    for line in process.output().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("level") == level and text in entry.get("message", ""):
            found.append(entry)
    return found


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    """A database that exists and was never migrated."""
    name = f"{make_url(database_url).database}_empty_{uuid.uuid4().hex[:6]}"
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    assert await create_database(url)
    yield url
    await drop_database(url)


def _wallet_migrate(env: dict[str, str], database_url: str) -> subprocess.CompletedProcess[str]:
    """`wallet migrate` run as an operator would, against `database_url`."""
    return subprocess.run(
        [WALLET, "migrate"],
        env={**env, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _closed_postgres() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/wallet"


async def test_a_never_migrated_database_is_not_ready_and_requests_get_503_not_internal_error(
    env: dict[str, str], empty_database: str
) -> None:
    with api_server({**env, "DATABASE_URL": empty_database}) as api:
        base = api.url.removesuffix("/graphql")
        async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
            ready = await client.get(f"{base}/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert (body["postgres"], body["migrations"], body["redis"]) == ("ok", "behind", "ok")
            assert "run `wallet migrate`" in body["problems"][0]

            for _ in range(3):
                response = await client.post(api.url, json={"query": CREATE_WALLET})
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"].isdigit()
                [error] = response.json()["errors"]
                assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
                assert "Internal error" not in error["message"]

            migrate = _wallet_migrate(env, empty_database)
            assert migrate.returncode == 0, migrate.stderr
            # /readyz answers from a report up to a second old.

            async def ready() -> bool:
                return (await client.get(f"{base}/readyz")).status_code == 200

            await eventually(ready, "/readyz once migrated", 5, every=0.2)
            response = await client.post(api.url, json={"query": CREATE_WALLET})
            assert response.status_code == 200
            assert response.json()["data"]["createWallet"]["wallet"]["id"]

    behind = _lines(api, "ERROR", f"the newest is {newest_revision()}: run `wallet migrate`")
    assert len(behind) == 1, api.output()
    assert len(_lines(api, "ERROR", "is unavailable")) == 1, api.output()
    assert "Traceback" not in api.output()


async def test_with_postgresql_unreachable_requests_get_503_and_the_outage_is_logged_once(
    env: dict[str, str],
) -> None:
    database_url = _closed_postgres()
    port = make_url(database_url).port
    with api_server({**env, "DATABASE_URL": database_url}) as api:
        base = api.url.removesuffix("/graphql")
        async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
            for _ in range(5):
                response = await client.post(api.url, json={"query": CREATE_WALLET})
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "5"
                assert response.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
            ready = await client.get(f"{base}/readyz")
            assert ready.status_code == 503
            assert ready.json()["postgres"] == "down"
            assert f"127.0.0.1:{port}" in ready.json()["problems"][0]
            # What needs no database still answers.
            typename = await client.post(api.url, json={"query": "{ __typename }"})
            assert typename.status_code == 200
    lines = _lines(api, "ERROR", f"PostgreSQL at 127.0.0.1:{port}")
    assert len(lines) == 1, api.output()
    assert "is unavailable (ConnectionRefusedError" in lines[0]["message"]
    assert "Traceback" not in api.output()


def test_wallet_migrate_with_postgresql_unreachable_prints_one_line_and_exits_1(
    env: dict[str, str],
) -> None:
    database_url = _closed_postgres()
    result = _wallet_migrate(env, database_url)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"wallet migrate: PostgreSQL at 127.0.0.1:{make_url(database_url).port}")
    assert "refused" in line.lower()


async def test_wallet_migrate_says_what_it_did_then_that_there_was_nothing_to_do(
    env: dict[str, str], database_url: str
) -> None:
    name = f"{make_url(database_url).database}_migrate_{uuid.uuid4().hex[:6]}"
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)

    def migrate() -> str:
        result = _wallet_migrate(env, url)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    try:
        first = migrate()
        second = migrate()
    finally:
        await drop_database(url)
    newest = newest_revision()
    # Revisions are numbered from 0001, one after another.
    applied = int(newest)
    assert first.startswith(
        f"wallet migrate: created database {name}, applied {applied} migrations"
    )
    assert first.endswith(f"database {name} is at {newest}")
    assert second == (
        f"wallet migrate: database {name} is at the newest migration ({newest}); nothing to do"
    )


def _worker(env: dict[str, str]) -> Process:
    """A `wallet worker` logging at debug level, not waited for: it may never listen."""
    return start([WALLET, "worker", "--log-level", "debug"], env, "wallet worker", _started)


def _started(_process: Process) -> bool:
    return True


def test_a_worker_without_redis_names_it_once_and_says_when_it_is_back(
    env: dict[str, str],
) -> None:
    with private_redis() as redis:
        port = redis.url.rsplit(":", 1)[1].split("/")[0]
        where = f"Redis at 127.0.0.1:{port}"
        worker = _worker({**env, "REDIS_URL": redis.url})
        try:
            wait_until(lambda: _lines(worker, "INFO", "worker listening"), 30, "the worker")
            redis.stop()
            wait_until(lambda: _lines(worker, "ERROR", where), 30, "the worker's line")
            # It keeps trying (each failure at debug level), and says nothing more meanwhile.
            wait_until(lambda: len(_lines(worker, "DEBUG", where)) >= 3, 30, "retries")
            redis.restart()
            wait_until(lambda: _lines(worker, "INFO", f"{where} answers again"), 30, "back")
            wait_until(lambda: len(_lines(worker, "INFO", "worker listening")) >= 2, 30, "again")
        finally:
            worker.stop()
    [lost] = _lines(worker, "ERROR", where)
    assert "is unavailable" in lost["message"], worker.output()


def test_a_worker_without_postgresql_names_it_and_takes_no_jobs(env: dict[str, str]) -> None:
    database_url = _closed_postgres()
    worker = _worker({**env, "DATABASE_URL": database_url})
    where = f"PostgreSQL at 127.0.0.1:{make_url(database_url).port}"
    try:
        wait_until(lambda: len(_lines(worker, "DEBUG", where)) >= 3, 30, "the worker's retries")
    finally:
        worker.stop()
    [lost] = _lines(worker, "ERROR", where)
    assert "is unavailable (ConnectionRefusedError" in lost["message"]
    assert not _lines(worker, "INFO", "worker listening"), worker.output()


async def test_in_production_readyz_says_what_is_down_without_naming_hosts(
    env: dict[str, str],
) -> None:
    production = {**env, "DATABASE_URL": _closed_postgres(), "WALLET_ENVIRONMENT": "production"}
    with api_server(production) as api:
        async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
            ready = await client.get(api.url.replace("/graphql", "/readyz"))
    assert ready.status_code == 503
    assert ready.json() == {"postgres": "down", "migrations": "unknown", "redis": "ok"}


async def test_transfers_made_while_redis_is_down_are_recorded_and_the_outage_logged_once(
    env: dict[str, str],
) -> None:
    with private_redis() as redis, api_server({**env, "REDIS_URL": redis.url}) as api:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            graphql = Api(client, api.url)
            sender = await graphql.new_wallet("10.00")
            receiver = await graphql.new_wallet()
            redis.stop()
            submitted = [await graphql.pending_transfer(sender, receiver) for _ in range(3)]
    assert len(set(submitted)) == 3  # recorded, PENDING: a worker's sweeper queues them later
    where = f"Redis at 127.0.0.1:{redis.url.rsplit(':', 1)[1].split('/')[0]}"
    assert len(_lines(api, "ERROR", where)) == 1, api.output()
    assert "could not queue" not in api.output()


async def test_wallet_migrate_against_a_database_newer_than_the_code_says_so_and_exits_1(
    env: dict[str, str], empty_database: str
) -> None:
    await migrate(empty_database)
    connection = await asyncpg.connect(empty_database)
    try:
        await connection.execute("UPDATE alembic_version SET version_num = 'f00dfeedbeef'")
    finally:
        await connection.close()
    result = _wallet_migrate(env, empty_database)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("wallet migrate: the database is at migration f00dfeedbeef, newer")
    assert newest_revision() in line


async def test_a_database_that_does_not_exist_is_named_in_one_line_and_requests_get_503(
    env: dict[str, str], database_url: str
) -> None:
    name = f"{make_url(database_url).database}_missing_{uuid.uuid4().hex[:6]}"
    missing = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    with api_server({**env, "DATABASE_URL": missing}) as api:
        base = api.url.removesuffix("/graphql")
        async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
            for _ in range(3):
                response = await client.post(api.url, json={"query": CREATE_WALLET})
                assert response.status_code == 503, response.text
                [error] = response.json()["errors"]
                assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
            ready = await client.get(f"{base}/readyz")
            assert ready.status_code == 503
            assert (ready.json()["postgres"], ready.json()["migrations"]) == ("down", "unknown")
    [line] = _lines(api, "ERROR", f"(database {name}) is unavailable")
    assert "InvalidCatalogNameError" in line["message"], api.output()
    assert f'database "{name}" does not exist' in line["message"]
    assert "Traceback" not in api.output()


def _back(process: Process, where: str) -> list[dict[str, Any]]:
    """The lines saying the server at `where` answers again."""
    lines = _lines(process, "INFO", f"{where} ")
    return [line for line in lines if line["message"].endswith("answers again")]


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own, which a test may stop and start at will."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
async def stoppable_database(private_postgres: PostgresServer) -> str:
    """A migrated database on the private PostgreSQL, running when the test starts."""
    if not private_postgres.ready():  # a test before this one stopped it and failed
        private_postgres.start()
    url = private_postgres.url(f"wallet_{uuid.uuid4().hex[:8]}")
    await migrate(url)
    return url


def _api_logging_info(env: dict[str, str]) -> Process:
    """`wallet serve` logging at info level, where "answers again" is said."""
    port = free_port()
    return start(
        [WALLET, "serve", "--port", str(port), "--log-level", "info"],
        {"WALLET_RATE_LIMITS_ENABLED": "false", **env},
        "wallet serve",
        lambda process: (
            httpx.post(
                process.url, json={"query": "{ __typename }"}, headers=tokens.header()
            ).is_success
        ),
        f"http://127.0.0.1:{port}/graphql",
    )


async def test_the_api_says_once_that_postgresql_is_lost_and_once_that_it_answers_again(
    env: dict[str, str], private_postgres: PostgresServer, stoppable_database: str
) -> None:
    where = f"PostgreSQL at 127.0.0.1:{private_postgres.port}"
    api = _api_logging_info({**env, "DATABASE_URL": stoppable_database})
    try:
        async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
            assert (await client.post(api.url, json={"query": CREATE_WALLET})).status_code == 200
            private_postgres.stop()
            wallet = {"query": CREATE_WALLET}
            response = await client.post(api.url, json=wallet)
            assert response.status_code == 503, response.text
            private_postgres.start()
            wait_until(lambda: _back(api, where), 30, "the api's line")

            async def served() -> bool:
                return (await client.post(api.url, json=wallet)).status_code == 200

            await eventually(served, "a wallet made once PostgreSQL is back", 30, every=0.2)
    finally:
        api.stop()
    [lost] = _lines(api, "ERROR", where)
    assert "is unavailable" in lost["message"], api.output()
    assert len(_back(api, where)) == 1, api.output()


def test_a_worker_says_once_that_postgresql_is_lost_and_once_that_it_answers_again(
    env: dict[str, str], private_postgres: PostgresServer, stoppable_database: str
) -> None:
    where = f"PostgreSQL at 127.0.0.1:{private_postgres.port}"
    worker = _worker({**env, "DATABASE_URL": stoppable_database})
    try:
        wait_until(lambda: _lines(worker, "INFO", "worker listening"), 30, "the worker")
        private_postgres.stop()
        # The sweeper looks every second: it finds PostgreSQL gone.
        wait_until(lambda: _lines(worker, "ERROR", where), 30, "the worker's line")
        private_postgres.start()
        wait_until(lambda: _back(worker, where), 30, "the worker's line")
    finally:
        worker.stop()
    [lost] = _lines(worker, "ERROR", where)
    assert "is unavailable" in lost["message"], worker.output()
    assert len(_back(worker, where)) == 1, worker.output()
