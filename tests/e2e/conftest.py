"""One `wallet serve` for the whole run, spoken to over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests import tokens
from tests.client import Api
from tests.processes import api_server


@pytest.fixture
def env(service_env: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """The run's environment with a Redis prefix of this test's own: its own queue, channels
    and rate-limit counters, for tests that start their own processes."""
    prefix = f"{service_env['WALLET_REDIS_PREFIX']}-{request.node.name}"
    return {**service_env, "WALLET_REDIS_PREFIX": prefix}


@pytest.fixture(scope="session")
def api_url(service_env: dict[str, str]) -> Iterator[str]:
    """The GraphQL URL of a `wallet serve` on a free port, stopped at the end of the run.

    Withdrawals and transfers are settled inside the request (no worker runs); the tests
    still wait for a PENDING transaction to end, so they hold when a worker settles them.
    """
    env = {
        **service_env,
        "WALLET_REDIS_PREFIX": f"{service_env['WALLET_REDIS_PREFIX']}-e2e",
        "WALLET_SETTLE_INLINE": "1",
    }
    with api_server(env) as server:
        yield server.url


@pytest.fixture(scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    # The tester's token, for the tests that post to the API without the client.
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=tokens.header()) as client:
        yield client


@pytest.fixture(scope="session")
def api(client: httpx.AsyncClient, api_url: str) -> Api:
    return Api(client, api_url)
