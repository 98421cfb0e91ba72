"""Rate limits count the work a client asks for, and the client cannot choose its own counter."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets

from tests import tokens
from tests.client import Api
from tests.hostile.conftest import healthz_watched
from tests.processes import api_server

pytestmark = pytest.mark.timeout(90)

TYPENAME = {"query": "{ __typename }"}


def deposit(wallet: str) -> str:
    """One deposit of 1.00 under a fresh key, as a field of a mutation."""
    key = uuid.uuid4()
    return (
        f'deposit(input: {{walletId: "{wallet}", amount: "1.00", clientTransactionId: "{key}"}})'
        " { transaction { id } errors { code } }"
    )


def aliased_deposits(wallet: str, count: int) -> str:
    return "mutation { " + " ".join(f"d{i}: {deposit(wallet)}" for i in range(count)) + " }"


async def test_thirty_aliased_deposits_count_as_thirty_mutations(env: dict[str, str]) -> None:
    limits = {"WALLET_RATE_LIMITS_ENABLED": "true", "WALLET_MUTATION_RATE_LIMIT": "40/minute"}
    with api_server(env, **limits) as api:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            wallet = await Api(client, api.url).new_wallet("0")
            first = await client.post(api.url, json={"query": aliased_deposits(wallet, 30)})
            second = await client.post(api.url, json={"query": aliased_deposits(wallet, 30)})
            balance = await Api(client, api.url).balance(wallet)
    assert first.status_code == 200
    assert all(not payload["errors"] for payload in first.json()["data"].values())
    assert second.status_code == 429
    assert second.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert balance == "30.00", "the refused request wrote nothing"


async def test_mutations_over_one_websocket_count_against_the_limit_one_by_one(
    env: dict[str, str],
) -> None:
    limits = {"WALLET_RATE_LIMITS_ENABLED": "true", "WALLET_MUTATION_RATE_LIMIT": "5/minute"}
    with api_server(env, **limits) as api:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            wallet = await Api(client, api.url).new_wallet("0")  # the first of the five
            url = api.url.replace("http://", "ws://")
            answers: dict[str, str] = {}
            async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": tokens.header()}))
                assert json.loads(await ws.recv())["type"] == "connection_ack"
                for n in range(10):
                    query = "mutation { " + deposit(wallet) + " }"
                    frame = {"id": str(n), "type": "subscribe", "payload": {"query": query}}
                    await ws.send(json.dumps(frame))
                async with asyncio.timeout(30):
                    while len(answers) < 10:
                        message = json.loads(await ws.recv())
                        if message["type"] == "next":
                            answers[message["id"]] = "applied"
                        elif message["type"] == "error":
                            answers[message["id"]] = message["payload"][0]["extensions"]["code"]
            balance = await Api(client, api.url).balance(wallet)
    assert sorted(answers.values()) == ["RATE_LIMITED"] * 6 + ["applied"] * 4
    assert balance == "4.00"


async def test_a_new_api_key_for_each_request_does_not_escape_the_limit(
    env: dict[str, str],
) -> None:
    limits = {"WALLET_RATE_LIMITS_ENABLED": "true", "WALLET_RATE_LIMIT": "5/minute"}
    with api_server(env, **limits) as api:  # its readiness check was the first request
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            statuses = [
                (
                    await client.post(api.url, json=TYPENAME, headers={"x-api-key": str(n)})
                ).status_code
                for n in range(6)
            ]
    assert statuses == [200] * 4 + [429] * 2


async def test_a_fresh_x_forwarded_for_never_buys_a_fresh_budget_the_caller_is_counted(
    env: dict[str, str],
) -> None:
    limits = {"WALLET_RATE_LIMITS_ENABLED": "true", "WALLET_RATE_LIMIT": "5/minute"}
    proxied = {**limits, "WALLET_FORWARDED_ALLOW_IPS": '["127.0.0.1"]'}
    seen: list[list[int]] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for n, settings in enumerate((limits, proxied)):
            prefix = f"{env['WALLET_REDIS_PREFIX']}-xff-{n}"
            with api_server({**env, "WALLET_REDIS_PREFIX": prefix}, **settings) as api:
                caller = tokens.header(tokens.mint(tokens.caller("client")))
                seen.append(
                    [
                        (
                            await client.post(
                                api.url,
                                json=TYPENAME,
                                headers={**caller, "x-forwarded-for": f"192.0.2.{hop}"},
                            )
                        ).status_code
                        for hop in range(6)
                    ]
                )
                # Another caller from the very same address has a budget of its own.
                other = tokens.header(tokens.mint(tokens.caller("other")))
                assert (await client.post(api.url, json=TYPENAME, headers=other)).status_code == 200
    assert seen == [[200] * 5 + [429]] * 2, "untrusted and trusted proxies alike"


async def test_more_mutations_in_one_request_than_any_second_allows_are_refused_for_good(
    env: dict[str, str],
) -> None:
    # The default limits: 20 mutations a second, 30 aliases a document.
    with api_server(env, WALLET_RATE_LIMITS_ENABLED="true") as api:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            wallet = await Api(client, api.url).new_wallet("0")
            refused = await client.post(api.url, json={"query": aliased_deposits(wallet, 21)})
            url = api.url.replace("http://", "ws://")
            async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": tokens.header()}))
                assert json.loads(await ws.recv())["type"] == "connection_ack"
                payload = {"query": aliased_deposits(wallet, 21)}
                await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                async with asyncio.timeout(30):
                    frame = json.loads(await ws.recv())
            # The per-second windows (sliding: the previous one weighs too) forget the wallet.
            await asyncio.sleep(2)
            allowed = await client.post(api.url, json={"query": aliased_deposits(wallet, 20)})
            balance = await Api(client, api.url).balance(wallet)
    message = (
        "a request may run at most 20 mutations (WALLET_MUTATION_RATE_LIMIT); this one runs 21"
    )
    assert refused.status_code == 400
    assert "retry-after" not in refused.headers
    assert refused.json()["errors"] == [
        {"message": message, "extensions": {"code": "TOO_MANY_MUTATIONS"}}
    ]
    assert frame["type"] == "error"
    assert frame["payload"][0]["extensions"]["code"] == "TOO_MANY_MUTATIONS"
    assert allowed.status_code == 200
    assert balance == "20.00", "only the request within the limit wrote"


def _unparsed(n: int) -> dict[str, str]:
    """60 KB of text no cache has seen, over the token limit."""
    return {"query": f"# {n} {uuid.uuid4()}\n{{ " + "__typename " * 5400 + "}"}


async def test_a_client_over_the_request_limit_costs_no_parse_of_its_documents(
    env: dict[str, str],
) -> None:
    limits = {"WALLET_RATE_LIMITS_ENABLED": "true", "WALLET_RATE_LIMIT": "3/minute"}
    with api_server(env, **limits) as api:  # its readiness check was the first request
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            admitted = [(await client.post(api.url, json=_unparsed(n))).status_code for n in (0, 1)]
            with healthz_watched(api) as watch:
                refused = [
                    (await client.post(api.url, json=_unparsed(n))).status_code
                    for n in range(2, 32)
                ]
    assert admitted == [200, 200], "GraphQL itself refused them, over the token limit"
    assert refused == [429] * 30
    # Parsing each in full took 70 ms of CPU: 2.1 s for the 30.
    assert watch.cpu < 0.6, f"{watch.cpu * 1000:.0f} ms of CPU for 30 refused requests"


async def test_the_mutation_windows_behave_as_the_readme_says(env: dict[str, str]) -> None:
    # 20/second as sliding-window counters: 20 at once pass; the next 20 wait until the first
    # have left the window, one to two seconds; a steady rate under the limit always passes.
    # A Redis slow to answer (a busy machine) lets requests through: give it time.
    settings = {"WALLET_RATE_LIMITS_ENABLED": "true", "WALLET_REDIS_TIMEOUT": "5"}
    with api_server(env, **settings) as api:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            wallet = await Api(client, api.url).new_wallet("0")
            steady = []
            for _ in range(20):  # 10 a second
                body = {"query": aliased_deposits(wallet, 1)}
                steady.append((await client.post(api.url, json=body)).status_code)
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.1)  # all of them out of the window
            at_once = await client.post(api.url, json={"query": aliased_deposits(wallet, 20)})
            again = await client.post(api.url, json={"query": aliased_deposits(wallet, 20)})
            await asyncio.sleep(2.1)
            later = await client.post(api.url, json={"query": aliased_deposits(wallet, 20)})
    assert at_once.status_code == 200
    assert again.status_code == 429
    assert 1 <= int(again.headers["retry-after"]) <= 2
    assert later.status_code == 200
    assert steady == [200] * 20
