"""`wallet migrate | serve | worker | dev | export-schema`: the service's one entry point."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from wallet.config import Settings


def _migrate(_args: argparse.Namespace) -> int:
    from wallet.persistence.database import migrate

    settings = Settings()
    asyncio.run(migrate(settings.database_url))
    print("database is at the newest schema")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    # Read by create_app in every API process, spawned ones included.
    os.environ["WALLET_JSON_LOGS"] = "true"
    os.environ["WALLET_LOG_LEVEL"] = args.log_level
    # X-Forwarded-For names the client only when a proxy we trust wrote it: a client's own
    # header would otherwise pick its address, and with it its rate-limit counter.
    trusted = Settings().forwarded_allow_ips
    uvicorn.run(
        "wallet.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        log_config=None,  # keep the JSON logging configured above
        access_log=False,  # the edge middleware logs each request, with its id
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from wallet.web.logs import configure_logging
    from wallet.worker import run_worker

    configure_logging(args.log_level)
    # uvloop (installed with uvicorn[standard]) where it is available: a faster event loop.
    try:
        import uvloop
    except ImportError:
        asyncio.run(run_worker(Settings(), args.concurrency))
    else:
        uvloop.run(run_worker(Settings(), args.concurrency))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wallet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    migrate = commands.add_parser("migrate", help="create the database and apply migrations")
    migrate.set_defaults(run=_migrate)

    serve = commands.add_parser("serve", help="serve the GraphQL API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="API processes")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)

    worker = commands.add_parser("worker", help="settle queued withdrawals and transfers")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=256,
        # As many as one settlement batch holds: at 64, a worker taking ~2,000 transfers/s
        # often had all its slots waiting on the batch in flight, and jobs queued behind.
        help="jobs run (and batched) at once",
    )
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(run=_worker)

    dev = commands.add_parser(
        "dev",
        help="run everything on this machine: PostgreSQL and Redis (embedded unless "
        "DATABASE_URL or REDIS_URL is set, data in ./.wallet/), the API and a worker",
    )
    dev.add_argument("--port", type=int, default=8000, help="the API's port")
    dev.set_defaults(run=_dev)

    export = commands.add_parser("export-schema", help="print the served GraphQL schema")
    export.add_argument("--output", default="-", help="a file, or - for standard output")
    export.set_defaults(run=_export_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
