"""The tests' own tokens (tests/tokens.py) are what they claim: the good ones name their caller
to the service's verifier, and each bad one is refused by it, so no access test passes for the
wrong reason; and the test client (tests/client.py) sends its caller's token, and only it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from tests import tokens
from tests.client import Api, Subscriber
from wallet.domain.callers import ADMIN_SCOPE, DEPOSIT_SCOPE, Caller
from wallet.web.tokens import Unauthenticated, verifier_for

pytestmark = pytest.mark.timeout(10)


async def test_the_testers_token_names_a_funding_service() -> None:
    caller = await verifier_for(tokens.settings()).caller(f"Bearer {tokens.mint()}")
    assert caller == Caller(id=tokens.TESTER, scopes=frozenset({DEPOSIT_SCOPE}))
    assert caller.may_deposit
    assert not caller.is_admin


@pytest.mark.parametrize(
    ("scopes", "admin", "deposits"),
    [((), False, False), (tokens.DEPOSIT, False, True), (tokens.ADMIN, True, True)],
)
async def test_a_minted_token_names_its_subject_and_scopes(
    scopes: tuple[str, ...], admin: bool, deposits: bool
) -> None:
    subject = tokens.caller("other")
    caller = await verifier_for(tokens.settings()).caller(f"Bearer {tokens.mint(subject, scopes)}")
    assert caller.id == subject
    assert caller.scopes == frozenset(scopes)
    assert (caller.is_admin, caller.may_deposit) == (admin, deposits)


async def test_the_header_helper_sends_the_testers_token_or_none_at_all() -> None:
    (value,) = tokens.header().values()
    caller = await verifier_for(tokens.settings()).caller(value)
    assert caller.id == tokens.TESTER
    assert tokens.header(tokens.ANONYMOUS) == {}


@pytest.mark.parametrize(
    "bad",
    [tokens.expired, tokens.wrong_signature, tokens.alg_none],
    ids=["expired", "wrong signature", "alg none"],
)
async def test_each_bad_token_is_refused(bad: Callable[[], str]) -> None:
    with pytest.raises(Unauthenticated):
        await verifier_for(tokens.settings()).caller(f"Bearer {bad()}")


async def test_a_token_for_another_audience_is_refused_where_an_audience_is_set() -> None:
    ours = verifier_for(tokens.settings(jwt_audience="wallet-api"))
    with pytest.raises(Unauthenticated):
        await ours.caller(f"Bearer {tokens.wrong_audience()}")
    theirs = verifier_for(tokens.settings(jwt_audience="someone-else"))
    assert (await theirs.caller(f"Bearer {tokens.wrong_audience()}")).id == tokens.TESTER


async def test_no_token_is_refused() -> None:
    with pytest.raises(Unauthenticated):
        await verifier_for(tokens.settings()).caller(None)


def test_the_admin_scope_is_the_services() -> None:
    assert tokens.ADMIN == (ADMIN_SCOPE,)


async def test_the_client_sends_its_callers_token_in_place_of_the_http_clients_own() -> None:
    verifier = verifier_for(tokens.settings())
    seen: list[str | None] = []  # the caller each request names, as the service reads it

    async def handle(request: httpx.Request) -> httpx.Response:
        authorization = request.headers.get("Authorization")
        seen.append(None if authorization is None else (await verifier.caller(authorization)).id)
        return httpx.Response(200, json={"data": {"__typename": "Query"}})

    other = tokens.caller("other")
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handle), headers=tokens.header(tokens.mint("someone-else"))
    ) as client:
        api = Api(client, "http://wallet.test/graphql")
        for asking in (api, api.as_caller(other), api.with_token(tokens.ANONYMOUS)):
            await asking.data("{ __typename }")
    assert seen == [tokens.TESTER, other, None]


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_subscriber_names_its_caller_in_the_connection_init_payload(protocol: str) -> None:
    inits: list[Any] = []

    async def server(socket: ServerConnection) -> None:
        inits.append(json.loads(await socket.recv()))
        await socket.send(json.dumps({"type": "connection_ack"}))
        await socket.recv()  # the subscription
        await socket.send(json.dumps({"id": "1", "type": "complete"}))

    async with serve(server, "127.0.0.1", 0, subprotocols=[Subprotocol(protocol)]) as running:
        port = next(iter(running.sockets)).getsockname()[1]
        url = f"http://127.0.0.1:{port}/graphql"
        async with Subscriber(url, "subscription { x }", protocol) as subscriber:
            assert await subscriber.next() is None
        async with Subscriber(url, "subscription { x }", protocol, tokens.ANONYMOUS) as nobody:
            assert await nobody.next() is None
    assert [init["type"] for init in inits] == ["connection_init"] * 2
    (authorization,) = inits[0]["payload"].values()
    assert (await verifier_for(tokens.settings()).caller(authorization)).id == tokens.TESTER
    assert inits[1]["payload"] == {}
