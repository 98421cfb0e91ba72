"""Who may do what (issue 12, /work/shared/contract/auth.graphql), cell by cell, against a real
stack: `wallet serve` requiring tokens for one audience, and a `wallet worker` settling the
transfers. Every caller meets every operation; MATRIX below is the rule book, read as a table.
Every refused call is proven to have written nothing: the ledger tables (rows and a digest of
every row) and the sum of the balances are the same after it as before.

A second `wallet serve` takes its keys from a JWKS served by a local identity provider: an
HS256 token (even one signed with a secret the first API trusts) is refused there."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import httpx
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests import jwks, tokens
from tests.client import Api, key
from tests.e2e.test_subscriptions import listening
from tests.invariants import TableState, snapshot
from tests.jwks import Provider, SigningKey, serve_jwks
from tests.processes import WALLET, Process, free_port, start, worker
from wallet.persistence.events import FORMAT
from wallet.web.tokens import issue_token

AUDIENCE = "wallet-matrix"
# The second API's, as its identity provider (tests/jwks.py) signs them.
JWKS_AUDIENCE = jwks.AUDIENCE

# What a cell may come to.
OK = "allowed"
NULL = "null"  # a query answers null: to this caller the thing does not exist
NOT_FOUND = "WALLET_NOT_FOUND"
FORBIDDEN = "FORBIDDEN"
ERROR = "subscription ends with an error"
UNAUTHENTICATED = "UNAUTHENTICATED"  # HTTP 401 (a WebSocket: closed with 4401)

CALLERS = ("owner", "other", "admin", "deposit service")
OPERATIONS = (
    "wallet(id)",
    "transaction(id)",
    "viewer",
    "wallet.transactions",
    "createWallet",
    "createWallet initialBalance",
    "createWallet ownerId",
    "deposit",
    "withdraw",
    "transfer out of the wallet",
    "transfer into the wallet",
    "transactionUpdated",
    "walletActivity",
)

# The owner is a caller with no scope, who owns the wallet W and the transfer T (W to its own
# second wallet); "other" is a caller with no scope. Scopes, not ownership, govern deposits, a
# positive initialBalance and ownerId: the owner without wallet:deposit may not deposit either.
# fmt: off
MATRIX: dict[str, tuple[str, str, str, str]] = {
    # operation on W or T               owner      other      admin  deposit service
    "wallet(id)":                      (OK,        NULL,      OK,    NULL),
    "transaction(id)":                 (OK,        NULL,      OK,    NULL),
    "viewer":                          (OK,        OK,        OK,    OK),
    "wallet.transactions":             (OK,        NULL,      OK,    NULL),
    "createWallet":                    (OK,        OK,        OK,    OK),
    "createWallet initialBalance":     (FORBIDDEN, FORBIDDEN, OK,    OK),
    "createWallet ownerId":            (FORBIDDEN, FORBIDDEN, OK,    FORBIDDEN),
    "deposit":                         (FORBIDDEN, FORBIDDEN, OK,    OK),
    "withdraw":                        (OK,        NOT_FOUND, OK,    NOT_FOUND),
    "transfer out of the wallet":      (OK,        NOT_FOUND, OK,    NOT_FOUND),
    "transfer into the wallet":        (OK,        OK,        OK,    OK),
    "transactionUpdated":              (OK,        ERROR,     OK,    ERROR),
    "walletActivity":                  (OK,        ERROR,     OK,    ERROR),
}
# fmt: on
# Whatever the operation, a request whose token is any of these runs nothing.
BAD_TOKENS = ("no token", "expired", "wrong signature", "wrong audience", "alg none")

CELLS = [
    pytest.param(caller, operation, MATRIX[operation][column], id=f"{caller}-{operation}")
    for operation in OPERATIONS
    for column, caller in enumerate(CALLERS)
] + [
    pytest.param(caller, operation, UNAUTHENTICATED, id=f"{caller}-{operation}")
    for caller in BAD_TOKENS
    for operation in OPERATIONS
]

TRANSACTION = "id status senderWalletId receiverWalletId senderWallet { id balance } " + (
    "receiverWallet { id balance }"
)
QUERIES = {
    "wallet(id)": "query($id: ID!) { wallet(id: $id) { id balance ownerId } }",
    "transaction(id)": f"query($id: ID!) {{ transaction(id: $id) {{ {TRANSACTION} }} }}",
    "viewer": "{ viewer { id scopes } }",
    "wallet.transactions": (
        "query($id: ID!) { wallet(id: $id) { transactions(first: 100) "
        f"{{ edges {{ node {{ {TRANSACTION} }} }} }} }} }}"
    ),
}
MUTATION = "mutation($input: %sInput!) { %s(input: $input) { %s errors { code } } }"
CREATE = MUTATION % ("CreateWallet", "createWallet", "wallet { id ownerId balance }")
DEPOSIT = MUTATION % ("Deposit", "deposit", f"transaction {{ {TRANSACTION} }}")
WITHDRAW = MUTATION % ("Withdraw", "withdraw", f"transaction {{ {TRANSACTION} }}")
TRANSFER = MUTATION % ("Transfer", "transfer", f"transaction {{ {TRANSACTION} }}")
UPDATED = f"subscription($id: ID!) {{ transactionUpdated(id: $id) {{ {TRANSACTION} }} }}"
ACTIVITY = f"subscription($id: ID!) {{ walletActivity(walletId: $id) {{ {TRANSACTION} }} }}"


def good(subject: str, *scopes: str) -> str:
    """A valid token for this file's API: the run's secret, our audience."""
    return issue_token(tokens.settings(jwt_audience=AUDIENCE), subject, scopes, ttl=3600)


def alg_none(subject: str) -> str:
    """Unsigned, `alg: none`, every claim otherwise right."""

    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": subject, "aud": AUDIENCE, "iat": now, "exp": now + 3600}
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."


def bad_token(kind: str, subject: str) -> str:
    """A token wrong in exactly one way (the owner's subject, our audience otherwise)."""
    ours = tokens.settings(jwt_audience=AUDIENCE)
    if kind == "no token":
        return tokens.ANONYMOUS
    if kind == "expired":
        return issue_token(ours, subject, ttl=-3600)
    if kind == "wrong signature":
        stranger = tokens.settings(jwt_secret="another-secret-" + "x" * 40, jwt_audience=AUDIENCE)
        return issue_token(stranger, subject)
    if kind == "wrong audience":
        return issue_token(tokens.settings(jwt_audience="someone-else"), subject)
    assert kind == "alg none"
    return alg_none(subject)


def _healthy(process: Process) -> bool:
    return httpx.get(process.url.replace("/graphql", "/healthz")).status_code == 200


def start_api(env: dict[str, str]) -> Process:
    """`wallet serve` requiring tokens. Ready once /healthz answers: the usual readiness probe
    posts the tester's token, which names no audience."""
    port = free_port()
    return start(
        [WALLET, "serve", "--port", str(port), "--log-level", "warning"],
        {**env, "WALLET_RATE_LIMITS_ENABLED": "false", "WALLET_REQUIRE_TOKENS": "true"},
        "wallet serve",
        _healthy,
        f"http://127.0.0.1:{port}/graphql",
    )


@pytest.fixture(scope="module")
def stack_env(service_env: dict[str, str]) -> dict[str, str]:
    return {
        **service_env,
        "WALLET_REDIS_PREFIX": f"{service_env['WALLET_REDIS_PREFIX']}-matrix",
        "WALLET_JWT_AUDIENCE": AUDIENCE,
    }


@pytest.fixture(scope="module")
def api_url(stack_env: dict[str, str]) -> Iterator[str]:
    """The API, with a worker settling its withdrawals and transfers (none inline)."""
    with worker(stack_env, concurrency=4):
        api = start_api(stack_env)
        try:
            yield api.url
        finally:
            api.stop()


@dataclass
class World:
    """The wallets and transfer the cells act on, and each caller's token and own wallet."""

    url: str
    client: httpx.AsyncClient
    tokens: dict[str, str]
    own_wallet: dict[str, str]  # each good caller's funded wallet (not W)
    wallet: str  # W, the owner's
    transaction: str  # T, a transfer from W to the owner's second wallet
    subjects: dict[str, str]
    env: dict[str, str]  # the stack's, for its Redis channels

    def api(self, caller: str) -> Api:
        return Api(self.client, self.url, self.tokens[caller])

    async def settled(self, transaction: dict[str, Any]) -> dict[str, Any]:
        """The transaction once final, read by the admin (who sees every one)."""
        return await self.api("admin").final(transaction)


@pytest.fixture(scope="module")
async def world(api_url: str, stack_env: dict[str, str]) -> AsyncIterator[World]:
    subjects = {caller: tokens.caller(caller.replace(" ", "-")) for caller in CALLERS}
    scopes = {"admin": tokens.ADMIN, "deposit service": tokens.DEPOSIT}
    caller_tokens = {c: good(s, *scopes.get(c, ())) for c, s in subjects.items()}
    for kind in BAD_TOKENS:
        caller_tokens[kind] = bad_token(kind, subjects["owner"])
    async with httpx.AsyncClient(timeout=30) as client:
        world = World(api_url, client, caller_tokens, {}, "", "", subjects, stack_env)
        funder = world.api("deposit service")
        # Each caller's own funded wallet (the owner's is its second one), then W.
        for caller in (*CALLERS, "W"):
            made = await world.api("owner" if caller == "W" else caller).create_wallet()
            assert made["errors"] == [], made
            world.own_wallet[caller] = made["wallet"]["id"]
            deposit = await funder.data(
                DEPOSIT,
                input={
                    "walletId": made["wallet"]["id"],
                    "amount": "1000",
                    "clientTransactionId": key(),
                },
            )
            assert deposit["deposit"]["errors"] == [], deposit
            await world.settled(deposit["deposit"]["transaction"])
        world.wallet = world.own_wallet.pop("W")
        moved = await world.api("owner").transfer(world.wallet, world.own_wallet["owner"], "1")
        assert moved["errors"] == [], moved
        assert moved["transaction"]["status"] == "COMPLETED", moved
        world.transaction = moved["transaction"]["id"]
        yield world


async def ledger(engine: AsyncEngine) -> tuple[dict[str, TableState], int]:
    """Every ledger table's rows and digest, and the sum of the balances."""
    async with engine.connect() as conn:
        total = (await conn.execute(text("SELECT coalesce(sum(balance), 0) FROM wallets"))).one()
    return await snapshot(engine), int(total[0])


# --- the operations: each does its thing as `caller` and says what came of it ---------------


async def query(world: World, caller: str, operation: str) -> str:
    variables = {
        "wallet(id)": {"id": world.wallet},
        "transaction(id)": {"id": world.transaction},
        "viewer": {},
        "wallet.transactions": {"id": world.wallet},
    }[operation]
    response = await world.api(caller).post(QUERIES[operation], **variables)
    if refused := unauthenticated(response):
        return refused
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body
    [found] = body["data"].values()
    if found is None:
        return NULL
    if operation == "viewer":
        assert found["id"] == world.subjects[caller]
    elif operation == "wallet.transactions":
        ids = [edge["node"]["id"] for edge in found["transactions"]["edges"]]
        assert world.transaction in ids
    else:
        assert found["id"] in (world.wallet, world.transaction)
    return OK


def unauthenticated(response: httpx.Response) -> str | None:
    """UNAUTHENTICATED when the API refused the token as the contract says, else None."""
    if response.status_code != 401:
        return None
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == UNAUTHENTICATED, error
    assert "Bearer" in response.headers["www-authenticate"]
    return UNAUTHENTICATED


async def mutation(world: World, caller: str, operation: str) -> str:
    own = world.own_wallet.get(caller, world.own_wallet["other"])
    document, name, fields = {
        "createWallet": (CREATE, "createWallet", {}),
        "createWallet initialBalance": (CREATE, "createWallet", {"initialBalance": "5"}),
        "createWallet ownerId": (CREATE, "createWallet", {"ownerId": world.subjects["other"]}),
        "deposit": (DEPOSIT, "deposit", {"walletId": world.wallet, "amount": "1"}),
        "withdraw": (WITHDRAW, "withdraw", {"walletId": world.wallet, "amount": "1"}),
        "transfer out of the wallet": (
            TRANSFER,
            "transfer",
            {"fromWalletId": world.wallet, "toWalletId": own, "amount": "1"},
        ),
        "transfer into the wallet": (
            TRANSFER,
            "transfer",
            {"fromWalletId": own, "toWalletId": world.wallet, "amount": "1"},
        ),
    }[operation]
    response = await world.api(caller).post(
        document, input={**fields, "clientTransactionId": key()}
    )
    if refused := unauthenticated(response):
        return refused
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body
    payload = body["data"][name]
    if payload["errors"]:
        [error] = payload["errors"]
        assert all(value is None for field, value in payload.items() if field != "errors")
        return str(error["code"])
    if name == "createWallet":
        made = payload["wallet"]
        owner = fields.get("ownerId", world.subjects[caller])
        assert made["ownerId"] == owner, made
        assert Decimal(made["balance"]) == Decimal(fields.get("initialBalance", "0")), made
    else:
        final = await world.settled(payload["transaction"])
        assert final["status"] == "COMPLETED", final
    return OK


async def subscription(world: World, caller: str, operation: str) -> str:
    """Over graphql-transport-ws: UNAUTHENTICATED when the socket is closed with 4401, ERROR
    when the subscription ends with an error, OK when an event comes. For walletActivity,
    which sends nothing until the wallet moves, the deposit service deposits into W once the
    API listens for it (only where no error came first: a refused cell writes nothing)."""
    document = UPDATED if operation == "transactionUpdated" else ACTIVITY
    subject_id = world.transaction if operation == "transactionUpdated" else world.wallet
    async with websockets.connect(
        world.url.replace("http://", "ws://"), subprotocols=["graphql-transport-ws"]
    ) as socket:
        init = {"type": "connection_init", "payload": tokens.header(world.tokens[caller])}
        await socket.send(json.dumps(init))
        try:
            ack = json.loads(await asyncio.wait_for(socket.recv(), 5))
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            return UNAUTHENTICATED if code == 4401 else f"closed with {code}"
        assert ack["type"] == "connection_ack", ack
        subscribe = {"query": document, "variables": {"id": subject_id}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        message = await first_message(socket, 1.0 if operation == "walletActivity" else 10.0)
        if message is None:  # walletActivity, silent so far: make the wallet move
            await listening(world.env, f"events:{FORMAT}:wallet:{world.wallet}")
            # The listener seen may be an earlier cell's, not yet gone: move it until heard.
            for _ in range(3):
                deposit = await world.api("deposit service").deposit(world.wallet, "1")
                assert deposit["errors"] == [], deposit
                await world.settled(deposit["transaction"])
                if message := await first_message(socket, 3.0):
                    break
        assert message is not None, f"{operation}: nothing came"
        if message["type"] == "error" or message["payload"].get("errors"):
            return ERROR
        assert message["type"] == "next", message
        [event] = message["payload"]["data"].values()
        if operation == "transactionUpdated":
            assert event["id"] == world.transaction, event
        else:
            assert world.wallet in (event["senderWalletId"], event["receiverWalletId"]), event
        return OK


async def first_message(socket: Any, timeout: float) -> dict[str, Any] | None:
    """The first message that is not a ping, or None after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                message: dict[str, Any] = json.loads(await socket.recv())
                if message["type"] not in ("ping", "pong"):
                    return message
    except TimeoutError:
        return None


RUN: dict[str, Callable[[World, str, str], Awaitable[str]]] = {
    **dict.fromkeys(QUERIES, query),
    **dict.fromkeys(
        [op for op in OPERATIONS if op.startswith(("create", "deposit", "withdraw", "transfer"))],
        mutation,
    ),
    "transactionUpdated": subscription,
    "walletActivity": subscription,
}


@pytest.mark.parametrize(("caller", "operation", "expected"), CELLS)
async def test_the_access_matrix(
    world: World, engine: AsyncEngine, caller: str, operation: str, expected: str
) -> None:
    before = await ledger(engine)

    outcome = await RUN[operation](world, caller, operation)

    assert outcome == expected
    if outcome != OK:
        assert await ledger(engine) == before, "a refused call wrote something"


# --- clientTransactionId belongs to its caller ----------------------------------------------


async def test_two_callers_using_the_same_client_transaction_id_never_meet(world: World) -> None:
    shared = key()
    owner, other = world.api("owner"), world.api("other")

    mine = await owner.withdraw(world.wallet, "1", shared)
    theirs = await other.withdraw(world.own_wallet["other"], "1", shared)
    again = await owner.withdraw(world.wallet, "1", shared)

    assert mine["errors"] == theirs["errors"] == again["errors"] == [], (mine, theirs, again)
    assert mine["transaction"]["id"] != theirs["transaction"]["id"]
    assert mine["transaction"]["status"] == theirs["transaction"]["status"] == "COMPLETED"
    assert mine["transaction"]["senderWallet"]["id"] == world.wallet
    assert theirs["transaction"]["senderWallet"]["id"] == world.own_wallet["other"]
    # The key still names, for each caller, its own request: the owner's retry is its own.
    assert again["transaction"]["id"] == mine["transaction"]["id"]
    assert await other.transaction(mine["transaction"]["id"]) is None


# --- a receiver never sees the sender's wallet ----------------------------------------------


async def test_a_receiver_cannot_read_the_sender_s_balance_through_any_path(
    world: World, engine: AsyncEngine
) -> None:
    receiver_wallet = world.own_wallet["other"]
    paid = await world.api("owner").transfer(world.wallet, receiver_wallet, "2")
    assert paid["errors"] == [], paid
    assert paid["transaction"]["status"] == "COMPLETED"
    transfer_id = paid["transaction"]["id"]
    receiver = world.api("other")

    seen = (await receiver.data(QUERIES["transaction(id)"], id=transfer_id))["transaction"]
    history = await receiver.data(QUERIES["wallet.transactions"], id=receiver_wallet)
    [listed] = [
        edge["node"]
        for edge in history["wallet"]["transactions"]["edges"]
        if edge["node"]["id"] == transfer_id
    ]
    updated = await receiver_event(world, "other", UPDATED, transfer_id)
    before = await ledger(engine)
    activity = await subscription(world, "other", "walletActivity")

    for view in (seen, listed, updated):
        assert view["senderWallet"] is None, view
        assert view["senderWalletId"] == world.wallet, view
        assert view["receiverWallet"]["id"] == receiver_wallet, view
    assert await receiver.wallet(world.wallet) is None
    assert activity == ERROR
    assert await ledger(engine) == before


async def receiver_event(world: World, caller: str, document: str, subject_id: str) -> Any:
    """The first event of a subscription `caller` may hold."""
    async with websockets.connect(
        world.url.replace("http://", "ws://"), subprotocols=["graphql-transport-ws"]
    ) as socket:
        init = {"type": "connection_init", "payload": tokens.header(world.tokens[caller])}
        await socket.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "connection_ack"
        subscribe = {"query": document, "variables": {"id": subject_id}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        message = await first_message(socket, 10.0)
    assert message is not None
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    [event] = message["payload"]["data"].values()
    return event


# --- an API whose keys come from a JWKS ------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("matrix-rsa", "RS256", rsa.generate_private_key(65537, 2048))


@pytest.fixture(scope="module")
def jwks_api(stack_env: dict[str, str], rsa_key: SigningKey) -> Iterator[Process]:
    """A second API, verifying tokens with the RS256 key a local identity provider serves
    (and holding no shared secret: WALLET_JWT_SECRET and WALLET_JWKS_URL exclude each other)."""
    provider = Provider(keys=[rsa_key.public_jwk()])
    env = {k: v for k, v in stack_env.items() if k != "WALLET_JWT_SECRET"}
    with serve_jwks(provider) as url:
        api = start_api({**env, "WALLET_JWKS_URL": url, "WALLET_JWT_AUDIENCE": JWKS_AUDIENCE})
        try:
            yield api
        finally:
            api.stop()


async def test_an_hs256_token_is_refused_by_an_api_whose_keys_come_from_a_jwks(
    jwks_api: Process, rsa_key: SigningKey, world: World, engine: AsyncEngine
) -> None:
    subject = world.subjects["admin"]
    # Every claim right, signed HS256 with the secret the first API trusts.
    hs256 = issue_token(
        tokens.settings(jwt_audience=JWKS_AUDIENCE), subject, tokens.ADMIN, ttl=3600
    )
    rs256 = rsa_key.sign(subject, aud=JWKS_AUDIENCE, scope=" ".join(tokens.ADMIN))
    elsewhere = replace(
        world,
        url=jwks_api.url,
        tokens={**world.tokens, "hs256": hs256, "rs256": rs256},
        subjects={**world.subjects, "hs256": subject, "rs256": subject},
    )
    before = await ledger(engine)

    refused = [
        await RUN[operation](elsewhere, "hs256", operation)
        for operation in ("viewer", "wallet(id)", "withdraw", "transactionUpdated")
    ]

    assert refused == [UNAUTHENTICATED] * 4
    assert await ledger(engine) == before
    # The provider's own RS256 token is accepted there: the refusal is the algorithm's.
    assert await RUN["viewer"](elsewhere, "rs256", "viewer") == OK
