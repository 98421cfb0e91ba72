"""Lua scripts run by their digest (EVALSHA), sent whole (EVAL) only when Redis lacks them.

EVAL sends the script's body with every call. Redis keeps each script it has run, so the
digest is enough almost always; it answers NOSCRIPT after a restart or a SCRIPT FLUSH, and
then the call is sent again with the body, which also puts the script back.

redis-py's `register_script()` does this for single calls, but a pipeline holding one of its
scripts asks SCRIPT EXISTS before every execute: one more round trip each time, the very
cost a pipeline is there to save.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError
from redis.typing import EncodableT


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def run(self, redis: Redis, keys: Sequence[str], args: Sequence[EncodableT]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(self.source, len(keys), *keys, *args)


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One run of a script, to be staged on a pipeline (and staged again if Redis lacked it)."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[EncodableT, ...]

    def stage(self, pipe: Pipeline) -> None:
        pipe.evalsha(self.script.sha, len(self.keys), *self.keys, *self.args)

    def stage_whole(self, pipe: Pipeline) -> None:
        pipe.eval(self.script.source, len(self.keys), *self.keys, *self.args)


async def run_calls(redis: Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Each call's reply in order, the exception for one that failed; one round trip.

    Raises when Redis answers none of them (a lost connection).
    """
    async with redis.pipeline(transaction=False) as pipe:
        for call in calls:
            call.stage(pipe)
        replies = await pipe.execute(raise_on_error=False)
    return await rerun_missing(redis, calls, replies)


async def rerun_missing(
    redis: Redis, calls: Sequence[ScriptCall], replies: Sequence[Any]
) -> list[Any]:
    """The replies, with each NOSCRIPT replaced by the reply to the call sent whole.

    A NOSCRIPT means the call did not run at all, so sending it again runs it once.
    """
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if not missing:
        return list(replies)
    async with redis.pipeline(transaction=False) as pipe:
        for i in missing:
            calls[i].stage_whole(pipe)
        rerun = await pipe.execute(raise_on_error=False)
    answered = list(replies)
    for i, reply in zip(missing, rerun, strict=True):
        answered[i] = reply
    return answered


async def load(redis: Redis, scripts: Sequence[Script]) -> None:
    """Put the scripts in Redis's script cache, so that the first calls need no second send."""
    async with redis.pipeline(transaction=False) as pipe:
        for script in scripts:
            pipe.script_load(script.source)
        await pipe.execute()
