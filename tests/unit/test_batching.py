"""The one coalescer: what arrives together goes together, and nobody is left waiting."""

from __future__ import annotations

import asyncio

import pytest

from wallet.domain.batching import Batcher


async def test_calls_made_while_a_batch_runs_go_together_in_the_next() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        batches.append(items)
        await gate.wait()
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(run)
    first = asyncio.ensure_future(batcher(1))
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(batcher(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.01)
    gate.set()

    assert [await first, *[await f for f in later]] == [10, 20, 30, 40]
    assert batches == [[1], [2, 3, 4]]


async def test_a_batch_answered_with_the_wrong_number_of_answers_fails_each_caller() -> None:
    async def run(items: list[int]) -> list[int]:
        return items[:-1]

    batcher: Batcher[int, int] = Batcher(run)
    calls = [asyncio.ensure_future(batcher(n)) for n in range(3)]
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 1)

    assert all(isinstance(r, RuntimeError) for r in results)


async def test_closing_cancels_the_waiting_calls_and_runs_none_of_them_later() -> None:
    ran: list[list[int]] = []
    gate = asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        ran.append(items)
        await gate.wait()
        return items

    batcher: Batcher[int, int] = Batcher(run)
    running = asyncio.ensure_future(batcher(1))
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(batcher(2))
    await asyncio.sleep(0)

    await batcher.close()

    for call in (running, queued):
        with pytest.raises(asyncio.CancelledError):
            await call
    gate.set()
    assert await batcher(3) == 3
    assert ran == [[1], [3]]


async def test_with_two_in_parallel_a_backlog_runs_beside_the_batch_that_waits() -> None:
    running: list[list[int]] = []
    gates = {1: asyncio.Event(), 2: asyncio.Event()}

    async def run(items: list[int]) -> list[int]:
        running.append(items)
        if items[0] in gates:
            await gates[items[0]].wait()
        running.remove(items)
        return items

    batcher: Batcher[int, int] = Batcher(run, max_batch=2, parallel=2)
    first = asyncio.ensure_future(batcher(1))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(batcher(2))
    await asyncio.sleep(0.01)
    assert running == [[1]]  # no more waiting than one batch takes: it waits for the next
    later = [asyncio.ensure_future(batcher(n)) for n in (3, 4)]
    await asyncio.sleep(0.01)
    assert running == [[1], [2, 3]]  # more than a batch waits: the next runs beside the first
    gates[2].set()
    assert [await asyncio.wait_for(f, 1) for f in (second, *later)] == [2, 3, 4]
    assert not first.done()
    gates[1].set()
    assert await asyncio.wait_for(first, 1) == 1


async def test_a_call_made_as_a_batch_ends_is_never_left_waiting() -> None:
    async def run(items: list[int]) -> list[int]:
        return items

    batcher: Batcher[int, int] = Batcher(run, max_batch=1, parallel=2)
    for round_ in range(200):
        # Calls made at every point of the batches' ends: each must be answered.
        calls = [asyncio.ensure_future(batcher(n)) for n in range(round_ % 3 + 1)]
        for _ in range(round_ % 4):
            await asyncio.sleep(0)
        calls.append(asyncio.ensure_future(batcher(-1)))
        results = await asyncio.wait_for(asyncio.gather(*calls), 1)
        assert results == [*range(round_ % 3 + 1), -1]


async def test_calls_made_at_any_point_of_a_close_leave_the_batcher_working() -> None:
    async def run(items: list[int]) -> list[int]:
        await asyncio.sleep(0.005)
        return items

    for turns in range(8):
        batcher: Batcher[int, int] = Batcher(run, parallel=2)
        running = asyncio.ensure_future(batcher(1))
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(batcher.close())
        for _ in range(turns):
            await asyncio.sleep(0)
        during = asyncio.ensure_future(batcher(2))  # at some point of the close
        await closing
        await asyncio.gather(running, during, return_exceptions=True)
        # Whatever the close did to those, the batcher takes calls again.
        assert await asyncio.wait_for(batcher(3), 1) == 3, turns
