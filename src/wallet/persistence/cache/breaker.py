"""The cache's circuit breaker: after a Redis failure, reads go to PostgreSQL for a moment."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class Breaker:
    """After a Redis failure, reads leave Redis alone for `cooldown` seconds.

    It also counts the failures, for the metrics endpoint (`errors`).
    """

    def __init__(self, cooldown: float) -> None:
        self._cooldown = cooldown
        self._closed_at = 0.0
        self.errors = 0

    def allows(self) -> bool:
        return time.monotonic() >= self._closed_at

    def trip(self) -> None:
        self._closed_at = time.monotonic() + self._cooldown

    def reset(self) -> None:
        self._closed_at = 0.0

    def failed(self, what: str, error: BaseException) -> None:
        """Redis failed while doing `what`: count it, and keep reads away for a moment."""
        self.errors += 1
        self.trip()
        log.warning("redis failed while %s (%r); reading from PostgreSQL", what, error)
