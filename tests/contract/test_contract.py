"""The served schema keeps every promise of the public contract; the committed copies agree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from graphql import (
    DangerousChangeType,
    DocumentNode,
    GraphQLSchema,
    build_ast_schema,
    build_schema,
    extend_schema,
    find_breaking_changes,
    find_dangerous_changes,
    parse,
)

from wallet.app import build_schema as build_served_schema

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = Path(__file__).with_name("schema.graphql")
SHARED_CONTRACT = ROOT.parent / "shared" / "contract" / "schema.graphql"
EXPORTED = ROOT / "schema.graphql"

# Contract types the server may not serve yet: they are left out of the contract before it is
# compared. Empty: the whole contract is served, Subscription included.
NOT_YET_SERVED: frozenset[str] = frozenset()

# What the contract's header allows the server to add: "types, fields, enum values and optional
# arguments". graphql-core calls these dangerous (a client may not expect them); any other
# dangerous change, such as a changed default value, breaks the contract.
ALLOWED_ADDITIONS = frozenset(
    {
        DangerousChangeType.VALUE_ADDED_TO_ENUM,
        DangerousChangeType.OPTIONAL_ARG_ADDED,
        DangerousChangeType.OPTIONAL_INPUT_FIELD_ADDED,
        DangerousChangeType.TYPE_ADDED_TO_UNION,
        DangerousChangeType.IMPLEMENTED_INTERFACE_ADDED,
    }
)


def _contract_sdl(text: str) -> str:
    # The contract opens with a block string about the whole document (its semantics), which
    # graphql-core would read as the description of a definition that is not there.
    return re.sub(r'\A\s*""".*?"""(?=\s*""")', "", text, count=1, flags=re.DOTALL)


# The contract's extensions: every other .graphql copy next to it, each extending the base.
EXTENSIONS = sorted(p for p in CONTRACT.parent.glob("*.graphql") if p != CONTRACT)


@pytest.fixture(scope="module")
def contract() -> GraphQLSchema:
    """The contract extended by each of its extensions, less the types in NOT_YET_SERVED."""
    document = parse(_contract_sdl(CONTRACT.read_text()))
    kept = [
        definition
        for definition in document.definitions
        if getattr(getattr(definition, "name", None), "value", None) not in NOT_YET_SERVED
    ]
    schema = build_ast_schema(DocumentNode(definitions=tuple(kept)))
    for extension in EXTENSIONS:
        schema = extend_schema(schema, parse(extension.read_text()))
    return schema


def test_the_contract_is_extended_by_every_extension_taken(contract: GraphQLSchema) -> None:
    assert [p.name for p in EXTENSIONS] == [
        "auth.graphql",
        "batches.graphql",
        "holds.graphql",
        "ledger.graphql",
    ]
    assert contract.query_type is not None
    assert {"viewer", "hold"} <= contract.query_type.fields.keys()
    assert contract.mutation_type is not None
    assert {"transferBatch", "reverseTransaction"} <= contract.mutation_type.fields.keys()


@pytest.fixture(scope="module")
def served() -> GraphQLSchema:
    return build_schema(build_served_schema().as_str())


def test_the_served_schema_has_no_breaking_change_against_the_contract(
    contract: GraphQLSchema, served: GraphQLSchema
) -> None:
    changes = [
        f"{change.type.name}: {change.description}"
        for change in find_breaking_changes(contract, served)
    ]
    assert changes == []


def test_the_served_schema_changes_no_default_and_adds_only_what_the_contract_allows(
    contract: GraphQLSchema, served: GraphQLSchema
) -> None:
    changes = [
        f"{change.type.name}: {change.description}"
        for change in find_dangerous_changes(contract, served)
        if change.type not in ALLOWED_ADDITIONS
    ]
    assert changes == []


def test_the_check_sees_a_removed_field_and_a_changed_default() -> None:
    sdl = _contract_sdl(CONTRACT.read_text())
    contract = build_schema(sdl)
    broken = build_schema(
        sdl.replace("  balance: Decimal!\n", "", 1).replace(
            "transactions(first: Int = 20", "transactions(first: Int = 50", 1
        )
    )
    assert [c.description for c in find_breaking_changes(contract, broken)] == [
        "Field Wallet.balance was removed."
    ]
    assert [c.type for c in find_dangerous_changes(contract, broken)] == [
        DangerousChangeType.ARG_DEFAULT_VALUE_CHANGE
    ]


def test_only_types_of_the_contract_are_exempt() -> None:
    whole = build_schema(_contract_sdl(CONTRACT.read_text()))
    assert whole.type_map.keys() >= NOT_YET_SERVED


def test_the_whole_contract_is_served_with_nothing_exempt(served: GraphQLSchema) -> None:
    assert frozenset() == NOT_YET_SERVED
    assert served.subscription_type is not None
    assert set(served.subscription_type.fields) >= {"transactionUpdated", "walletActivity"}


@pytest.mark.skipif(not SHARED_CONTRACT.exists(), reason="no ../shared/contract next to the repo")
@pytest.mark.parametrize("copy", [CONTRACT, *EXTENSIONS], ids=lambda p: p.name)
def test_the_contract_copies_in_tests_equal_the_shared_contract(copy: Path) -> None:
    assert copy.read_text() == (SHARED_CONTRACT.parent / copy.name).read_text()


def test_the_committed_schema_graphql_is_what_wallet_export_schema_prints() -> None:
    wallet = Path(sys.executable).with_name("wallet")
    exported = subprocess.run(
        [str(wallet), "export-schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert EXPORTED.read_text() == exported, (
        "schema.graphql is stale: run `.venv/bin/wallet export-schema --output schema.graphql`"
    )


def test_imports_point_inward_as_the_import_linter_contract_says() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout
