"""PostgreSQL and Redis servers of the fault suite's own, so that it may kill them.

They are `wallet dev`'s embedded servers (wallet.dev.servers: the wheels' binaries, initdb, the
account PostgreSQL runs as under root), each with its data in a directory of its own and on a
port below the ephemeral range, which it keeps across restarts: the API and the worker reconnect
to the same address. The machine's shared servers are never touched.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Self

from sqlalchemy.engine import make_url

from wallet.dev import Started, free_port, start_postgres, start_redis

# start_postgres or start_redis.
_Start = Callable[[Path, int | None, Mapping[str, str] | None], Started]
# The signal `pg_ctl stop -m MODE` sends the postmaster.
_PG_CTL_STOP = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


class _Server:
    """`with Server() as server:` starts it, and at the end kills it and deletes its data."""

    def __init__(self, start: _Start, settings: Mapping[str, str], name: str) -> None:
        self._start = start
        self._settings = settings
        self.port = free_port()
        # Outside pytest's base temporary directory, which pytest sessions running at the same
        # time set back to 0700: the account PostgreSQL runs as under root could not reach it.
        self.directory = Path(tempfile.mkdtemp(prefix=f"wallet-faults-{name}-"))
        self._running: Started | None = None

    def start(self) -> None:
        """Start it (again) on its port, with the data it has."""
        self._running = self._start(self.directory, self.port, self._settings)
        self._running.wait_ready(30)

    @property
    def running(self) -> Started:
        assert self._running is not None, "start it first"
        return self._running

    def ready(self) -> bool:
        return self._running is not None and self._running.ready()

    def _stop(self, sig: signal.Signals) -> None:
        if self._running is not None:
            self._running.child.send_stop(sig)
            self._running.child.wait()

    def close(self) -> None:
        self._stop(signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# Room for the pools of the API, two workers, the sweepers and the checks; messages in English
# whatever the locale, since refused_writes() reads them.
POSTGRES_SETTINGS = {"max_connections": "200", "lc_messages": "C"}
# Every command in the append-only file before the answer, so that a restart "with its data"
# has everything it acknowledged.
REDIS_SETTINGS = {"appendfsync": "always"}


class PostgresServer(_Server):
    """One cluster for the suite; every scenario migrates a fresh database on it."""

    def __init__(self) -> None:
        super().__init__(start_postgres, POSTGRES_SETTINGS, "postgres")

    def url(self, database: str) -> str:
        url = make_url(self.running.url).set(database=database)
        return url.render_as_string(hide_password=False)

    def log_size(self) -> int:
        return self.running.log.stat().st_size

    def refused_writes(self, since: int) -> list[str]:
        """The lines PostgreSQL logged since byte `since` for a write that broke a constraint.

        The constraints are the second line of defence: code that is right never reaches
        them, so each such line is a bug that the first line let through.
        """
        with self.running.log.open("rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        return [line for line in lines if "ERROR:" in line and "violates" in line]

    def stop(self, mode: str = "fast") -> None:
        """As `pg_ctl stop -m MODE`: "immediate" is a crash as far as the data knows (no
        checkpoint; the next start replays the WAL)."""
        self._stop(_PG_CTL_STOP[mode])


class RedisServer(_Server):
    """A redis-server that writes every command to its append-only file before answering."""

    def __init__(self) -> None:
        super().__init__(start_redis, REDIS_SETTINGS, "redis")

    @property
    def url(self) -> str:
        return self.running.url

    def kill(self, *, keep_data: bool) -> None:
        """kill -9; without its data, it comes back as empty as a Redis that keeps nothing."""
        self._stop(signal.SIGKILL)
        if not keep_data:
            # Where start_redis keeps it.
            shutil.rmtree(self.directory / "redis", ignore_errors=True)
