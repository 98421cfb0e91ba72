"""The wallet's benchmark: the whole stack against PostgreSQL's own limit, in one run.

    python -m bench [--apis 2] [--workers 1] [--concurrency 256] [--connections 32]
                    [--batch-connections 8] [--duration 10] [--quick] [--out bench/results]
                    [--only PHASE,...]

One run, against a fresh database on this machine's PostgreSQL and Redis:
  pgbench    the baseline: a pgbench script doing one minimal transfer per transaction
  service    the service layer straight on PostgreSQL, in-process: no HTTP, GraphQL or Redis
  deposits   deposit mutations from wrk: throughput, p50/p99
  transfers  transfer mutations from wrk, then PostgreSQL's timestamps: COMPLETED per second
             and request-to-COMPLETED latency, uniform over the wallets and all touching one
             (mutation_overhead: the API's CPU per transfer request over its CPU per
             `{ __typename }` request in the reads phase; completion_p99_ms: the uniform
             phase's request-to-COMPLETED p99; db_cost_ratio_single: PostgreSQL's CPU per
             transfer over its CPU per pgbench transaction)
  batches    transferBatch requests of 100 transfers, uniform over the wallets, plain then
             atomic: transfers COMPLETED per second (batch_tps, atomic_batch_tps) and their
             ratio to pgbench_tps; db_cost_ratio as above, for the plain batches
  reads      the cached `wallet { balance }` query against `{ __typename }`, from wrk
  pages      `wallet { balance transactions(first: 20) {...} }` against `{ __typename }` on
             the same connections (page_ratio); every wallet first gets 20 transactions
db_capacity_tps, db_capacity_single_tps: the transfers per second one PostgreSQL on a machine
like this one could carry with the API and workers elsewhere, = cores / PostgreSQL's
CPU-seconds per transfer (batches, single transfers): CPU-bound, an upper bound.
Prints a table, then one JSON line; writes results.json and latency.png to --out.
The load comes from wrk (C); each phase reports the CPU wrk used, and where every core went.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bench import chart
from bench.load import wrk
from bench.pgbench import pgbench
from bench.report import summary_line, table, write
from bench.run import PHASES, Run

ROOT = Path(__file__).resolve().parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--apis", type=int, default=2, help="API processes (`wallet serve --workers N`); default 2"
    )
    parser.add_argument("--workers", type=int, default=1, help="`wallet worker` processes")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=256,
        help="jobs each worker runs (and batches) at once; `wallet worker`'s default",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=32,
        help="wrk's open HTTP connections (requests in flight)",
    )
    parser.add_argument(
        "--batch-connections",
        type=int,
        default=8,
        help="wrk's connections in the batch phases (each request carries 100 transfers)",
    )
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds of load in each measured phase"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short phases and a capped transfer count: under a minute in all",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "results",
        help="where results.json, latency.png and the scripts go",
    )
    parser.add_argument(
        "--wallets", type=int, default=1000, help="wallets the uniform phases pick from"
    )
    parser.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"comma-separated phases to run, of {','.join(PHASES)}",
    )
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--pgbench-clients", type=int, default=8)
    parser.add_argument("--pgbench-threads", type=int, default=2)
    parser.add_argument(
        "--pgbench-protocol",
        choices=("simple", "extended", "prepared"),
        default="prepared",
        help="pgbench's query protocol; asyncpg, as the service uses it, prepares its statements",
    )
    parser.add_argument(
        "--transfers",
        type=int,
        default=0,
        help="stop each transfer phase after about this many requests (0: run for --duration)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=0,
        help="seconds to wait for a transfer backlog to settle (default: 120, or 20 with --quick)",
    )
    args = parser.parse_args(argv)
    args.only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(args.only) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
    if args.quick:
        args.duration = min(args.duration, 3)
        args.transfers = args.transfers or 600
    args.drain_timeout = args.drain_timeout or (20.0 if args.quick else 120.0)
    return args


def missing_tools(phases: list[str]) -> list[str]:
    missing = []
    if "pgbench" in phases and pgbench() is None:
        missing.append("pgbench (apt-get install -y postgresql-client)")
    if set(phases) & {"deposits", "transfers", "batches", "reads", "pages"} and wrk() is None:
        missing.append("wrk (apt-get install -y wrk)")
    return missing


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    missing = missing_tools(args.only)
    if missing:
        print(f"missing: {'; '.join(missing)}", file=sys.stderr)
        return 2
    run = Run(args)
    figures = asyncio.run(run.run())
    if not chart.available():
        print("matplotlib is missing (pip install -e '.[bench]'): no chart", file=sys.stderr)
    results = write(args.out, figures, run.http, run.settled)
    print(table(figures, run.rows))
    print(f"results: {results}" + (f", chart: {figures['chart']}" if "chart" in figures else ""))
    print(summary_line(figures))
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
