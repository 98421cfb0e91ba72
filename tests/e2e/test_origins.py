"""Which pages may open a subscription WebSocket: in development, any on this machine."""

from __future__ import annotations

import json

import pytest
import websockets

from tests import tokens
from tests.processes import api_server

pytestmark = pytest.mark.slow


async def _opens(socket_url: str, origin: str) -> bool:
    """Whether the handshake from a page on `origin` is accepted (else it must be a 403)."""
    try:
        async with websockets.connect(
            socket_url,
            subprotocols=["graphql-transport-ws"],
            origin=websockets.Origin(origin),
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": tokens.header()}))
            return "connection_ack" in str(await ws.recv())
    except websockets.InvalidStatus as refused:
        if refused.response.status_code != 403:
            raise
        return False


async def test_in_development_pages_on_localhost_and_127_0_0_1_may_subscribe(
    env: dict[str, str],
) -> None:
    with api_server({**env, "WALLET_ENVIRONMENT": "development"}) as api:
        socket_url = api.url.replace("http://", "ws://")
        port = api.url.split(":")[2].split("/")[0]
        assert await _opens(socket_url, f"http://localhost:{port}")
        assert await _opens(socket_url, f"http://127.0.0.1:{port}")
        assert await _opens(socket_url, "http://localhost:3000")
        assert not await _opens(socket_url, "https://evil.example")


async def test_in_development_a_listed_origin_may_subscribe_and_an_unlisted_one_may_not(
    env: dict[str, str],
) -> None:
    with api_server({**env, "WALLET_ALLOWED_ORIGINS": '["https://app.example"]'}) as api:
        socket_url = api.url.replace("http://", "ws://")
        assert await _opens(socket_url, "https://app.example")
        assert not await _opens(socket_url, "https://evil.example")


async def test_in_production_only_the_listed_origins_may_subscribe(env: dict[str, str]) -> None:
    production = {
        **env,
        "WALLET_ENVIRONMENT": "production",
        "WALLET_ALLOWED_ORIGINS": '["https://app.example"]',
    }
    with api_server(production) as api:
        socket_url = api.url.replace("http://", "ws://")
        port = api.url.split(":")[2].split("/")[0]
        assert await _opens(socket_url, "https://app.example")
        assert not await _opens(socket_url, f"http://localhost:{port}")
