"""Live status over WebSocket, fed by Redis pub/sub across processes."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from tests import tokens
from tests.client import Api, Subscriber
from tests.processes import api_server, worker
from tests.waits import eventually
from wallet.persistence.events import FORMAT

pytestmark = pytest.mark.slow

ACTIVITY = "subscription { walletActivity(walletId: %s) { id type status amount } }"
UPDATED = "subscription { transactionUpdated(id: %s) { id status completedAt } }"


def _quoted(value: str) -> str:
    return f'"{value}"'


async def listening(env: dict[str, str], channel: str) -> None:
    """Until some process has subscribed to the Redis channel (under the run's prefix)."""
    name = f"{env['WALLET_REDIS_PREFIX']}:{channel}"
    redis = Redis.from_url(env["REDIS_URL"])
    try:

        async def subscribers() -> int:
            [(_, count)] = await redis.pubsub_numsub(name)
            return int(count)

        await eventually(subscribers, f"a subscriber on {name}")
    finally:
        await redis.aclose()


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_subscriber_on_one_api_sees_a_transfer_made_through_another(
    env: dict[str, str], protocol: str
) -> None:
    with api_server(env) as watched, api_server(env) as used, worker(env):
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            api = Api(client, used.url)
            sender = await api.new_wallet("10.00")
            receiver = await api.new_wallet()
            query = ACTIVITY % _quoted(receiver)
            async with Subscriber(watched.url, query, protocol) as activity:
                # walletActivity sends nothing until the wallet moves: a transfer made before
                # the watching API listens on Redis would never be heard of.
                await listening(env, f"events:{FORMAT}:wallet:{receiver}")
                transaction_id = await api.pending_transfer(sender, receiver)
                first = await activity.next()
                second = await activity.next()
    assert first is not None
    assert second is not None
    assert first["walletActivity"]["id"] == transaction_id
    assert first["walletActivity"]["status"] == "PENDING"
    assert second["walletActivity"]["id"] == transaction_id
    assert second["walletActivity"]["status"] == "COMPLETED"


async def test_transaction_updated_shows_the_current_state_then_each_change_then_ends(
    env: dict[str, str],
) -> None:
    with api_server(env) as api:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            graphql = Api(client, api.url)
            sender = await graphql.new_wallet("10.00")
            receiver = await graphql.new_wallet()
            transaction_id = await graphql.pending_transfer(sender, receiver)
            async with Subscriber(api.url, UPDATED % _quoted(transaction_id)) as updates:
                now = await updates.next()
                assert now == {
                    "transactionUpdated": {
                        "id": transaction_id,
                        "status": "PENDING",
                        "completedAt": None,
                    }
                }
                with worker(env):
                    done = await updates.next()
                    end = await updates.next()
            assert done is not None
            assert done["transactionUpdated"]["status"] == "COMPLETED"
            assert done["transactionUpdated"]["completedAt"] is not None
            assert end is None, "the subscription completes once the status is final"

            # Subscribing after completion still shows it, then ends at once.
            async with Subscriber(api.url, UPDATED % _quoted(transaction_id)) as late:
                seen = await late.next()
                assert seen is not None
                assert seen["transactionUpdated"]["status"] == "COMPLETED"
                assert await late.next() is None


async def test_subscribing_to_something_that_does_not_exist_is_a_clean_error(
    env: dict[str, str],
) -> None:
    with api_server(env) as api:
        socket_url = api.url.replace("http://", "ws://")
        async with websockets.connect(socket_url, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": tokens.header()}))
            assert "connection_ack" in await ws.recv()
            missing = UPDATED % _quoted(str(uuid.uuid4()))
            await ws.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": {"query": missing}})
            )
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert message["type"] in ("next", "error"), message
    errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
    assert "there is no transaction" in errors[0]["message"]
