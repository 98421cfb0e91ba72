"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the tests' Redis (each test keeps to its own key prefix)."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()
