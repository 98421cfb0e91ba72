"""Waiting for something to happen: ask again until it has, and fail saying what did not."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None] | T | None],
    what: str,
    timeout: float = 10.0,
    every: float = 0.05,
) -> T:
    """The first true value `check` gives, asked every `every` seconds; after `timeout` seconds
    without one, fails naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        value = await answer if inspect.isawaitable(answer) else answer
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not after {timeout:g} s (last seen: {value!r})")
        await asyncio.sleep(every)
