"""The worker's heartbeat says its loops make progress, not merely that its event loop turns."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from wallet import worker


class _File:
    """Stands for the heartbeat file: counts its touches, and says when one happens."""

    def __init__(self) -> None:
        self.touches = 0
        self.touched = threading.Event()

    def touch(self) -> None:
        self.touches += 1
        self.touched.set()


async def _touched(file: _File, seconds: float) -> bool:
    return await asyncio.to_thread(file.touched.wait, seconds)


@pytest.mark.timeout(10)
async def test_the_heartbeat_is_touched_after_progress_and_not_while_the_loops_are_stuck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "HEARTBEAT_SECONDS", 0.0)
    file, progress = _File(), asyncio.Event()
    # Duck-typed: beat only touches its file.
    beating = asyncio.create_task(worker.beat(file, progress))  # type: ignore[arg-type]
    try:
        # The event loop turns freely, but nothing made progress: no touch.
        assert not await _touched(file, 0.3)
        progress.set()
        assert await _touched(file, 5)
        assert file.touches == 1
        assert not progress.is_set()  # the next touch waits for the next progress
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
