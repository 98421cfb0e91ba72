"""`wallet migrate | serve | worker | dev | token | audit | ...`: the service's one entry point."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from pydantic import ValidationError

from wallet.config import LogLevel, Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from wallet.persistence.audit import AuditReport


def _migrate(_args: argparse.Namespace) -> int:
    from wallet.persistence.database import SchemaAhead, is_unavailable, migrate
    from wallet.persistence.outages import address, describe

    settings = Settings()
    try:
        migrated = asyncio.run(migrate(settings.database_url))
    except SchemaAhead as error:
        # An older release run after a newer one: nothing it may do, and no traceback needed.
        print(f"wallet migrate: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        if not is_unavailable(error):
            raise  # a bug, or a migration PostgreSQL refused: the traceback says where
        # Down, missing or refusing us: the person running this needs the address and the
        # reason, not a traceback through asyncpg.
        where = address(settings.database_url)
        print(f"wallet migrate: PostgreSQL at {where}: {describe(error)}", file=sys.stderr)
        return 1
    print(f"wallet migrate: {migrated.summary()}")
    return 0


async def _audit_database(database_url: str, pending_after: timedelta, show: int) -> AuditReport:
    from wallet.persistence.audit import audit
    from wallet.persistence.database import create_engine

    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        return await audit(engine, pending_after=pending_after, show=show)
    finally:
        await engine.dispose()


def _audit(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from wallet.persistence.database import is_unavailable
    from wallet.persistence.outages import address, describe

    settings = Settings()
    started = time.perf_counter()
    try:
        report = asyncio.run(
            _audit_database(settings.database_url, timedelta(seconds=args.pending_after), args.show)
        )
    except Exception as error:
        where = address(settings.database_url)
        if is_unavailable(error, schema_behind=True):
            # Reachable, but without the tables: most likely never migrated.
            hint = "" if is_unavailable(error) else " (not migrated? see `wallet migrate`)"
            print(f"wallet audit: PostgreSQL at {where}: {describe(error)}{hint}", file=sys.stderr)
            return 2
        if not isinstance(error, DBAPIError):
            raise
        # Anything else PostgreSQL refused (a role without SELECT on a table, a statement
        # timeout) is not a finding about the ledger: never the 1 of a discrepancy.
        print(f"wallet audit: PostgreSQL at {where} refused a check: {error.orig}", file=sys.stderr)
        return 2
    database = make_url(settings.database_url).database
    at = report.snapshot_at.isoformat(timespec="seconds")
    print(f"wallet audit: database {database} at {address(settings.database_url)}, as of {at}")
    for line in report.lines():
        print(line)
    took = time.perf_counter() - started
    if report.discrepancies:
        failed = sum(1 for check in report.checks if not check.ok)
        print(
            f"wallet audit: {report.discrepancies:,} discrepancies in {failed} of "
            f"{len(report.checks)} checks ({took:.1f} s)"
        )
        return 1
    print(f"wallet audit: no discrepancies ({took:.1f} s)")
    return 0


def api_process() -> Starlette:
    """The application of one `wallet serve` process, its logging configured first.

    uvicorn calls it in each process it runs, spawned ones too, which read their settings
    from the environment.
    """
    from wallet.app import create_app
    from wallet.web.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, json_lines=settings.json_logs)
    return create_app(settings)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.log_level is not None:
        # Given on the command line, so it wins; it reaches the API processes uvicorn spawns
        # the one way they read settings, the environment.
        os.environ["WALLET_LOG_LEVEL"] = args.log_level
    settings = Settings()
    if settings.require_tokens:
        from wallet.web.tokens import KeysNotConfigured, verifier_for

        try:
            verifier_for(settings)
        except KeysNotConfigured as error:
            print(f"wallet serve: {error}", file=sys.stderr)
            return 2
    # X-Forwarded-For names the client only when a proxy we trust wrote it: a client's own
    # header would otherwise pick its address, and with it its rate-limit counter.
    trusted = settings.forwarded_allow_ips
    uvicorn.run(
        "wallet.cli:api_process",  # by name: uvicorn imports it in each process it spawns
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        log_config=None,  # api_process configures logging, in each process
        access_log=False,  # the edge middleware logs each request, with its id
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        # A WebSocket message is capped as a request body is: uvicorn closes the socket (1009)
        # on a larger one, where its default let each socket buffer 16 MiB first.
        ws_max_size=settings.max_body_bytes,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from wallet.web.logs import configure_logging
    from wallet.worker import run_worker

    settings = Settings() if args.log_level is None else Settings(log_level=args.log_level)
    configure_logging(settings.log_level, json_lines=settings.json_logs)
    # uvloop (installed with uvicorn[standard]) where it is available: a faster event loop.
    work = run_worker(settings, args.concurrency, args.heartbeat)
    try:
        import uvloop
    except ImportError:
        asyncio.run(work)
    else:
        uvloop.run(work)
    return 0


def _check_heartbeat(args: argparse.Namespace) -> int:
    try:
        age = time.time() - args.file.stat().st_mtime
    except OSError as error:
        print(f"wallet check-heartbeat: no heartbeat: {error}", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(
            f"wallet check-heartbeat: {args.file} is {age:.0f} s old (more than {args.max_age:g})",
            file=sys.stderr,
        )
        return 1
    return 0


def _dev(args: argparse.Namespace) -> int:
    from wallet.dev import run

    return run(port=args.port)


def _export_schema(args: argparse.Namespace) -> int:
    from wallet.app import build_schema

    text = build_schema().as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def _token(args: argparse.Namespace) -> int:
    from wallet.web.tokens import issue_token

    try:
        token = issue_token(Settings(), args.subject, args.scope.split(), ttl=args.ttl)
    except ValueError as error:  # no secret, a short one, or an empty subject
        print(f"wallet token: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _positive_seconds(text: str) -> int:
    seconds = int(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return seconds


def _positive_count(text: str) -> int:
    count = int(text)
    if count <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wallet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    # Every option's help ends with its default.
    formatter = argparse.ArgumentDefaultsHelpFormatter
    levels = get_args(LogLevel)
    # A flag not given leaves the setting to the environment (WALLET_LOG_LEVEL).
    log_level_help = "least severe logged; when not given, WALLET_LOG_LEVEL (info if unset)"

    migrate = commands.add_parser(
        "migrate",
        help="create the database if missing and apply the migrations it lacks",
        description="Create DATABASE_URL's database if it is missing and bring it to the "
        "newest migration; says what it did. Exits 1, with one line, when PostgreSQL cannot "
        "be reached. Safe to run twice, or from several containers at once.",
        formatter_class=formatter,
    )
    migrate.set_defaults(run=_migrate)

    serve = commands.add_parser(
        "serve",
        help="serve the GraphQL API (and GraphiQL) over HTTP and WebSocket",
        description="Serve GraphQL on /graphql, /healthz, /readyz and /metrics, with "
        "DATABASE_URL and REDIS_URL from the environment.",
        formatter_class=formatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="API processes")
    serve.add_argument("--log-level", default=None, choices=levels, help=log_level_help)
    serve.set_defaults(run=_serve)

    worker = commands.add_parser(
        "worker",
        help="settle queued withdrawals and transfers",
        description="Take settlement jobs from Redis and apply them in PostgreSQL; re-queue "
        "transactions left PENDING. Run one or more.",
        formatter_class=formatter,
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=256,
        # As many as one settlement batch holds: at 64, a worker taking ~2,000 transfers/s
        # often had all its slots waiting on the batch in flight, and jobs queued behind.
        help="jobs run (and batched) at once",
    )
    worker.add_argument("--log-level", default=None, choices=levels, help=log_level_help)
    worker.add_argument(
        "--heartbeat",
        type=Path,
        default=None,
        help="a file to touch every 5 s while the worker runs, for `wallet check-heartbeat`",
    )
    worker.set_defaults(run=_worker)

    check = commands.add_parser(
        "check-heartbeat",
        help="exit 0 if a worker's heartbeat file is fresh (a container's liveness check)",
        description="Exit 0 when FILE, touched by `wallet worker --heartbeat FILE`, changed "
        "within --max-age seconds; else print why and exit 1.",
        formatter_class=formatter,
    )
    check.add_argument("file", type=Path, help="the file given to `wallet worker --heartbeat`")
    check.add_argument(
        "--max-age", type=float, default=30.0, help="seconds after which the worker is dead"
    )
    check.set_defaults(run=_check_heartbeat)

    dev = commands.add_parser(
        "dev",
        help="run everything on this machine: PostgreSQL and Redis (embedded unless "
        "DATABASE_URL or REDIS_URL is set, data in ./.wallet/), the API and a worker",
        description="Run PostgreSQL and Redis (embedded, from the `embedded` extra, unless "
        "DATABASE_URL or REDIS_URL is set; data and ports kept in ./.wallet/), apply the "
        "migrations, then the API and one worker. Ctrl-C stops all of it.",
        formatter_class=formatter,
    )
    dev.add_argument("--port", type=int, default=8000, help="the API's port")
    dev.set_defaults(run=_dev)

    token = commands.add_parser(
        "token",
        help="print a bearer token signed with WALLET_JWT_SECRET, for development and tests",
        description="Print a JWT (HS256, signed with WALLET_JWT_SECRET) naming the caller "
        "--subject, with WALLET_JWT_ISSUER and WALLET_JWT_AUDIENCE when they are set. Exits 2, "
        "with one line, when WALLET_JWT_SECRET is not set.",
        formatter_class=formatter,
    )
    token.add_argument("--subject", required=True, help="the caller's id (the token's sub)")
    token.add_argument(
        "--scope",
        default="",
        help='space-separated scopes, e.g. "wallet:deposit wallet:admin"',
    )
    token.add_argument(
        "--ttl", type=_positive_seconds, default=3600, help="seconds until the token expires"
    )
    token.set_defaults(run=_token)

    audit = commands.add_parser(
        "audit",
        help="check every wallet's ledger in DATABASE_URL; exit 1 on any discrepancy, 2 when "
        "PostgreSQL cannot be read",
        description="Check, in one snapshot of DATABASE_URL's database, that every wallet's "
        "entries add up to its balance, each entry's balance_after follows from the one "
        "before, no balance, held or available balance is negative, held is what ACTIVE holds "
        "reserve, each transaction has the entries its status calls for, the money in the "
        "wallets is deposits less withdrawals, corrected by reversals, no transaction is "
        "reversed for more than it moved, and nothing is PENDING too long. Prints each check "
        "with what it read, and each discrepancy (amounts in minor units). Exits 0 when there "
        "is none, 1 when there is any, 2 when PostgreSQL cannot be read. Read only: safe to "
        "run against a live database.",
        formatter_class=formatter,
    )
    audit.add_argument(
        "--pending-after",
        type=_positive_seconds,
        metavar="SECONDS",
        # The sweeper queues a stalled transaction again after WALLET_SWEEP_AFTER_SECONDS (5)
        # and a dead worker's job goes to another after WALLET_REDELIVER_AFTER_MS (60 s):
        # one PENDING five minutes is no longer slow, it is stuck.
        default=300,
        help="seconds after which a PENDING transaction is a discrepancy",
    )
    audit.add_argument(
        "--show",
        type=_positive_count,
        metavar="N",
        default=20,
        help="discrepancies printed per check (all are counted)",
    )
    audit.set_defaults(run=_audit)

    export = commands.add_parser(
        "export-schema",
        help="print the served GraphQL schema",
        description="Write the schema the API serves, in SDL.",
        formatter_class=formatter,
    )
    export.add_argument("--output", default="-", help="a file, or - for standard output")
    export.set_defaults(run=_export_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ValidationError as error:
        if error.title != Settings.__name__:
            raise
        # A setting the environment got wrong: one line each, as for every other start-up
        # problem, not pydantic's traceback. The value is not repeated: it may be a secret.
        for problem in error.errors():
            name = ".".join(str(part) for part in problem["loc"])
            variable = name if name.isupper() else f"WALLET_{name.upper()}"  # or an alias's
            print(f"wallet: {variable}: {problem['msg']}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
