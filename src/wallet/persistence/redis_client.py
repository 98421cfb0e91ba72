"""The one way this service opens Redis: redis-py's asyncio client, packing commands in C."""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Connection, Redis


class HiredisPackedConnection(Connection):
    """redis-py's asyncio connection packs each command in Python, argument by argument (its
    sync one uses hiredis): a commit's script calls carry thousands of arguments, and packing
    them was a tenth of a busy worker's CPU (py-spy, batches). hiredis packs the same bytes
    eight times faster. Anything but text, bytes and integers goes the way redis-py packs it."""

    def pack_command(self, *args: Any) -> list[bytes]:
        for arg in args:
            kind = type(arg)
            if kind is not str and kind is not bytes and kind is not int:
                return super().pack_command(*args)
        command = args[0]
        # As redis-py does: a command of several words ("SCRIPT LOAD") is sent as several.
        name = command.encode() if isinstance(command, str) else command
        if b" " in name:
            args = (*name.split(), *args[1:])
        return [hiredis.pack_command(args)]


def connection_options(url: str) -> dict[str, Any]:
    """For a pool of this URL: a plain redis:// one's connections pack commands in C; the
    URL's own kind (TLS, a Unix socket) is kept otherwise."""
    return {"connection_class": HiredisPackedConnection} if url.startswith("redis://") else {}


def connect(url: str, **options: Any) -> Redis:
    return Redis.from_url(url, **options, **connection_options(url))
