"""What every part of the cache shares: the Redis client, the key names, how long entries
live and calls may take, and the breaker that stops asking Redis while it fails."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from wallet.persistence.cache.breaker import Breaker
from wallet.persistence.cache.entries import Keys


@dataclass(frozen=True, slots=True)
class Link:
    redis: Redis
    keys: Keys
    ttl_ms: int
    timeout: float
    breaker: Breaker
