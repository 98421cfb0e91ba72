"""The one retry policy: which failures are worth another try, how many tries, how long between.

A use case never retries itself; whoever runs it wraps it once in a policy, so the number of
tries is written in one place and retries never nest.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from wallet.domain.errors import ConcurrencyConflict

T = TypeVar("T")


def is_conflict(error: BaseException) -> bool:
    return isinstance(error, ConcurrencyConflict)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Run an attempt up to `tries` times while it fails with a transient error.

    Between tries it waits a random time up to `first_delay`, doubled after each try ("full
    jitter"), so the transactions that collided do not collide again.
    """

    tries: int
    first_delay: float
    transient: Callable[[BaseException], bool] = is_conflict

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        for n in range(self.tries):
            try:
                return await attempt()
            except Exception as error:
                if n == self.tries - 1 or not self.transient(error):
                    raise
            await asyncio.sleep(random.uniform(0, self.first_delay * 2**n))
        raise AssertionError("unreachable")


# A request's unit of work that PostgreSQL aborted to break a deadlock or a serialization
# conflict: up to 8 tries, waiting at most 5 ms, 10 ms, ... 320 ms (0.6 s in all).
CONFLICTS = RetryPolicy(tries=8, first_delay=0.005)
