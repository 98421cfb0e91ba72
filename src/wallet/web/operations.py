"""/healthz and /metrics (Prometheus text), and the GraphQL operations' timings."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from strawberry.types import ExecutionContext

from wallet.bootstrap import Resources
from wallet.persistence.sweeper import pending_stats
from wallet.tasks.broker import settlement_queue

_OPERATION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Operation names are the client's to choose: each new one would be a new series of every
# histogram bucket (3,000 names made /metrics 5 MB). The first ones seen of operations that
# ran keep their name; a document that did not validate takes no name's place.
MAX_OPERATION_NAMES = 100


class Metrics:
    """One registry per application, so several apps (tests) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "wallet_graphql_request_seconds",
            "Time to execute a GraphQL operation, by operation name.",
            ["operation", "type"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.errors = Counter(
            "wallet_graphql_errors_total",
            "GraphQL operations answered with errors, by operation name.",
            ["operation"],
            registry=self.registry,
        )
        self.transactions = Gauge(
            "wallet_transactions",
            "Transactions recorded, by type and status (read from PostgreSQL).",
            ["type", "status"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "wallet_pending_transactions", "Transactions still PENDING.", registry=self.registry
        )
        self.oldest_pending = Gauge(
            "wallet_oldest_pending_seconds",
            "Age of the oldest PENDING transaction.",
            registry=self.registry,
        )
        self.active_holds = Gauge(
            "wallet_active_holds", "Holds still ACTIVE.", registry=self.registry
        )
        self.overdue_holds = Gauge(
            "wallet_overdue_hold_seconds",
            "How long the ACTIVE hold longest past its expiry has waited for a worker to "
            "release it; 0 when none is.",
            registry=self.registry,
        )
        self.queue_waiting = Gauge(
            "wallet_queue_waiting_jobs",
            "Settlement jobs not yet delivered to a worker.",
            registry=self.registry,
        )
        self.queue_running = Gauge(
            "wallet_queue_unacknowledged_jobs",
            "Settlement jobs delivered to a worker and not yet acknowledged.",
            registry=self.registry,
        )
        self.cache_hits = Gauge(
            "wallet_cache_hits", "Balance cache hits in this process.", registry=self.registry
        )
        self.cache_misses = Gauge(
            "wallet_cache_misses", "Balance cache misses in this process.", registry=self.registry
        )
        # Read at scrape time; set by whoever owns the cache.
        self.cache_counts: Callable[[], tuple[int, int]] | None = None
        self.operation_names: set[str] = set()

    def operation_label(self, name: str | None, *, ran: bool) -> str:
        """The label for an operation name: itself while few names are known, else `other`.
        Only an operation that ran (its document valid) may add its name."""
        name = name or "anonymous"
        if name in self.operation_names:
            return name
        if (
            not ran
            or not _OPERATION_NAME.fullmatch(name)
            or len(self.operation_names) >= MAX_OPERATION_NAMES
        ):
            return "other"
        self.operation_names.add(name)
        return name

    def observe(self, context: ExecutionContext, seconds: float) -> None:
        """Count an operation that took this long, once it is answered."""
        # Only a document that parsed and validated may add its name.
        ran = context.graphql_document is not None and not context.pre_execution_errors
        name = self.operation_label(context.operation_name, ran=ran)
        try:
            kind = context.operation_type.value
        except RuntimeError:  # the document did not parse
            kind = "invalid"
        self.request_seconds.labels(name, kind).observe(seconds)
        if context.result is not None and context.result.errors:
            self.errors.labels(name).inc()

    async def refresh(self, resources: Resources) -> None:
        async with resources.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT type, status, count(*) FROM transactions GROUP BY type, status")
            )
            for kind, status, count in rows:
                self.transactions.labels(kind, status).set(count)
            # The holds_due index holds exactly the ACTIVE ones.
            active, overdue = (await conn.execute(_HOLD_STATS)).one()
            self.active_holds.set(active)
            self.overdue_holds.set(overdue)
        count, age = await pending_stats(resources.engine)
        self.pending.set(count)
        self.oldest_pending.set(age)
        try:
            groups = await resources.redis.xinfo_groups(settlement_queue(resources.settings))
            for group in groups:
                self.queue_waiting.set(group.get("lag") or 0)
                self.queue_running.set(group.get("pending") or 0)
        except (RedisError, OSError):
            pass  # no stream yet, or Redis away: the gauges keep their last value
        if self.cache_counts is not None:
            hits, misses = self.cache_counts()
            self.cache_hits.set(hits)
            self.cache_misses.set(misses)


_HOLD_STATS = text(
    """
    SELECT count(*),
           greatest(0, coalesce(extract(epoch FROM clock_timestamp() - min(expires_at)), 0))
    FROM holds WHERE status = 'ACTIVE'
    """
)


async def healthz(_request: Request) -> Response:
    return PlainTextResponse("ok")


async def metrics_response(metrics: Metrics, resources: Resources) -> Response:
    # When PostgreSQL is away the request histograms are still worth serving.
    with contextlib.suppress(SQLAlchemyError, OSError):
        await metrics.refresh(resources)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
