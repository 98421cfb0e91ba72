"""Whether the API can serve: PostgreSQL answers, its schema is at the newest migration, Redis
answers. /readyz reports it, and a watcher logs it: one line for each thing wrong at start-up,
one when it goes wrong later, one when it is right again.

The PostgreSQL outage is the same one requests report (app.py), so an outage found by either
is logged once; the schema's state it records decides whether a request's missing table is the
outage (schema behind) or a bug. A database ahead of the code (migrated by a newer release) is
still ready: see _check_postgres.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse, Response

from wallet.bootstrap import Resources
from wallet.persistence import outages
from wallet.persistence.database import (
    create_engine,
    newest_revision,
    schema_revision,
    schema_state,
)
from wallet.persistence.outages import Outage, PostgresOutage, describe

log = logging.getLogger("wallet.readiness")

PROBE_TIMEOUT = 1.0
# How often the watcher looks again.
WATCH_INTERVAL = 5.0
# A report younger than this answers /readyz: a load balancer, a healthcheck and a curious
# person asking many times a second cost one look, not one each.
FRESH_SECONDS = 1.0
_PROBE_FAILURES = (SQLAlchemyError, RedisError, OSError, TimeoutError)


def postgres_outage(database_url: str) -> PostgresOutage:
    return outages.postgres_outage(
        database_url,
        logging.getLogger("wallet"),
        meanwhile="requests that need it are answered 503 until it is back",
        schema_behind=None,  # until the watcher's first look
    )


def redis_outage(redis_url: str) -> Outage:
    return outages.redis_outage(
        redis_url,
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
        self,
        resources: Resources,
        postgres: PostgresOutage,
        redis: Outage,
        *,
        detailed: bool = True,
    ) -> None:
        self._resources = resources
        # The probes' own connection: with the requests' pool busy they would wait for a
        # connection and report a PostgreSQL that answers as lost. No I/O until the first
        # probe; disposed when the watcher ends.
        self._engine = create_engine(resources.settings.database_url, pool_size=1, max_overflow=0)
        # The problems' sentences name hosts, ports and databases: for the log, and for the
        # body only in development (anyone who reaches /readyz reads it).
        self._detailed = detailed
        self.postgres = postgres
        self.redis = redis
        self._schema: str | None = None  # the last schema problem logged
        self._last: Report | None = None
        self._last_at = 0.0
        self._checking: asyncio.Future[Report] | None = None

    async def current(self) -> Report:
        """A fresh report: the last one when it is young enough, else the one being made (by
        whichever caller started it), else a new one. One probe at a time, so the probes'
        single connection is never waited for."""
        loop = asyncio.get_running_loop()
        if self._last is not None and loop.time() - self._last_at < FRESH_SECONDS:
            return self._last
        if self._checking is None:
            self._checking = asyncio.ensure_future(self._check_once())
        # Shielded: a caller that goes away must not cancel the others' check.
        return await asyncio.shield(self._checking)

    async def _check_once(self) -> Report:
        try:
            report = await self.check()
            self._last, self._last_at = report, asyncio.get_running_loop().time()
            return report
        finally:
            self._checking = None

    async def check(self) -> Report:
        """Probe both servers at once; record what is wrong (logged once by the outages)."""
        report = Report()
        await asyncio.gather(self._check_postgres(report), self._check_redis(report))
        return report

    async def _check_postgres(self, report: Report) -> None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                revision = await schema_revision(self._engine)
        except _PROBE_FAILURES as error:
            report.postgres, report.migrations = "down", "unknown"
            report.problems.append(f"{self.postgres.server} is unavailable ({describe(error)})")
            self.postgres.lost(error)
            return
        newest = newest_revision()
        state = schema_state(revision)
        self.postgres.schema_behind = state == "behind"
        if state == "behind":
            report.migrations = "behind"
            problem = (
                f"{self.postgres.server} is at migration {revision or 'none (never migrated)'}, "
                f"the newest is {newest}: run `wallet migrate`"
            )
            report.problems.append(problem)
            if self._schema != problem:
                log.error("%s; requests that need it are answered 503 until then", problem)
            self._schema = problem
        elif state == "ahead":
            # A newer release migrated it while this one still serves: a rolling deploy. Its
            # migrations keep the older code working (they are written to), so this replica
            # stays ready; said once, as a release left behind should be replaced.
            report.migrations = "ahead"
            notice = (
                f"{self.postgres.server} is at migration {revision}, newer than this release "
                f"knows (its newest is {newest}): serving on, as a newer release's migrations "
                "keep older ones working; replace this release"
            )
            if self._schema != notice:
                log.warning("%s", notice)
            self._schema = notice
        elif self._schema is not None:
            log.info("%s is at the newest migration (%s)", self.postgres.server, newest)
            self._schema = None
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
        report = await self.current()
        return JSONResponse(
            report.body(detailed=self._detailed), status_code=200 if report.ready else 503
        )

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Check now and every `interval` seconds; say once that all is well at start-up."""
        try:
            report = await self.current()
            if report.ready and report.migrations == "ok":
                log.info(
                    "ready: %s at the newest migration (%s), %s",
                    self.postgres.server,
                    newest_revision(),
                    self.redis.server,
                )
            elif report.ready:
                log.info("ready: %s, %s", self.postgres.server, self.redis.server)
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.current()
                except Exception:
                    # A bug in a check must not end the watching unseen.
                    log.exception("readiness check failed; looking again in %.0f s", interval)
        finally:
            if self._checking is not None:
                self._checking.cancel()
            await self._engine.dispose()
