"""The Dockerfile and docker-compose.yml: valid, and running the CLI's own commands.

No Docker engine runs here: Debian's docker-compose (v1) parses, interpolates and validates the
file without one. The commands it would run are checked against `wallet`'s argparse parser.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from wallet.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
WALLET_SERVICES = {"migrate": "migrate", "api": "serve", "worker": "worker"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as docker-compose resolves it (anchors merged, variables filled)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed: apt-get install -y docker-compose")
    result = subprocess.run(
        [binary, "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def _parse(command: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(command)
    except SystemExit:
        pytest.fail(f"wallet {' '.join(command)} is not a command of the CLI")


def _final_stage(dockerfile: str) -> list[str]:
    """The instructions of the Dockerfile's last stage, continuation lines joined."""
    text = dockerfile.replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    last_from = max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM "))
    return instructions[last_from:]


def test_compose_has_the_api_a_worker_a_one_shot_migration_postgres_and_redis(
    compose: dict[str, Any],
) -> None:
    assert set(compose["services"]) == {"api", "worker", "migrate", "postgres", "redis"}
    assert compose["services"]["migrate"]["restart"] == "no"


def test_every_wallet_service_runs_a_cli_subcommand_in_the_image_built_here(
    compose: dict[str, Any],
) -> None:
    entrypoints = [i for i in _final_stage((ROOT / "Dockerfile").read_text()) if "ENTRYPOINT" in i]
    assert [json.loads(i.split(None, 1)[1]) for i in entrypoints] == [["wallet"]]
    for name, subcommand in WALLET_SERVICES.items():
        service = compose["services"][name]
        assert Path(service["build"]["context"]) == ROOT, name
        args = _parse(service["command"])
        assert args.command == subcommand, name
    serve = _parse(compose["services"]["api"]["command"])
    assert serve.host == "0.0.0.0"
    published = compose["services"]["api"]["ports"]
    assert {"published": 8000, "target": serve.port} in published


def test_the_api_and_worker_wait_for_healthy_servers_and_a_finished_migration(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in ("api", "worker"):
        conditions = {k: v["condition"] for k, v in services[name]["depends_on"].items()}
        assert conditions == {
            "postgres": "service_healthy",
            "redis": "service_healthy",
            "migrate": "service_completed_successfully",
        }, name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_wallet_services_reach_the_postgres_and_redis_services(compose: dict[str, Any]) -> None:
    for name in WALLET_SERVICES:
        environment = compose["services"][name]["environment"]
        assert urlsplit(environment["DATABASE_URL"]).hostname == "postgres", name
        assert urlsplit(environment["REDIS_URL"]).hostname == "redis", name
        assert environment["WALLET_ENVIRONMENT"] == "production", name


def test_the_image_is_built_in_stages_and_runs_as_a_user_that_is_not_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = [line for line in dockerfile.splitlines() if line.upper().startswith("FROM ")]
    assert len(stages) >= 2
    users = [i.split(None, 1)[1] for i in _final_stage(dockerfile) if i.startswith("USER ")]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert "COPY --from=build" in dockerfile
