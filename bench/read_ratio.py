"""A balance read's throughput against the trivial `{ __typename }`, on one server, in one run.

    python -m bench.read_ratio [--seconds 5] [--rounds 5] [--connections 32] [--client wrk]

Starts `wallet serve` (one uvicorn process) on a fresh database, makes a wallet, then runs
rounds that measure each query for `--seconds` with the same load generator, alternating
which goes first. Prints each round, the medians and their ratio (the goal is >= 0.8).

The load generator is wrk (`apt-get install wrk`) when it is installed, else a few
processes of httpx clients. To show that it is not the bottleneck, each run also reports
the CPU the server used (100% is one core: the server is saturated) and the CPU the load
generator used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from redis import Redis

from bench.stack import fresh_database, running

TRIVIAL = "{ __typename }"
BALANCE = '{ wallet(id: "%s") { balance } }'
CREATE = (
    'mutation { createWallet(input: {currency: "USD", initialBalance: "1234.56"}) '
    "{ wallet { id } errors { code } } }"
)
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    requests_per_second: float
    server_cpu: float  # share of one core, 1.0 = one core busy all the time
    client_cpu: float


def _process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its descendants."""
    total = 0
    for member in _process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk_load(url: str, body: str, seconds: float, connections: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [==[{body}]==]\n"
        )
    try:
        out = subprocess.run(
            # wrk takes whole seconds.
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failures:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match[1])


def _python_client(url: str, body: str, seconds: float, connections: int) -> int:
    async def clients() -> int:
        done = 0
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=connections)
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def one() -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    response = await client.post(url, content=body, headers=headers)
                    response.raise_for_status()
                    done += 1

            await asyncio.gather(*(one() for _ in range(connections)))
        return done

    return asyncio.run(clients())


def python_load(url: str, body: str, seconds: float, connections: int) -> float:
    processes = max(1, min(4, (os.cpu_count() or 2) - 1))
    per_process = max(1, connections // processes)
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        counts = pool.starmap(_python_client, [(url, body, seconds, per_process)] * processes)
    return sum(counts) / seconds


Load = Callable[[str, str, float, int], float]


def measure(load: Load, url: str, pid: int, body: str, seconds: float, connections: int) -> Run:
    server_before, client_before = cpu_seconds(pid), children_cpu()
    started = time.monotonic()
    rate = load(url, body, seconds, connections)
    elapsed = time.monotonic() - started
    return Run(
        rate,
        (cpu_seconds(pid) - server_before) / elapsed,
        (children_cpu() - client_before) / elapsed,
    )


def check(url: str, body: str) -> None:
    """Each query really answers what it should before it is measured."""
    response = httpx.post(url, content=body, headers={"content-type": "application/json"})
    response.raise_for_status()
    assert "errors" not in response.json(), response.text


def rounds(database_url: str, args: argparse.Namespace) -> dict[str, list[float]]:
    load: Load
    if args.client == "wrk" or (args.client == "auto" and shutil.which("wrk")):
        load, client_name = wrk_load, "wrk -t1"
    else:
        load, client_name = python_load, "httpx processes"
    with running(database_url, apis=1, api_workers=1, workers=0) as stack:
        url, pid = stack.url, stack.apis[0].popen.pid
        created = httpx.post(url, json={"query": CREATE}).json()
        wallet_id = created["data"]["createWallet"]["wallet"]["id"]
        bodies = {
            "trivial": json.dumps({"query": TRIVIAL}),
            "balance": json.dumps({"query": BALANCE % wallet_id}),
        }
        for body in bodies.values():
            check(url, body)
            measure(load, url, pid, body, args.warmup, args.connections)
        print(
            f"{client_name}, {args.connections} connections, {args.seconds:g} s a run, "
            f"{args.rounds} rounds; CPU as a share of one core"
        )
        rates: dict[str, list[float]] = {name: [] for name in bodies}
        for n in range(args.rounds):
            order = list(bodies) if n % 2 == 0 else list(reversed(bodies))
            for name in order:
                run = measure(load, url, pid, bodies[name], args.seconds, args.connections)
                rates[name].append(run.requests_per_second)
                print(
                    f"round {n + 1} {name:>8}: {run.requests_per_second:8.0f} req/s  "
                    f"server CPU {run.server_cpu:4.0%}  load generator CPU {run.client_cpu:4.0%}"
                )
        prefix = stack.env["WALLET_REDIS_PREFIX"]
    with Redis.from_url(stack.env.get("REDIS_URL", "redis://127.0.0.1:6379/0")) as redis:
        for key in redis.scan_iter(match=f"{prefix}:*"):
            redis.unlink(key)
    return rates


async def bench(args: argparse.Namespace) -> dict[str, float]:
    async with fresh_database() as database_url:
        rates = await asyncio.to_thread(rounds, database_url, args)
    trivial = statistics.median(rates["trivial"])
    balance = statistics.median(rates["balance"])
    return {"trivial": trivial, "balance": balance, "ratio": balance / trivial}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    figures = asyncio.run(bench(parser.parse_args()))
    print(
        f"median trivial {figures['trivial']:.0f} req/s, balance {figures['balance']:.0f} "
        f"req/s, ratio {figures['ratio']:.2f} (goal >= 0.8)"
    )


if __name__ == "__main__":
    main()
