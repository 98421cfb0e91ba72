"""A balance read's throughput against the trivial `{ __typename }`, on one server, in one run.

    python -m bench.read_ratio [--seconds 5] [--rounds 5] [--connections 32] [--wallets 100]

Starts one `wallet serve` (one uvicorn process) on a fresh database, makes the wallets, then
runs rounds that load the server with wrk (bench/load.py, bench/graphql.lua) for `--seconds`
with `{ wallet(id) { balance } }` on a random wallet, then with `{ __typename }`, swapping
which goes first each round. Prints each run, the medians and their ratio (goal: >= 0.8).

To show that wrk is not what limits the rate, each run reports the CPU the server used (1.00
is one core, all the time: the server is saturated) and the CPU wrk used. The machine's other
busy time is reported too, since a shared machine skews any single run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests import tokens

from bench.cpu import machine_busy_seconds
from bench.load import LoadRun, run_wrk
from bench.stack import fresh_database, running
from bench.stats import median, ratio

CREATE = (
    'mutation { createWallet(input: {currency: "USD", initialBalance: "1234.56"}) '
    "{ wallet { id } errors { code } } }"
)
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU of one process (uvicorn with one worker serves in-process)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Run:
    query: str
    load: LoadRun
    server_cores: float
    other_cores: float  # the machine's busy cores not explained by the server or wrk


def measure(url: str, pid: int, query: str, wallets: list[str], args: argparse.Namespace) -> Run:
    busy_before, _ = machine_busy_seconds()
    server_before = _cpu_seconds(pid)
    with tempfile.TemporaryDirectory() as scratch:
        load = run_wrk(
            url,
            query,
            wallets=wallets,
            connections=args.connections,
            threads=1,
            seconds=args.seconds,
            scratch=Path(scratch),
            prefix=f"ratio-{uuid.uuid4().hex[:8]}",
        )
    if not load.clean:
        raise RuntimeError(f"bad answers during {query}: {load.samples}")
    server = (_cpu_seconds(pid) - server_before) / load.seconds
    busy, _ = machine_busy_seconds()
    machine = (busy - busy_before) / load.seconds
    return Run(query, load, server, max(0.0, machine - server - load.client_cores))


def rounds(database_url: str, args: argparse.Namespace) -> dict[str, list[Run]]:
    # The limits would refuse most of the load: a benchmark measures the server, not them.
    with running(
        database_url, apis=1, api_workers=1, workers=0, WALLET_RATE_LIMITS_ENABLED="false"
    ) as stack:
        url, pid = stack.url, stack.apis[0].popen.pid
        with httpx.Client(timeout=30, headers=tokens.header()) as client:
            wallets = [
                client.post(url, json={"query": CREATE}).json()["data"]["createWallet"]["wallet"][
                    "id"
                ]
                for _ in range(args.wallets)
            ]
        for query in ("wallet", "typename"):  # warm the cache, the pools and the code
            measure(url, pid, query, wallets, argparse.Namespace(**{**vars(args), "seconds": 1}))
        print(
            f"wrk, 1 thread, {args.connections} connections, {args.seconds} s a run, "
            f"{args.wallets} wallets; CPU in cores (1.00 = one core busy all the time)"
        )
        runs: dict[str, list[Run]] = {"wallet": [], "typename": []}
        for n in range(args.rounds):
            order = ["wallet", "typename"] if n % 2 == 0 else ["typename", "wallet"]
            for query in order:
                run = measure(url, pid, query, wallets, args)
                runs[query].append(run)
                print(
                    f"round {n + 1} {query:>8}: {run.load.rps:7.0f} req/s  "
                    f"p99 {run.load.percentile(99):6.1f} ms  server {run.server_cores:.2f}  "
                    f"wrk {run.load.client_cores:.2f}  rest of the machine {run.other_cores:.2f}"
                )
    return runs


async def bench(args: argparse.Namespace) -> dict[str, float]:
    async with fresh_database() as database_url:
        runs = await asyncio.to_thread(rounds, database_url, args)
    return medians(runs)


def medians(runs: dict[str, list[Run]]) -> dict[str, float]:
    """The median rates of each query, and their ratios."""

    def rate(query: str, per_core: bool = False) -> float:
        return median(r.load.rps / r.server_cores if per_core else r.load.rps for r in runs[query])

    return {
        "wallet": rate("wallet"),
        "typename": rate("typename"),
        "ratio": ratio(rate("wallet"), rate("typename")),
        # Requests per second of the server's CPU: steadier when others share the machine.
        "wallet_per_core": rate("wallet", per_core=True),
        "typename_per_core": rate("typename", per_core=True),
        "ratio_per_core": ratio(rate("wallet", per_core=True), rate("typename", per_core=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wallets", type=int, default=100)
    figures = asyncio.run(bench(parser.parse_args()))
    print(
        f"median {{ wallet {{ balance }} }} {figures['wallet']:.0f} req/s, "
        f"{{ __typename }} {figures['typename']:.0f} req/s, "
        f"ratio {figures['ratio']:.2f} (goal >= 0.8)\n"
        f"per core of the server: {figures['wallet_per_core']:.0f} and "
        f"{figures['typename_per_core']:.0f} req/s, ratio {figures['ratio_per_core']:.2f}"
    )


if __name__ == "__main__":
    main()
