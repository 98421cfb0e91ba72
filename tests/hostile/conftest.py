"""Inputs no client should send, against real `wallet serve` processes.

Each hostile request is made while a thread of its own asks /healthz for an answer again and
again: the slowest answer is how long the API's event loop was held, and no hostile request
may hold it longer than its budget: MAX_STALL on a machine where the API serves `{ __typename }`
for REFERENCE_TYPENAME_CPU of CPU (the Xeon issue 17 measured), scaled by what that request
costs the API here, measured once per API process, so that a machine half as fast gets twice
the time but the same work. On a machine shared with other work, a slow answer can also be
the API waiting for a core: such an answer does not count against the request when the API
used less than the budget of CPU in all while it was watched, since a loop cannot be held by
its own work for longer than the work took.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import psutil
import pytest

from tests import tokens
from tests.processes import Process, api_server

MAX_STALL = 0.1
REFERENCE_TYPENAME_CPU = 0.34e-3
# `{ __typename }` requests sent to measure what one costs the API here.
CALIBRATION_REQUESTS = 300
# What each API process's requests cost, by its pid: measured once.
_typename_cpu: dict[int, float] = {}


@dataclass
class Watch:
    """The slowest /healthz answer seen while the watch ran, how many were asked, and the
    CPU seconds the API used meanwhile."""

    worst: float = 0.0
    probes: int = 0
    cpu: float = 0.0


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@contextmanager
def healthz_watched(api: Process) -> Iterator[Watch]:
    """Ask /healthz every few milliseconds while the block runs; assert it never stalled."""
    watch = Watch()
    server = psutil.Process(api.popen.pid)
    graphql_url = api.url
    stop = threading.Event()
    first = threading.Event()
    url = graphql_url.removesuffix("/graphql") + "/healthz"

    def probe() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                assert client.get(url).status_code == 200
                watch.worst = max(watch.worst, time.perf_counter() - started)
                watch.probes += 1
                first.set()
                stop.wait(0.005)

    budget = stall_budget(api, server)
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    assert first.wait(10), "/healthz did not answer"
    started = _cpu_seconds(server)
    try:
        yield watch
    finally:
        stop.set()
        thread.join(30)
        watch.cpu = _cpu_seconds(server) - started
    assert watch.worst < budget or watch.cpu < budget, (
        f"/healthz took {watch.worst * 1000:.0f} ms; the API used {watch.cpu * 1000:.0f} ms of "
        f"CPU; the budget here is {budget * 1000:.0f} ms"
    )


def stall_budget(api: Process, server: psutil.Process) -> float:
    """MAX_STALL scaled by this machine's speed, as the API itself shows it: never less."""
    if server.pid not in _typename_cpu:
        # A caller of its own, so the test's own caller keeps its rate-limit window. An API
        # whose rate limits refuse the measurement keeps the unscaled budget.
        header = tokens.bearer(tokens.mint(tokens.caller("calibration")))
        started, answered = _cpu_seconds(server), 0
        with httpx.Client(timeout=30, headers=header) as client:
            while answered < CALIBRATION_REQUESTS:
                if client.post(api.url, json={"query": "{ __typename }"}).status_code != 200:
                    break
                answered += 1
        measured = (_cpu_seconds(server) - started) / max(answered, 1)
        _typename_cpu[server.pid] = measured if answered == CALIBRATION_REQUESTS else 0.0
    return MAX_STALL * max(1.0, _typename_cpu[server.pid] / REFERENCE_TYPENAME_CPU)


@pytest.fixture(scope="session")
def hostile_api(service_env: dict[str, str]) -> Iterator[Process]:
    """One `wallet serve` for the hostile inputs that need no settings of their own."""
    env = {
        **service_env,
        "WALLET_REDIS_PREFIX": f"{service_env['WALLET_REDIS_PREFIX']}-hostile",
        "WALLET_SETTLE_INLINE": "1",
    }
    with api_server(env) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
        yield client


@pytest.fixture
def env(service_env: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """The run's environment with a Redis prefix of this test's own (its own rate-limit
    counters), for tests that start a server with settings of their own."""
    prefix = f"{service_env['WALLET_REDIS_PREFIX']}-{request.node.name}"
    return {**service_env, "WALLET_REDIS_PREFIX": prefix}
