"""With WALLET_REQUIRE_TOKENS, every request names its caller with a bearer token, and each
caller meets only its own wallets: over HTTP and WebSocket, against a real `wallet serve`."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from tests.processes import WALLET, Process, free_port, start
from wallet.config import Settings
from wallet.web.tokens import issue_token

SECRET = "callers-e2e-" + "s" * 32


def token(subject: str, *scopes: str) -> str:
    return issue_token(Settings(jwt_secret=SECRET), subject, scopes, ttl=600)


def bearer(subject: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject, *scopes)}"}


@pytest.fixture(scope="module")
def server(service_env: dict[str, str]) -> Iterator[Process]:
    port = free_port()
    env = {
        **service_env,
        "WALLET_REDIS_PREFIX": f"{service_env['WALLET_REDIS_PREFIX']}-callers",
        "WALLET_SETTLE_INLINE": "1",
        "WALLET_RATE_LIMITS_ENABLED": "false",
        "WALLET_REQUIRE_TOKENS": "1",
        "WALLET_JWT_SECRET": SECRET,
    }
    url = f"http://127.0.0.1:{port}/graphql"
    process = start(
        [WALLET, "serve", "--port", str(port), "--log-level", "warning"],
        env,
        "wallet serve",
        lambda _: httpx.get(url.replace("/graphql", "/healthz")).status_code == 200,
        url,
    )
    try:
        yield process
    finally:
        process.stop()


def post(server: Process, query: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(server.url, json={"query": query}, headers=headers or {}, timeout=10)


def data(server: Process, query: str, headers: dict[str, str]) -> dict[str, Any]:
    response = post(server, query, headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return dict(body["data"])


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic abc"}],
    ids=["no token", "malformed", "not bearer"],
)
def test_a_request_without_a_valid_token_is_401_unauthenticated_and_runs_nothing(
    server: Process, headers: dict[str, str]
) -> None:
    response = post(server, "mutation { createWallet(input: {}) { wallet { id } } }", headers)

    assert response.status_code == 401
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "Bearer" in response.headers["www-authenticate"]


@pytest.mark.parametrize("key", ["query", "%71uery", "q%75ery"])
def test_a_query_in_the_address_runs_nothing_without_a_token_however_its_name_is_spelt(
    server: Process, key: str
) -> None:
    response = httpx.get(
        f"{server.url}?{key}=%7B__typename%7D", headers={"accept": "text/html"}, timeout=10
    )

    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_the_graphiql_page_itself_stays_open(server: Process) -> None:
    response = httpx.get(server.url, headers={"accept": "text/html"}, timeout=10)
    assert response.status_code == 200
    assert "<title>wallet: GraphiQL</title>" in response.text


def test_health_readiness_and_metrics_stay_open(server: Process) -> None:
    base = server.url.removesuffix("/graphql")
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/metrics").status_code == 200


def test_a_wallet_is_its_creator_s_and_to_anyone_else_does_not_exist(server: Process) -> None:
    alice, bob = bearer("alice-e2e"), bearer("bob-e2e")
    create = "mutation { createWallet(input: {}) { wallet { id } errors { code } } }"
    wallet_id = data(server, create, alice)["createWallet"]["wallet"]["id"]
    read = f'{{ wallet(id: "{wallet_id}") {{ id }} }}'

    assert data(server, read, alice) == {"wallet": {"id": wallet_id}}
    assert data(server, read, bob) == {"wallet": None}
    withdraw = (
        f'mutation {{ withdraw(input: {{walletId: "{wallet_id}", amount: "1", '
        'clientTransactionId: "w1"}) { errors { code } } }'
    )
    assert data(server, withdraw, bob)["withdraw"]["errors"] == [{"code": "WALLET_NOT_FOUND"}]


def test_a_deposit_without_the_deposit_scope_is_forbidden(server: Process) -> None:
    alice = bearer("alice-e2e")
    create = "mutation { createWallet(input: {}) { wallet { id } } }"
    wallet_id = data(server, create, alice)["createWallet"]["wallet"]["id"]
    deposit = (
        f'mutation {{ deposit(input: {{walletId: "{wallet_id}", amount: "5", '
        'clientTransactionId: "d1"}) { transaction { status } errors { code } } }'
    )

    assert data(server, deposit, alice)["deposit"]["errors"] == [{"code": "FORBIDDEN"}]
    funded = data(server, deposit, bearer("funder-e2e", "wallet:deposit"))["deposit"]
    assert funded == {"transaction": {"status": "COMPLETED"}, "errors": []}


async def test_a_websocket_without_a_valid_token_is_closed_with_4401(server: Process) -> None:
    socket_url = server.url.replace("http", "ws", 1)
    for init in (
        {"type": "connection_init"},
        {"type": "connection_init", "payload": {"Authorization": "Bearer x"}},
    ):
        async with websockets.connect(socket_url, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps(init))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4401


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_websocket_s_caller_is_named_once_a_second_connection_init_closes_it(
    server: Process, protocol: str
) -> None:
    socket_url = server.url.replace("http", "ws", 1)
    async with websockets.connect(socket_url, subprotocols=[protocol]) as ws:
        await ws.send(json.dumps(init_as("alice-e2e")))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps(init_as("mallory-e2e", "wallet:admin")))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(_until_closed(ws), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4429


async def _until_closed(ws: websockets.ClientConnection) -> None:
    """Read (keep-alives, acks) until the server closes the socket."""
    while True:
        await ws.recv()


def init_as(subject: str, *scopes: str) -> dict[str, Any]:
    return {"type": "connection_init", "payload": bearer(subject, *scopes)}


async def test_a_websocket_names_its_caller_in_connection_init_or_its_upgrade_header(
    server: Process,
) -> None:
    socket_url = server.url.replace("http", "ws", 1)
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token('alice-e2e')}"}}
    async with websockets.connect(socket_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
    async with websockets.connect(
        socket_url,
        subprotocols=["graphql-transport-ws"],
        additional_headers=bearer("alice-e2e"),
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"


def test_wallet_serve_requiring_tokens_without_keys_refuses_to_start_in_one_line(
    service_env: dict[str, str],
) -> None:
    env = {k: v for k, v in service_env.items() if not k.startswith("WALLET_JWT")}
    result = subprocess.run(
        [WALLET, "serve", "--port", str(free_port())],
        env={**env, "WALLET_REQUIRE_TOKENS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("wallet serve: set WALLET_JWT_SECRET or WALLET_JWKS_URL")


def test_viewer_names_the_caller_and_pages_its_wallets_oldest_first(server: Process) -> None:
    carol = bearer("carol-e2e", "wallet:deposit")
    create = "mutation { createWallet(input: {}) { wallet { id ownerId } } }"
    made = [data(server, create, carol)["createWallet"]["wallet"] for _ in range(3)]
    assert {w["ownerId"] for w in made} == {"carol-e2e"}
    page = (
        "{ viewer { id scopes wallets(first: 2%s) { edges { cursor node { id } } "
        "pageInfo { hasNextPage endCursor } } } }"
    )

    first = data(server, page % "", carol)["viewer"]
    rest = data(server, page % f', after: "{first["wallets"]["pageInfo"]["endCursor"]}"', carol)

    assert (first["id"], first["scopes"]) == ("carol-e2e", ["wallet:deposit"])
    seen = [e["node"]["id"] for e in first["wallets"]["edges"]]
    seen += [e["node"]["id"] for e in rest["viewer"]["wallets"]["edges"]]
    assert seen == [w["id"] for w in made]
    assert first["wallets"]["pageInfo"]["hasNextPage"] is True
    assert rest["viewer"]["wallets"]["pageInfo"]["hasNextPage"] is False


def test_an_admin_creates_a_wallet_for_owner_id_and_nobody_else_may(server: Process) -> None:
    create = (
        'mutation { createWallet(input: {ownerId: "dave-e2e"}) '
        "{ wallet { ownerId } errors { code } } }"
    )

    made = data(server, create, bearer("root-e2e", "wallet:admin"))["createWallet"]
    refused = data(server, create, bearer("alice-e2e"))["createWallet"]

    assert made == {"wallet": {"ownerId": "dave-e2e"}, "errors": []}
    assert refused == {"wallet": None, "errors": [{"code": "FORBIDDEN"}]}


def test_a_transaction_names_a_wallet_the_caller_may_not_see_by_id_only(
    server: Process,
) -> None:
    funder = bearer("funder-e2e", "wallet:deposit")
    alice, bob = bearer("alice-e2e"), bearer("bob-e2e")
    create = "mutation { createWallet(input: {}) { wallet { id } } }"
    alice_wallet = data(server, create, alice)["createWallet"]["wallet"]["id"]
    bob_wallet = data(server, create, bob)["createWallet"]["wallet"]["id"]
    deposit = (
        f'mutation {{ deposit(input: {{walletId: "{alice_wallet}", amount: "5", '
        'clientTransactionId: "fund-alice"}) { errors { code } } }'
    )
    assert data(server, deposit, funder)["deposit"]["errors"] == []
    transfer = (
        f'mutation {{ transfer(input: {{fromWalletId: "{alice_wallet}", '
        f'toWalletId: "{bob_wallet}", amount: "1", clientTransactionId: "pay-bob"}}) '
        "{ transaction { id } errors { code } } }"
    )
    paid = data(server, transfer, alice)["transfer"]["transaction"]["id"]

    read = (
        f'{{ transaction(id: "{paid}") {{ senderWalletId senderWallet {{ id }} '
        "receiverWalletId receiverWallet { id } } }"
    )
    assert data(server, read, bob)["transaction"] == {
        "senderWalletId": alice_wallet,
        "senderWallet": None,
        "receiverWalletId": bob_wallet,
        "receiverWallet": {"id": bob_wallet},
    }
    assert data(server, read, bearer("eve-e2e")) == {"transaction": None}


def test_a_frontend_on_another_origin_may_ask_first_then_send_its_token(server: Process) -> None:
    frontend = {"origin": "http://localhost:5173"}
    preflight = httpx.options(
        server.url,
        headers={
            **frontend,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == frontend["origin"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

    asked = post(server, "{ viewer { id } }", {**frontend, **bearer("alice-e2e")})
    assert asked.json()["data"] == {"viewer": {"id": "alice-e2e"}}
    assert asked.headers["access-control-allow-origin"] == frontend["origin"]

    stranger = httpx.options(
        server.url,
        headers={"origin": "https://elsewhere.example", "access-control-request-method": "POST"},
        timeout=10,
    )
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers
