"""One benchmark run: its phases share the stack, the wallets and the figures."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url
from tests import tokens

from bench.cpu import CpuMeter, Groups
from bench.ledger import connection, count_recorded, ledger_problem
from bench.load import LoadRun, run_wrk
from bench.pgbench import Baseline, run_baseline, scratch_name
from bench.report import machine
from bench.service_layer import measure as measure_service_layer
from bench.settle_latency import Settlement, settled_since, wait_settled
from bench.stack import BASE_URL, Stack, fresh_database, quiesce, running
from bench.stats import per_unit_ms, ratio

PHASES = ("pgbench", "service", "deposits", "transfers", "batches", "reads", "pages")
START_BALANCE = "1000000.00"
# Transfers in each transferBatch request of the batch phases.
BATCH_SIZE = 100
# The page the pages phase reads holds this many transactions (graphql.lua's PAGE asks for
# `first: 20`); every wallet is first given at least as many.
PAGE_SIZE = 20
FILL = (
    "mutation($t: [TransferInput!]!) { transferBatch(input: {transfers: $t}) "
    "{ results { errors { code } } errors { code } } }"
)


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
        # Per phase, the CPU seconds of each group (api, worker, postgres, ...), unrounded.
        self.cpu: dict[str, dict[str, float]] = {}
        # Per phase, the busiest processes that were not ours (other users of the machine).
        self.crowd: dict[str, list[str]] = {}

    # -- phases ------------------------------------------------------------------------

    async def baseline(self) -> None:
        name = scratch_name()
        meters: list[CpuMeter] = []

        def meter() -> CpuMeter:
            meters.append(CpuMeter(Groups({"client": [os.getpid()]}, [name])).start())
            return meters[-1]

        result: Baseline = await run_baseline(
            BASE_URL,
            accounts=self.args.wallets,
            clients=self.args.pgbench_clients,
            threads=self.args.pgbench_threads,
            seconds=max(2, self.args.duration),
            mode=self.args.pgbench_protocol,
            scratch=self.scripts,
            name=name,
            meter=meter,
        )
        # Only pgbench's own run is metered: not the scratch database's setup, check or drop.
        cores = self.stop(meters[0], "pgbench")
        if not result.consistent or result.failed:
            self.problems.append(f"pgbench: {result.failed} failed, consistent={result.consistent}")
        self.figures["pgbench_tps"] = result.tps
        self.figures["pgbench"] = {k: v for k, v in asdict(result).items() if k != "output"}
        self.figures["pgbench"]["postgres_cpu_ms_per_transfer"] = per_unit_ms(
            self.cpu["pgbench"].get("postgres"), result.transactions
        )
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
        async with httpx.AsyncClient(timeout=60, headers=tokens.header()) as client:

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
        label: str = "",
        connections: int = 0,
    ) -> tuple[LoadRun, dict[str, float]]:
        """wrk in `mode`; its CPU by group is kept under `label` (the mode when not given)."""
        meter = CpuMeter(self.groups(stack)).start()
        run = run_wrk(
            stack.url,
            mode,
            wallets=self.wallets,
            hot=hot,
            prefix=prefix or f"b{self.run_id}",
            connections=connections or self.args.connections,
            threads=self.args.wrk_threads,
            seconds=seconds,
            scratch=self.scripts,
            budget=budget,
            batch=BATCH_SIZE,
        )
        cores = self.stop(meter, label or mode)
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
        recorded = await count_recorded(stack.database_url, f"d{self.run_id}")
        self.figures["deposit"]["recorded"] = recorded
        if recorded < run.good:
            # Fewer rows than answers: some clientTransactionIds were sent twice.
            self.problems.append(f"deposits: {run.good} answered but {recorded} recorded")
        self.http["deposit"] = run.percentiles
        self.rows.append(self.http_row(f"deposits ({self.args.connections} conn)", run, cores))

    async def drained(
        self, stack: Stack, name: str, prefix: str, meter: CpuMeter
    ) -> tuple[Settlement, dict[str, float]]:
        """Wait for the phase's backlog to settle, then read how it settled; its CPU covers
        submission and drain together, not the reading."""
        pending = await wait_settled(stack.database_url, prefix, self.args.drain_timeout)
        cores = self.stop(meter, name)
        settled: Settlement = await settled_since(stack.database_url, prefix, pending)
        if settled.failed or settled.pending:
            self.problems.append(
                f"{name}: {settled.failed} FAILED {settled.failures}, "
                f"{settled.pending} still PENDING"
            )
        return settled, cores

    def settlement_figures(self, name: str, settled: Settlement) -> dict[str, Any]:
        """The settled phase's headline figures (recorded), and its counts (returned)."""
        self.figures[f"{name}_tps"] = settled.tps
        self.figures[f"{name}_p50_ms"] = settled.p50_ms
        self.figures[f"{name}_p99_ms"] = settled.p99_ms
        return {
            "completed": settled.completed,
            "failed": settled.failed,
            "pending": settled.pending,
            "seconds": settled.seconds,
        }

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
        settled, cores = await self.drained(stack, name, prefix, meter)
        self.figures[name] = {
            **self.settlement_figures(name, settled),
            "submit": self.describe(run, cores),
            # Per request the API recorded: those still in flight when wrk stopped counting
            # cost it CPU too.
            "api_cpu_ms_per_request": per_unit_ms(self.cpu[name].get("api"), settled.recorded),
            "postgres_cpu_ms_per_transfer": per_unit_ms(
                self.cpu[name].get("postgres"), settled.completed
            ),
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
            read_ratio=ratio(wallet.rps, typename.rps),
            read_wallet_p99_ms=wallet.percentile(99),
            read_typename_p99_ms=typename.percentile(99),
        )
        self.figures["read_wallet"] = self.describe(wallet, wallet_cores)
        self.figures["read_typename"] = self.describe(typename, typename_cores)
        self.figures["read_typename"]["api_cpu_ms_per_request"] = per_unit_ms(
            self.cpu["typename"].get("api"), typename.responses
        )
        self.http["wallet { balance }"] = wallet.percentiles
        self.http["{ __typename }"] = typename.percentiles
        self.rows.append(self.http_row("reads wallet { balance }", wallet, wallet_cores))
        self.rows.append(self.http_row("reads { __typename }", typename, typename_cores))

    async def batches(self, stack: Stack, atomic: bool) -> None:
        """transferBatch requests of BATCH_SIZE transfers each, uniform over the wallets; like
        the transfer phase, measured from PostgreSQL's timestamps, backlog drained."""
        name = "atomic_batch" if atomic else "batch"
        prefix = f"{'a' if atomic else 'b'}{self.run_id}"
        cap = self.args.transfers  # requests, as in the single-transfer phases
        budget = math.ceil(cap / self.args.wrk_threads) if cap else 0
        meter = CpuMeter(self.groups(stack)).start()
        run, _ = self.load(
            stack,
            name,
            seconds=self.args.duration,
            prefix=prefix,
            budget=budget,
            connections=self.args.batch_connections,
        )
        settled, cores = await self.drained(stack, name, prefix, meter)
        self.figures[name] = {
            **self.settlement_figures(name, settled),
            "per_request": BATCH_SIZE,
            "submit": self.describe(run, cores),
            "api_cpu_ms_per_transfer": per_unit_ms(self.cpu[name].get("api"), settled.recorded),
            "worker_cpu_ms_per_transfer": per_unit_ms(
                self.cpu[name].get("worker"), settled.completed
            ),
            "postgres_cpu_ms_per_transfer": per_unit_ms(
                self.cpu[name].get("postgres"), settled.completed
            ),
        }
        self.http[f"{name} (submit, {BATCH_SIZE} a request)"] = run.percentiles
        self.settled[name.replace("_", " ")] = settled.latencies_ms
        self.rows.append(
            {
                "phase": f"{'atomic ' if atomic else ''}batches of {BATCH_SIZE} "
                f"({self.args.batch_connections} conn)",
                "rate": f"{settled.tps:,.0f} tps",
                "p50": f"{settled.p50_ms:.1f}",
                "p99": f"{settled.p99_ms:.1f}",
                "checked": f"{settled.completed:,} completed, {settled.failed} failed, "
                f"{settled.pending} pending; {run.rps:,.1f} requests/s",
                "cpu": cores,
            }
        )

    async def pages(self, stack: Stack) -> None:
        """A wallet's balance and its latest PAGE_SIZE transactions, against `{ __typename }`
        on the same connections; every wallet first gets a full page of history."""
        await self.fill_history(stack)
        self.load(stack, "page", seconds=1, label="page (warm-up)")
        self.load(stack, "typename", seconds=1, label="typename (warm-up)")
        page, page_cores = self.load(stack, "page", seconds=self.args.duration)
        typename, typename_cores = self.load(
            stack, "typename", seconds=self.args.duration, label="typename (pages)"
        )
        self.figures.update(
            page_rps=page.rps,
            page_typename_rps=typename.rps,
            page_ratio=ratio(page.rps, typename.rps),
            page_p99_ms=page.percentile(99),
        )
        self.figures["page"] = self.describe(page, page_cores)
        self.figures["page_typename"] = self.describe(typename, typename_cores)
        self.http[f"wallet {{ balance transactions(first: {PAGE_SIZE}) }}"] = page.percentiles
        self.rows.append(
            self.http_row(f"pages: balance + {PAGE_SIZE} transactions", page, page_cores)
        )
        self.rows.append(self.http_row("pages: { __typename }", typename, typename_cores))

    async def fill_history(self, stack: Stack) -> None:
        """Setup, not measured: transfers (in batches) until every wallet has at least a page
        of transactions, whatever phases ran before; then waits for them to settle."""
        async with connection(stack.database_url) as conn:
            fewest: int = await conn.fetchval(
                "SELECT coalesce(min("
                "(SELECT count(*) FROM transactions t WHERE t.sender_wallet_id = w.id)"
                " + (SELECT count(*) FROM transactions t WHERE t.receiver_wallet_id = w.id)"
                "), 0) FROM wallets w WHERE w.id = ANY($1::uuid[])",
                self.wallets,
            )
        rounds = max(0, math.ceil((PAGE_SIZE - fewest) / 2))  # each round: 2 per wallet
        if not rounds:
            return
        count = len(self.wallets)
        prefix = f"p{self.run_id}"
        transfers = [
            {
                "fromWalletId": self.wallets[i],
                "toWalletId": self.wallets[(i + step) % count],
                "amount": "0.01",
                "clientTransactionId": f"{prefix}-{step}-{i}",
            }
            for step in range(1, rounds + 1)
            for i in range(count)
        ]
        gate = asyncio.Semaphore(4)
        async with httpx.AsyncClient(timeout=60, headers=tokens.header()) as client:

            async def send(chunk: list[dict[str, str]]) -> None:
                async with gate:
                    response = await client.post(
                        stack.url, json={"query": FILL, "variables": {"t": chunk}}
                    )
                response.raise_for_status()
                body = response.json()
                batch = body.get("data", {}).get("transferBatch") or {}
                if (
                    "errors" in body
                    or batch["errors"]
                    or any(r["errors"] for r in batch["results"])
                ):
                    raise RuntimeError(f"filling the history: {str(body)[:300]}")

            await asyncio.gather(
                *(send(transfers[n : n + BATCH_SIZE]) for n in range(0, len(transfers), BATCH_SIZE))
            )
        pending = await wait_settled(stack.database_url, prefix, self.args.drain_timeout)
        if pending:
            self.problems.append(f"pages: {pending} history transfers still PENDING")

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
        self.cpu[phase] = meter.seconds
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
                            await quiesce(database_url)
                            await self.deposits(stack)
                        if "transfers" in args.only:
                            for hot in (False, True):
                                await quiesce(database_url)
                                await self.transfers(stack, hot=hot)
                        if "batches" in args.only:
                            for atomic in (False, True):
                                await quiesce(database_url)
                                await self.batches(stack, atomic=atomic)
                        if "reads" in args.only:
                            await self.reads(stack)
                        if "pages" in args.only:
                            await self.pages(stack)
                    except Exception:
                        for process in [*stack.apis, *stack.workers]:
                            sys.stderr.write(f"--- {process.log}\n{process.output()[-3000:]}\n")
                        raise
                    self.figures["ledger_consistent"] = await self.ledger_check(database_url)
        derive(self.figures)
        self.figures["seconds"] = round(time.monotonic() - started, 1)
        self.figures["problems"] = self.problems
        self.figures["busiest_other_processes"] = self.crowd
        return self.figures

    async def ledger_check(self, database_url: str) -> bool:
        """After the load: the ledger is sound, or the run has a problem saying why not."""
        problem = await ledger_problem(database_url)
        if problem:
            self.problems.append(problem)
        return problem is None


def derive(figures: dict[str, Any]) -> None:
    """The figures made of others: the ratios the targets are set on, and wrk's busiest CPU."""
    figures["transfer_ratio"] = ratio(figures.get("transfer_tps"), figures.get("pgbench_tps"))
    figures["hot_ratio"] = ratio(figures.get("transfer_hot_tps"), figures.get("transfer_tps"))
    figures.setdefault("read_ratio", math.nan)
    figures.setdefault("page_ratio", math.nan)
    figures["batch_ratio"] = ratio(figures.get("batch_tps"), figures.get("pgbench_tps"))
    figures["atomic_batch_ratio"] = ratio(
        figures.get("atomic_batch_tps"), figures.get("pgbench_tps")
    )
    figures["completion_p99_ms"] = figures.get("transfer_p99_ms", math.nan)

    def phase(name: str, key: str) -> float | None:
        value = figures.get(name, {}).get(key)
        return value if isinstance(value, float | int) else None

    figures["api_cpu_ms_per_transfer_request"] = phase("transfer", "api_cpu_ms_per_request")
    figures["api_cpu_ms_per_typename_request"] = phase("read_typename", "api_cpu_ms_per_request")
    figures["mutation_overhead"] = ratio(
        figures["api_cpu_ms_per_transfer_request"], figures["api_cpu_ms_per_typename_request"]
    )
    # PostgreSQL's CPU per transfer against pgbench's per transaction; and the transfers per
    # second one PostgreSQL on a machine like this one could carry with the API and the
    # workers elsewhere: all its cores' CPU-seconds each second over the CPU-seconds one
    # transfer costs it (an upper bound: it assumes PostgreSQL's CPU, not its disk, limits).
    cores = figures.get("machine", {}).get("cores")
    pgbench_ms = phase("pgbench", "postgres_cpu_ms_per_transfer")
    for name, suffix in (("batch", ""), ("transfer", "_single")):
        cost_ms = phase(name, "postgres_cpu_ms_per_transfer")
        figures[f"db_cost_ratio{suffix}"] = ratio(cost_ms, pgbench_ms)
        figures[f"db_capacity{suffix}_tps"] = ratio(cores * 1000 if cores else None, cost_ms)
    figures["db_capacity_pgbench_tps"] = ratio(cores * 1000 if cores else None, pgbench_ms)
    loads = [v for v in figures.values() if isinstance(v, dict) and "wrk_cores" in v]
    loads += [v["submit"] for v in figures.values() if isinstance(v, dict) and "submit" in v]
    if loads:
        figures["wrk_cores_max"] = max(v["wrk_cores"] for v in loads)
