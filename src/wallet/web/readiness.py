"""Whether the API can serve: PostgreSQL answers, its schema is at the newest migration, Redis
answers. /readyz reports it, and a watcher logs it: one line for each thing wrong at start-up,
one when it goes wrong later, one when it is right again.

The PostgreSQL outage is the same one requests report (app.py), so an outage found by either
is logged once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from redis.exceptions import RedisError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse, Response

from wallet.persistence.database import newest_revision, schema_revision
from wallet.persistence.outages import Outage, address, describe
from wallet.resources import Resources

log = logging.getLogger("wallet.readiness")

PROBE_TIMEOUT = 1.0
# How often the watcher looks again.
WATCH_INTERVAL = 5.0
_PROBE_FAILURES = (SQLAlchemyError, RedisError, OSError, TimeoutError)


def postgres_outage(database_url: str) -> Outage:
    database = make_url(database_url).database
    return Outage(
        f"PostgreSQL at {address(database_url)} (database {database})",
        logging.getLogger("wallet"),
        meanwhile="requests that need it are answered 503 until it is back",
    )


def redis_outage(redis_url: str) -> Outage:
    return Outage(
        f"Redis at {address(redis_url)}",
        logging.getLogger("wallet"),
        meanwhile="reads go to PostgreSQL, rate limits are off, nothing is queued until it "
        "is back (a worker's sweeper queues what was missed)",
    )


@dataclass
class Report:
    postgres: str = "ok"
    migrations: str = "ok"
    redis: str = "ok"
    problems: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.problems

    def body(self, *, detailed: bool) -> dict[str, object]:
        body: dict[str, object] = {
            "postgres": self.postgres,
            "migrations": self.migrations,
            "redis": self.redis,
        }
        if detailed:
            body["problems"] = self.problems
        return body


class Readiness:
    def __init__(
        self, resources: Resources, postgres: Outage, redis: Outage, *, detailed: bool = True
    ) -> None:
        self._resources = resources
        # The problems' sentences name hosts, ports and databases: for the log, and for the
        # body only in development (anyone who reaches /readyz reads it).
        self._detailed = detailed
        self.postgres = postgres
        self.redis = redis
        self._behind: str | None = None  # the last migrations problem logged

    async def check(self) -> Report:
        """Probe both servers at once; record what is wrong (logged once by the outages)."""
        report = Report()
        await asyncio.gather(self._check_postgres(report), self._check_redis(report))
        return report

    async def _check_postgres(self, report: Report) -> None:
        engine = self._resources.engine
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                revision = await schema_revision(engine)
        except _PROBE_FAILURES as error:
            report.postgres, report.migrations = "down", "unknown"
            report.problems.append(f"{self.postgres.server} is unavailable ({describe(error)})")
            self.postgres.lost(error)
            return
        newest = newest_revision()
        if revision != newest:
            report.migrations = "behind"
            problem = (
                f"{self.postgres.server} is at migration {revision or 'none (never migrated)'}, "
                f"the newest is {newest}: run `wallet migrate`"
            )
            report.problems.append(problem)
            if self._behind != problem:
                log.error("%s; requests that need it are answered 503 until then", problem)
            self._behind = problem
            return
        if self._behind is not None:
            log.info("%s is at the newest migration (%s)", self.postgres.server, newest)
            self._behind = None
        self.postgres.back()

    async def _check_redis(self, report: Report) -> None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self._resources.redis.ping()
        except _PROBE_FAILURES as error:
            report.redis = "down"
            report.problems.append(f"{self.redis.server} is unavailable ({describe(error)})")
            self.redis.lost(error)
            return
        self.redis.back()

    async def response(self) -> Response:
        report = await self.check()
        return JSONResponse(
            report.body(detailed=self._detailed), status_code=200 if report.ready else 503
        )

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Check now and every `interval` seconds; say once that all is well at start-up."""
        report = await self.check()
        if report.ready:
            log.info(
                "ready: %s at the newest migration (%s), %s",
                self.postgres.server,
                newest_revision(),
                self.redis.server,
            )
        while True:
            await asyncio.sleep(interval)
            await self.check()
