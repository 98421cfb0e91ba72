"""`wallet serve` and `wallet worker` log as the environment says (WALLET_LOG_LEVEL,
WALLET_JSON_LOGS); a --log-level given on the command line wins."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import wallet.app
import wallet.web.logs
import wallet.worker
from wallet import cli
from wallet.config import Settings

pytestmark = pytest.mark.timeout(30)


class Logging:
    """Records what configure_logging was asked for, instead of changing this process's."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, level: str, *, json_lines: bool) -> None:
        self.calls.append((level, json_lines))


@pytest.fixture
def logging_setup(monkeypatch: pytest.MonkeyPatch) -> Logging:
    recorded = Logging()
    monkeypatch.setattr(wallet.web.logs, "configure_logging", recorded)
    return recorded


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The options `wallet serve` runs uvicorn with; the app is built as uvicorn would."""
    runs: list[dict[str, Any]] = []

    def run(app: str, **options: Any) -> None:
        assert app == "wallet.cli:api_process"
        runs.append(options)

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr(wallet.app, "create_app", lambda settings: settings)
    return runs


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set as a deployment would; restored after each test, whatever the command did."""
    for name in os.environ:
        if name.startswith("WALLET_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WALLET_LOG_LEVEL", "debug")
    monkeypatch.setenv("WALLET_JSON_LOGS", "false")
    # `wallet serve` refuses to start without keys for bearer tokens.
    monkeypatch.setenv("WALLET_JWT_SECRET", "s" * 32)


def test_serve_without_flags_keeps_the_log_settings_of_the_environment(
    served: list[dict[str, Any]], logging_setup: Logging
) -> None:
    assert cli.main(["serve"]) == 0
    assert os.environ["WALLET_LOG_LEVEL"] == "debug"
    assert os.environ["WALLET_JSON_LOGS"] == "false"
    [options] = served
    assert options["log_level"] == "debug"
    assert options["factory"] is True
    cli.api_process()  # as uvicorn calls it, in each API process
    assert logging_setup.calls == [("debug", False)]


def test_serve_with_a_log_level_passes_it_to_every_api_process(
    served: list[dict[str, Any]], logging_setup: Logging
) -> None:
    assert cli.main(["serve", "--log-level", "warning"]) == 0
    [options] = served
    assert options["log_level"] == "warning"
    cli.api_process()
    assert logging_setup.calls == [("warning", False)]


@pytest.mark.parametrize(("flags", "level"), [([], "debug"), (["--log-level", "error"], "error")])
def test_the_worker_logs_as_the_environment_says_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, logging_setup: Logging, flags: list[str], level: str
) -> None:
    ran: list[Settings] = []

    async def run_worker(settings: Settings, concurrency: int, heartbeat: Path | None) -> None:
        ran.append(settings)

    monkeypatch.setattr(wallet.worker, "run_worker", run_worker)
    assert cli.main(["worker", *flags]) == 0
    assert logging_setup.calls == [(level, False)]
    [settings] = ran
    assert settings.log_level == level
    assert os.environ["WALLET_LOG_LEVEL"] == "debug"


@pytest.mark.parametrize("command", [["worker"], ["serve"], ["audit"]])
def test_a_setting_the_environment_got_wrong_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    monkeypatch.setenv("WALLET_SETTLE_BATCH_SIZE", "0")
    monkeypatch.setenv("WALLET_SWEEP_AFTER_SECONDS", "soon")

    assert cli.main(command) == 2

    assert capsys.readouterr().err.splitlines() == [
        "wallet: WALLET_SWEEP_AFTER_SECONDS: Input should be a valid number, unable to parse "
        "string as a number",
        "wallet: WALLET_SETTLE_BATCH_SIZE: Input should be greater than 0",
    ]
