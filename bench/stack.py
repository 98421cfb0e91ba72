"""Start the whole stack for a benchmark: a fresh database, N API processes, M workers."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url
from tests import tokens
from tests.processes import Process, api_server, forget_redis_prefix, worker

from bench.ledger import connection
from wallet.persistence.database import drop_database, migrate

BASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/wallet")


@dataclass
class Stack:
    database_url: str
    env: dict[str, str]
    apis: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.apis[0].url


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    name = f"wallet_bench_{uuid.uuid4().hex[:8]}"
    url = make_url(BASE_URL).set(database=name).render_as_string(hide_password=False)
    await migrate(url)
    try:
        yield url
    finally:
        await drop_database(url)


async def quiesce(database_url: str) -> None:
    """Before a phase that writes: VACUUM ANALYZE, as autovacuum would have (this machine's
    PostgreSQL runs without it), then a CHECKPOINT, so that no phase pays for the full-page
    writes of a checkpoint the one before it brought on. PostgreSQL's CPU per transfer in the
    batch phase ranged over 40% between runs of one commit without this."""
    async with connection(database_url) as conn:
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")


@contextmanager
def running(
    database_url: str,
    *,
    apis: int = 1,
    api_workers: int = 1,
    workers: int = 1,
    concurrency: int = 16,
    **settings: str,
) -> Iterator[Stack]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if k not in tokens.FOREIGN_VARIABLES},
        "DATABASE_URL": database_url,
        "WALLET_REDIS_PREFIX": prefix,
        # This run's own secret (made when tests.tokens is first imported), which the bench's
        # clients sign their tokens with.
        **tokens.environment(),
        **settings,
    }
    stack = Stack(database_url, env)
    with ExitStack() as stack_of_processes:
        # Last out, once the processes have stopped: the run's queue and cache entries.
        stack_of_processes.callback(
            forget_redis_prefix, env.get("REDIS_URL", "redis://127.0.0.1:6379/0"), prefix
        )
        for _ in range(apis):
            stack.apis.append(
                stack_of_processes.enter_context(api_server(env, workers=api_workers))
            )
        for _ in range(workers):
            stack.workers.append(
                stack_of_processes.enter_context(worker(env, concurrency=concurrency))
            )
        yield stack
