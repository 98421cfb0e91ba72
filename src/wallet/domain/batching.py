"""The one coalescer: calls made at the same time, run as one batch.

Used wherever many callers want the same round trip: the API's group commit, the worker's
settlements, the settlement queue's kicks and acknowledgements, and the read cache's reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Gathers the calls that arrive while a batch is running, and runs them as the next.

    A lone call waits for nobody: it runs at the next turn of the event loop, once the calls
    made in this same turn have joined it. Under load, calls pile up while one batch is at the
    database (or Redis) and go together in the next, so batches grow with the load, and so
    does what each round trip is shared by. One batch runs at a time, or, while more wait than
    one batch takes, up to `parallel`: then, while one waits on the database, the next is
    already on its way.

    `run` answers each item of a batch, in order, with its result or the exception to raise
    for it; an exception `run` itself raises is raised for every item of the batch.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R | Exception]]],
        max_batch: int = 64,
        name: str = "batch",
        parallel: int = 1,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._name = name
        self._parallel = parallel
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        # The flushes still in their loop, each leaving as it ends (not a turn later, as a done
        # callback would: a call made meanwhile would find none to take it).
        self._flushing: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        # Another batch beside the one running only when more wait than it could take: a
        # light load is better served by fewer, fuller batches (fewer commits and lock waits).
        running = len(self._flushing)
        if not running or (running < self._parallel and len(self._waiting) > self._max_batch):
            # A task of its own: a caller that goes away does not take the batch with it.
            self._flushing.add(asyncio.create_task(self._flush(), name=self._name))
        return await future

    async def close(self) -> None:
        """Stop the batches under way; whoever waits on them or on the next is cancelled."""
        for flushing in list(self._flushing):
            flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flushing
            self._flushing.discard(flushing)  # cancelled before it began, it never left
        for _, future in self._waiting:
            future.cancel()
        self._waiting.clear()

    async def _flush(self) -> None:
        try:
            await self._flush_waiting()
        finally:
            flushing = asyncio.current_task()
            assert flushing is not None
            self._flushing.discard(flushing)

    async def _flush_waiting(self) -> None:
        await asyncio.sleep(0)  # let the calls made in this same turn of the loop join in
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                outcomes: Sequence[R | Exception] = await self._run([item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"{len(outcomes)} answers for a batch of {len(batch)}")
            except Exception as error:
                outcomes = [error] * len(batch)
            except BaseException:
                # Cancelled (the loop closing) or worse: nobody may be left waiting.
                for _, future in batch + self._waiting:
                    future.cancel()
                self._waiting.clear()
                raise
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


async def together_or_each_alone(
    items: Sequence[T],
    together: Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]],
    alone: Callable[[T], Awaitable[R]],
    *,
    what: str,
) -> list[R | Exception]:
    """Answer each item from one batch run; when the batch fails for a reason none of them was
    refused for (a constraint, a bug), run each alone, so that a bad one fails alone.

    `together` may answer an item with an exception itself; only what it raises falls back.
    The fallback is logged once for the batch, with its reason.
    """
    try:
        return list(await together(items))
    except Exception as failure:
        if len(items) == 1:
            return [failure]
        log.warning(
            "a batch of %d %s failed (%s: %s); deciding each one at a time",
            len(items),
            what,
            type(failure).__name__,
            failure,
        )
    return [await outcome(alone(item)) for item in items]


async def outcome(running: Awaitable[R]) -> R | Exception:
    """What the call returned, or the exception it raised."""
    try:
        return await running
    except Exception as error:
        return error
