"""WALLET_ENVIRONMENT=production changes defaults only: GraphiQL and introspection off, JSON
log lines on; a setting given explicitly, in the environment or in code, wins."""

from __future__ import annotations

import os

import pytest

from wallet.config import Settings
from wallet.web.cors import cors

pytestmark = pytest.mark.timeout(30)

DECIDED = ("graphiql", "introspection", "json_logs")


@pytest.fixture(autouse=True)
def no_wallet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test sets: none of the machine's own WALLET_ variables."""
    for name in os.environ:
        if name.startswith("WALLET_"):
            monkeypatch.delenv(name)


def _decided(settings: Settings) -> dict[str, object]:
    return settings.model_dump(include=set(DECIDED))


def test_development_serves_graphiql_answers_introspection_and_logs_plain_lines() -> None:
    assert _decided(Settings()) == {"graphiql": True, "introspection": True, "json_logs": False}


def test_production_hides_graphiql_and_the_schema_and_logs_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WALLET_ENVIRONMENT", "production")
    assert _decided(Settings()) == {"graphiql": False, "introspection": False, "json_logs": True}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # GraphiQL asks the schema about itself: asking for it brings introspection along.
        ({"WALLET_GRAPHIQL": "true"}, {"graphiql": True, "introspection": True}),
        ({"WALLET_INTROSPECTION": "true"}, {"graphiql": False, "introspection": True}),
        (
            {"WALLET_GRAPHIQL": "true", "WALLET_INTROSPECTION": "false"},
            {"graphiql": True, "introspection": False},
        ),
        ({"WALLET_JSON_LOGS": "false"}, {"json_logs": False}),
    ],
)
def test_in_production_a_setting_given_in_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, str], expected: dict[str, bool]
) -> None:
    monkeypatch.setenv("WALLET_ENVIRONMENT", "production")
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    decided = _decided(Settings())
    assert {name: decided[name] for name in expected} == expected


def test_in_development_a_setting_given_in_code_wins() -> None:
    settings = Settings(graphiql=False, json_logs=True)
    assert _decided(settings) == {"graphiql": False, "introspection": True, "json_logs": True}


def test_the_log_level_is_read_in_any_case_and_refused_when_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WALLET_LOG_LEVEL", "WARNING")
    assert Settings().log_level == "warning"
    monkeypatch.setenv("WALLET_LOG_LEVEL", "verbose")
    with pytest.raises(ValueError, match="log_level"):
        Settings()


def test_production_allows_no_other_origin_unless_told_which() -> None:
    assert cors(Settings(environment="production")) is None
    told = cors(Settings(environment="production", allowed_origins=["https://app.example"]))
    assert told is not None
    assert told.kwargs["allow_origins"] == ["https://app.example"]
    assert told.kwargs["allow_origin_regex"] is None
