"""A hostile or careless client cannot knock the API over; operators can see inside it."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import httpx
import pytest

from tests import tokens
from tests.processes import api_server, private_redis
from tests.waits import eventually

pytestmark = pytest.mark.slow

TYPENAME = {"query": "{ __typename }"}


async def test_a_burst_from_one_client_is_limited_and_another_client_is_not(
    env: dict[str, str],
) -> None:
    # Clients are told apart by the caller their token names, whatever their address.
    limited = {
        "WALLET_RATE_LIMITS_ENABLED": "true",
        "WALLET_RATE_LIMIT": "10/minute",
        "WALLET_MUTATION_RATE_LIMIT": "3/minute",
    }
    with api_server(env, **limited) as api:
        async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
            greedy = tokens.header(tokens.mint(tokens.caller("greedy")))
            statuses = [
                (await client.post(api.url, json=TYPENAME, headers=greedy)).status_code
                for _ in range(12)
            ]
            assert statuses[:10] == [200] * 10
            refused = await client.post(api.url, json=TYPENAME, headers=greedy)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"

            polite = tokens.header(tokens.mint(tokens.caller("polite")))
            other = await client.post(api.url, json=TYPENAME, headers=polite)
            assert other.status_code == 200

            mutation = {
                "query": "mutation { createWallet(input: {}) { wallet { id } } }",
            }
            careful = tokens.header(tokens.mint(tokens.caller("careful")))
            made = [
                (await client.post(api.url, json=mutation, headers=careful)).status_code
                for _ in range(4)
            ]
            assert made == [200, 200, 200, 429], "mutations have a stricter limit of their own"


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(
            '{ wallet(id: "x") { transactions { edges { node { senderWallet { transactions'
            " { edges { node { senderWallet { transactions { edges { node { id } } } } } } }"
            " } } } } } }",
            id="depth",
        ),
        pytest.param("{ " + " ".join(f"a{i}: __typename" for i in range(200)) + " }", id="aliases"),
        pytest.param("{ " + "__typename " * 5000 + "}", id="tokens"),
        pytest.param("{" * 3000 + "}" * 3000, id="nesting"),
    ],
)
async def test_query_bombs_are_refused_without_a_server_error(
    env: dict[str, str], query: str
) -> None:
    with api_server(env) as api:
        async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
            response = await client.post(api.url, json={"query": query})
    assert response.status_code < 500
    assert response.status_code >= 400 or response.json()["errors"]


async def test_a_body_over_the_cap_is_refused_with_413(env: dict[str, str]) -> None:
    with api_server(env, WALLET_MAX_BODY_BYTES="4096") as api:
        async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
            big = {"query": "{ __typename }", "variables": {"pad": "x" * 5000}}
            response = await client.post(api.url, json=big)

            async def chunks() -> AsyncIterator[bytes]:  # no content-length: sent chunked
                for chunk in (b'{"query": "', b"a" * 5000, b'"}'):
                    yield chunk

            streamed = await client.post(
                api.url, content=chunks(), headers={"content-type": "application/json"}
            )
            fine = await client.post(api.url, json=TYPENAME)
    assert response.status_code == 413
    assert streamed.status_code == 413
    assert fine.status_code == 200


async def test_introspection_can_be_switched_off(env: dict[str, str]) -> None:
    with api_server(env, WALLET_INTROSPECTION="false") as api:
        async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
            response = await client.post(api.url, json={"query": "{ __schema { types { name } } }"})
    assert response.status_code < 500
    assert response.json()["errors"]


async def test_readyz_follows_redis_down_and_back(env: dict[str, str]) -> None:
    with private_redis() as redis:
        own = {**env, "REDIS_URL": redis.url}
        with api_server(own) as api:
            base = api.url.removesuffix("/graphql")
            async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:

                async def readyz(status: int) -> httpx.Response | None:
                    response = await client.get(f"{base}/readyz")
                    return response if response.status_code == status else None

                assert (await client.get(f"{base}/readyz")).status_code == 200
                assert (await client.get(f"{base}/healthz")).status_code == 200
                redis.stop(signal.SIGKILL)
                # /readyz answers from a report up to a second old.
                down = await eventually(lambda: readyz(503), "/readyz saying 503", 5, every=0.2)
                body = down.json()
                assert (body["postgres"], body["migrations"], body["redis"]) == ("ok", "ok", "down")
                assert body["problems"][0].startswith("Redis at 127.0.0.1:")
                assert (await client.get(f"{base}/healthz")).status_code == 200
                # Reads go on without Redis.
                assert (await client.post(api.url, json=TYPENAME)).status_code == 200
                redis.restart()
                await eventually(lambda: readyz(200), "/readyz recovering", 10, every=0.2)


async def test_metrics_and_request_ids_are_exposed(env: dict[str, str]) -> None:
    with api_server(env) as api:
        base = api.url.removesuffix("/graphql")
        async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
            response = await client.post(
                api.url,
                json={"query": "query Probe { __typename }", "operationName": "Probe"},
                headers={"x-request-id": "trace-123"},
            )
            assert response.headers["x-request-id"] == "trace-123"
            generated = await client.post(api.url, json=TYPENAME)
            assert len(generated.headers["x-request-id"]) == 32
            page = (await client.get(f"{base}/metrics")).text
    assert 'wallet_graphql_request_seconds_count{operation="Probe",type="query"} 1.0' in page
    for family in (
        "wallet_transactions",
        "wallet_pending_transactions",
        "wallet_oldest_pending_seconds",
        "wallet_active_holds",
        "wallet_overdue_hold_seconds",
        "wallet_queue_waiting_jobs",
        "wallet_cache_hits",
    ):
        assert f"# TYPE {family} gauge" in page, family
