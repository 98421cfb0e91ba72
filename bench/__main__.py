"""The wallet's benchmark: the whole stack against PostgreSQL's own limit, in one run.

    python -m bench [--apis 2] [--workers 1] [--concurrency 256] [--connections 32]
                    [--duration 10] [--quick] [--out bench/results] [--only PHASE,...]

One run, against a fresh database on this machine's PostgreSQL and Redis:
  pgbench    the baseline: a pgbench script doing one minimal transfer per transaction
  service    the service layer straight on PostgreSQL, in-process: no HTTP, GraphQL or Redis
  deposits   deposit mutations from wrk: throughput, p50/p99
  transfers  transfer mutations from wrk, then PostgreSQL's timestamps: COMPLETED per second
             and request-to-COMPLETED latency, uniform over the wallets and all touching one
  reads      the cached `wallet { balance }` query against `{ __typename }`, from wrk
Prints a table, then one JSON line; writes results.json and latency.png to --out.
The load comes from wrk (C); each phase reports the CPU wrk used, and where every core went.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench import chart
from bench.cpu import CpuMeter, Groups
from bench.load import LoadRun, run_wrk, wrk
from bench.pgbench import Baseline, pgbench, run_baseline, scratch_name
from bench.service_layer import measure as measure_service_layer
from bench.settle_latency import Settlement, settlement
from bench.stack import BASE_URL, Stack, fresh_database, running

PHASES = ("pgbench", "service", "deposits", "transfers", "reads")
ROOT = Path(__file__).resolve().parent
KEYS = (
    "pgbench_tps",
    "deposit_rps",
    "deposit_p50_ms",
    "deposit_p99_ms",
    "transfer_tps",
    "transfer_hot_tps",
    "transfer_ratio",
    "hot_ratio",
    "read_ratio",
)
TARGETS = {
    "transfer_ratio": (">=", 0.5),
    "hot_ratio": (">=", 0.8),
    "deposit_p99_ms": ("<=", 25.0),
    "read_ratio": (">=", 0.8),
}
START_BALANCE = "1000000.00"
CPU_ORDER = ("api", "worker", "postgres", "redis", "client", "others", "idle")


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
    if set(phases) & {"deposits", "transfers", "reads"} and wrk() is None:
        missing.append("wrk (apt-get install -y wrk)")
    return missing


class Run:
    """One benchmark run: the phases share the stack, the wallets and the figures."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.scripts = self.out / "scripts"
        self.scripts.mkdir(parents=True, exist_ok=True)
        self.run_id = uuid.uuid4().hex[:8]
        self.rows: list[dict[str, Any]] = []
        self.figures: dict[str, Any] = {}
        self.http: dict[str, list[tuple[float, float]]] = {}
        self.settled: dict[str, list[float]] = {}
        self.wallets: list[str] = []
        self.problems: list[str] = []
        # Per phase, the busiest processes that were not ours (other users of the machine).
        self.crowd: dict[str, list[str]] = {}

    # -- phases ------------------------------------------------------------------------

    async def baseline(self) -> None:
        name = scratch_name()
        meter = CpuMeter(Groups({"client": [os.getpid()]}, [name])).start()
        result: Baseline = await run_baseline(
            BASE_URL,
            accounts=self.args.wallets,
            clients=self.args.pgbench_clients,
            threads=self.args.pgbench_threads,
            seconds=max(2, self.args.duration),
            mode=self.args.pgbench_protocol,
            scratch=self.scripts,
            name=name,
        )
        cores = self.stop(meter, "pgbench")
        if not result.consistent or result.failed:
            self.problems.append(f"pgbench: {result.failed} failed, consistent={result.consistent}")
        self.figures["pgbench_tps"] = result.tps
        self.figures["pgbench"] = {k: v for k, v in asdict(result).items() if k != "output"}
        self.rows.append(
            {
                "phase": f"pgbench transfer ({result.clients} clients, {result.mode})",
                "rate": f"{result.tps:,.0f} tps",
                "p50": f"{result.latency_ms:.2f} avg",
                "p99": "",
                "checked": f"{result.transactions:,} tx, {result.failed} failed, "
                f"ledger {'ok' if result.consistent else 'WRONG'}",
                "cpu": cores,
            }
        )

    async def service_layer(self) -> None:
        async with fresh_database() as database_url:
            name = make_url(database_url).database or ""
            groups = Groups({"client": [os.getpid()]}, [name])
            rates = await measure_service_layer(
                database_url,
                seconds=max(2, self.args.duration),
                meter=lambda: CpuMeter(groups).start(),
                # As many requests in flight as the HTTP phases have.
                clients=self.args.connections,
                wallets=self.args.wallets,
            )
            consistent = await self.ledger_check(database_url)
        self.figures["service"] = {
            r.name: {"per_second": r.per_second, "operations": r.operations, "cores": r.cores}
            for r in rates
        }
        for rate, key in zip(rates, ("deposit", "submit", "settle"), strict=True):
            self.figures[f"service_{key}_ops"] = rate.per_second
        for rate in rates:
            self.rows.append(
                {
                    "phase": f"service layer: {rate.name}",
                    "rate": f"{rate.per_second:,.0f} /s",
                    "p50": "",
                    "p99": "",
                    "checked": f"{rate.operations:,} done, {self.args.connections} "
                    f"coroutines, ledger {'ok' if consistent else 'WRONG'}",
                    "cpu": rate.cores,
                }
            )

    async def create_wallets(self, stack: Stack) -> None:
        """Setup, not measured: the wallets, created through the API, in batches."""
        per_request = 20
        mutation = (
            "mutation { "
            + " ".join(
                f'w{i}: createWallet(input: {{initialBalance: "{START_BALANCE}"}}) '
                "{ wallet { id } errors { code } }"
                for i in range(per_request)
            )
            + " }"
        )
        batches = math.ceil(self.args.wallets / per_request)
        gate = asyncio.Semaphore(8)
        async with httpx.AsyncClient(timeout=60) as client:

            async def batch() -> list[str]:
                async with gate:
                    response = await client.post(stack.url, json={"query": mutation})
                response.raise_for_status()
                data = response.json()["data"]
                return [data[f"w{i}"]["wallet"]["id"] for i in range(per_request)]

            results = await asyncio.gather(*(batch() for _ in range(batches)))
        self.wallets = [w for ids in results for w in ids][: self.args.wallets]

    def load(
        self,
        stack: Stack,
        mode: str,
        *,
        seconds: int,
        prefix: str = "",
        hot: str | None = None,
        budget: int = 0,
    ) -> tuple[LoadRun, dict[str, float]]:
        meter = CpuMeter(self.groups(stack)).start()
        run = run_wrk(
            stack.url,
            mode,
            wallets=self.wallets,
            hot=hot,
            prefix=prefix or f"b{self.run_id}",
            connections=self.args.connections,
            threads=self.args.wrk_threads,
            seconds=seconds,
            scratch=self.scripts,
            budget=budget,
        )
        cores = self.stop(meter, mode)
        if not run.clean:
            self.problems.append(
                f"{mode}: {run.bad} bad responses ({run.non2xx} non-2xx), socket errors "
                f"{run.socket_errors}; first: {run.samples[:1]}"
            )
        return run, cores

    def http_row(self, label: str, run: LoadRun, cores: dict[str, float]) -> dict[str, Any]:
        return {
            "phase": label,
            "rate": f"{run.rps:,.0f} rps",
            "p50": f"{run.percentile(50):.1f}",
            "p99": f"{run.percentile(99):.1f}",
            "checked": f"{run.good:,} ok, {run.bad} bad",
            "cpu": cores,
        }

    async def deposits(self, stack: Stack) -> None:
        run, cores = self.load(
            stack, "deposit", seconds=self.args.duration, prefix=f"d{self.run_id}"
        )
        self.figures.update(
            deposit_rps=run.rps,
            deposit_p50_ms=run.percentile(50),
            deposit_p99_ms=run.percentile(99),
        )
        self.figures["deposit"] = self.describe(run, cores)
        recorded = await self.count_recorded(stack, f"d{self.run_id}")
        self.figures["deposit"]["recorded"] = recorded
        if recorded < run.good:
            # Fewer rows than answers: some clientTransactionIds were sent twice.
            self.problems.append(f"deposits: {run.good} answered but {recorded} recorded")
        self.http["deposit"] = run.percentiles
        self.rows.append(self.http_row(f"deposits ({self.args.connections} conn)", run, cores))

    async def transfers(self, stack: Stack, hot: bool) -> None:
        name = "transfer_hot" if hot else "transfer"
        prefix = f"{'h' if hot else 't'}{self.run_id}"
        cap = self.args.transfers
        budget = math.ceil(cap / self.args.wrk_threads) if cap else 0
        meter = CpuMeter(self.groups(stack)).start()
        run, _ = self.load(
            stack,
            "hot" if hot else "transfer",
            seconds=self.args.duration,
            prefix=prefix,
            hot=self.wallets[0] if hot else None,
            budget=budget,
        )
        settled: Settlement = await settlement(stack.database_url, prefix, self.args.drain_timeout)
        cores = self.stop(meter, name)  # submission and drain together
        if settled.failed or settled.pending:
            self.problems.append(
                f"{name}: {settled.failed} FAILED {settled.failures}, "
                f"{settled.pending} still PENDING"
            )
        self.figures[f"{name}_tps"] = settled.tps
        self.figures[f"{name}_p50_ms"] = settled.p50_ms
        self.figures[f"{name}_p99_ms"] = settled.p99_ms
        self.figures[name] = {
            "completed": settled.completed,
            "failed": settled.failed,
            "pending": settled.pending,
            "seconds": settled.seconds,
            "submit": self.describe(run, cores),
        }
        self.http[f"{name} (submit)"] = run.percentiles
        self.settled["hot" if hot else "uniform"] = settled.latencies_ms
        label = "hot (one wallet in each)" if hot else f"uniform ({len(self.wallets)} wallets)"
        self.rows.append(
            {
                "phase": f"transfers {label}",
                "rate": f"{settled.tps:,.0f} tps",
                "p50": f"{settled.p50_ms:.1f}",
                "p99": f"{settled.p99_ms:.1f}",
                "checked": f"{settled.completed:,} completed, {settled.failed} failed, "
                f"{settled.pending} pending; sent at {run.rps:,.0f}/s",
                "cpu": cores,
            }
        )

    async def reads(self, stack: Stack) -> None:
        # Warm the cache (and the connection pools) before measuring.
        self.load(stack, "wallet", seconds=1)
        self.load(stack, "typename", seconds=1)
        wallet, wallet_cores = self.load(stack, "wallet", seconds=self.args.duration)
        typename, typename_cores = self.load(stack, "typename", seconds=self.args.duration)
        self.figures.update(
            read_wallet_rps=wallet.rps,
            read_typename_rps=typename.rps,
            read_ratio=wallet.rps / typename.rps if typename.rps else math.nan,
            read_wallet_p99_ms=wallet.percentile(99),
            read_typename_p99_ms=typename.percentile(99),
        )
        self.figures["read_wallet"] = self.describe(wallet, wallet_cores)
        self.figures["read_typename"] = self.describe(typename, typename_cores)
        self.http["wallet { balance }"] = wallet.percentiles
        self.http["{ __typename }"] = typename.percentiles
        self.rows.append(self.http_row("reads wallet { balance }", wallet, wallet_cores))
        self.rows.append(self.http_row("reads { __typename }", typename, typename_cores))

    # -- helpers -----------------------------------------------------------------------

    def groups(self, stack: Stack) -> Groups:
        return Groups(
            {
                "api": [p.popen.pid for p in stack.apis],
                "worker": [p.popen.pid for p in stack.workers],
                "client": [os.getpid()],
            },
            [make_url(stack.database_url).database or ""],
        )

    def stop(self, meter: CpuMeter, phase: str) -> dict[str, float]:
        cores = meter.stop()
        self.crowd[phase] = meter.busiest_others
        return cores

    @staticmethod
    def describe(run: LoadRun, cores: dict[str, float]) -> dict[str, Any]:
        return {
            "rps": run.rps,
            "responses": run.responses,
            "good": run.good,
            "bad": run.bad,
            "non2xx": run.non2xx,
            "socket_errors": run.socket_errors,
            "seconds": run.seconds,
            "mean_ms": run.mean_ms,
            "p50_ms": run.percentile(50),
            "p99_ms": run.percentile(99),
            "p999_ms": run.percentile(99.9),
            "wrk_cores": round(run.client_cores, 3),
            "cores": cores,
        }

    @staticmethod
    async def count_recorded(stack: Stack, prefix: str) -> int:
        dsn = (
            make_url(stack.database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        conn = await asyncpg.connect(dsn)
        try:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM transactions WHERE client_transaction_id LIKE $1",
                prefix + "-%",
            )
        finally:
            await conn.close()
        return count

    async def ledger_check(self, database_url: str) -> bool:
        """After the load: every balance is its ledger's sum, none negative, money conserved."""
        dsn = (
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        conn = await asyncpg.connect(dsn)
        try:
            unexplained = await conn.fetchval(
                "SELECT count(*) FROM wallets w WHERE w.balance < 0 OR w.balance <> coalesce("
                "(SELECT sum(delta) FROM ledger_entries l WHERE l.wallet_id = w.id), 0)"
            )
            total = await conn.fetchval("SELECT coalesce(sum(balance), 0) FROM wallets")
            deposited = await conn.fetchval(
                "SELECT coalesce(sum(amount), 0) FROM transactions"
                " WHERE type = 'DEPOSIT' AND status = 'COMPLETED'"
            )
        finally:
            await conn.close()
        consistent = unexplained == 0 and total == deposited
        if not consistent:
            self.problems.append(
                f"ledger: {unexplained} unexplained balances, total {total} "
                f"vs deposited {deposited}"
            )
        return bool(consistent)

    # -- the run -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        args = self.args
        started = time.monotonic()
        self.figures["machine"] = machine()
        self.figures["config"] = {
            "apis": args.apis,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "connections": args.connections,
            "duration": args.duration,
            "quick": args.quick,
            "wallets": args.wallets,
            "transfers_cap": args.transfers,
            "wrk_threads": args.wrk_threads,
            "pgbench_clients": args.pgbench_clients,
            "pgbench_protocol": args.pgbench_protocol,
            "phases": args.only,
        }
        if "pgbench" in args.only:
            await self.baseline()  # before the stack starts, so nothing else of ours runs
        if "service" in args.only:
            await self.service_layer()
        if set(args.only) - {"pgbench", "service"}:
            async with fresh_database() as database_url:
                with running(
                    database_url,
                    apis=1,
                    api_workers=args.apis,
                    workers=args.workers,
                    concurrency=args.concurrency,
                    WALLET_RATE_LIMITS_ENABLED="false",
                ) as stack:
                    try:
                        await self.create_wallets(stack)
                        if "deposits" in args.only:
                            await self.deposits(stack)
                        if "transfers" in args.only:
                            await self.transfers(stack, hot=False)
                            await self.transfers(stack, hot=True)
                        if "reads" in args.only:
                            await self.reads(stack)
                    except Exception:
                        for process in [*stack.apis, *stack.workers]:
                            sys.stderr.write(f"--- {process.log}\n{process.output()[-3000:]}\n")
                        raise
                    self.figures["ledger_consistent"] = await self.ledger_check(database_url)
        self.derive()
        self.figures["seconds"] = round(time.monotonic() - started, 1)
        self.figures["problems"] = self.problems
        self.figures["busiest_other_processes"] = self.crowd
        return self.figures

    def derive(self) -> None:
        f = self.figures

        def ratio(a: str, b: str) -> float:
            if a in f and b in f and f[b]:
                return float(f[a]) / float(f[b])
            return math.nan

        f["transfer_ratio"] = ratio("transfer_tps", "pgbench_tps")
        f["hot_ratio"] = ratio("transfer_hot_tps", "transfer_tps")
        f.setdefault("read_ratio", math.nan)
        loads = [v for v in f.values() if isinstance(v, dict) and "wrk_cores" in v]
        loads += [v["submit"] for v in f.values() if isinstance(v, dict) and "submit" in v]
        if loads:
            f["wrk_cores_max"] = max(v["wrk_cores"] for v in loads)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_before": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def report(figures: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = []
    head = f"{'phase':<40} {'rate':>11} {'p50 ms':>9} {'p99 ms':>8}  {'checked':<50} CPU cores"
    lines += [head, "-" * len(head)]
    for row in rows:
        cpu = " ".join(f"{k} {row['cpu'][k]:.2f}" for k in CPU_ORDER if k in row["cpu"])
        lines.append(
            f"{row['phase']:<40} {row['rate']:>11} {row['p50']:>9} {row['p99']:>8}  "
            f"{row['checked']:<50} {cpu}"
        )
    lines.append("")
    for key in KEYS:
        target = TARGETS.get(key)
        note = ""
        value = figures.get(key, math.nan)
        if target and isinstance(value, float) and not math.isnan(value):
            op, bound = target
            met = value >= bound if op == ">=" else value <= bound
            note = f"   target {op} {bound:g}: {'met' if met else 'NOT met'}"
        lines.append(f"{key:<18} {fmt(value):>10}{note}")
    if "wrk_cores_max" in figures:
        lines.append(
            f"{'wrk_cores_max':<18} {fmt(figures['wrk_cores_max']):>10}"
            "   (CPU the load generator used, in cores, in its busiest phase)"
        )
    m = figures["machine"]
    lines.append(
        f"machine: {m['cpu']}, {m['cores']} cores, load before "
        f"{', '.join(f'{x:.2f}' for x in m['load_before'])}; commit {m['commit']}"
    )
    for phase, busiest in figures.get("busiest_other_processes", {}).items():
        if busiest:
            lines.append(f"others during {phase}: {'; '.join(busiest)}")
    for problem in figures["problems"]:
        lines.append(f"PROBLEM: {problem}")
    return "\n".join(lines)


def summary_line(figures: dict[str, Any]) -> str:
    keys = [
        *KEYS,
        "transfer_p50_ms",
        "transfer_p99_ms",
        "transfer_hot_p50_ms",
        "transfer_hot_p99_ms",
        "read_wallet_rps",
        "read_typename_rps",
        "service_deposit_ops",
        "service_submit_ops",
        "service_settle_ops",
        "wrk_cores_max",
        "ledger_consistent",
    ]
    line: dict[str, Any] = {}
    for key in keys:
        value = figures.get(key)
        if isinstance(value, float):
            value = None if math.isnan(value) else float(f"{value:.6g}")
        line[key] = value
    m = figures["machine"]
    line["machine"] = f"{m['cpu']} x{m['cores']}"
    line["problems"] = len(figures["problems"])
    return json.dumps(line)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    missing = missing_tools(args.only)
    if missing:
        print(f"missing: {'; '.join(missing)}", file=sys.stderr)
        return 2
    run = Run(args)
    figures = asyncio.run(run.run())
    args.out.mkdir(parents=True, exist_ok=True)
    if chart.available() and (run.http or run.settled):
        m = figures["machine"]
        c = figures["config"]
        title = (
            f"{m['cpu']} x{m['cores']}, {m['when']}, commit {m['commit']}; apis {c['apis']},"
            f" workers {c['workers']}x{c['concurrency']}, {c['connections']} connections,"
            f" {c['duration']} s per phase"
        )
        figures["chart"] = str(chart.draw(args.out / "latency.png", run.http, run.settled, title))
    elif not chart.available():
        print("matplotlib is missing (pip install -e '.[bench]'): no chart", file=sys.stderr)
    detail = {
        **figures,
        "http_percentiles": run.http,
        "settled_ms": {k: sorted(v) for k, v in run.settled.items()},
    }
    (args.out / "results.json").write_text(json.dumps(detail, indent=1, default=str) + "\n")
    print(report(figures, run.rows))
    print(
        f"results: {args.out / 'results.json'}"
        + (f", chart: {figures['chart']}" if "chart" in figures else "")
    )
    print(summary_line(figures))
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
