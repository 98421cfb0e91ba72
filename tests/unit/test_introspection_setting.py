"""Introspection is on where GraphiQL needs it and off in production unless asked for."""

from __future__ import annotations

import pytest

from wallet.app import build_schema
from wallet.config import Settings

pytestmark = pytest.mark.timeout(30)

SCHEMA_QUESTION = "{ __schema { queryType { name } } }"


@pytest.mark.parametrize(
    ("environment", "introspection", "answered"),
    [
        ("development", None, True),
        ("production", None, False),
        ("production", True, True),
        ("development", False, False),
    ],
)
async def test_the_schema_answers_questions_about_itself_only_where_it_should(
    environment: str, introspection: bool | None, answered: bool
) -> None:
    given = {} if introspection is None else {"introspection": introspection}
    settings = Settings(environment=environment, **given)  # type: ignore[arg-type]
    assert settings.introspection is answered
    result = await build_schema(settings).execute(SCHEMA_QUESTION)
    if answered:
        assert result.errors is None
        assert result.data == {"__schema": {"queryType": {"name": "Query"}}}
    else:
        assert result.errors
        assert "introspection has been disabled" in result.errors[0].message
