"""A stopping worker's sweeper ends even when its cancellation is lost on the way."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import pytest

from wallet import worker
from wallet.config import Settings


async def test_the_sweeper_stops_when_told_even_if_its_cancellation_is_swallowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claiming = asyncio.Event()

    async def claim_that_swallows_cancellation(*_args: Any, **_kwargs: Any) -> list[Any]:
        # As asyncio.wait_for can on Python 3.11 when its inner call completes as it is
        # cancelled: the CancelledError never reaches the caller.
        claiming.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)
        return []

    monkeypatch.setattr(worker, "claim_stalled", claim_that_swallows_cancellation)
    settings = Settings(sweep_interval_seconds=0.01)
    resources = SimpleNamespace(settings=settings, engine=None)
    finish = asyncio.Event()
    sweeper = asyncio.create_task(
        worker.sweep_forever(
            resources,  # type: ignore[arg-type]
            worker.Servers.of(settings),
            finish,
            asyncio.Event(),
        )
    )
    await asyncio.wait_for(claiming.wait(), 5)

    finish.set()
    sweeper.cancel()
    done, _ = await asyncio.wait({sweeper}, timeout=2)

    assert done == {sweeper}, "the sweeper swept on after it was told to stop"
