"""`wallet dev` without the `embedded` extra says how to install it, and exits 1."""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from tests.processes import free_port
from wallet import dev


def test_wallet_dev_without_pgserver_says_to_install_the_embedded_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real_find_spec = importlib.util.find_spec

    def without_pgserver(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "pgserver" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_pgserver)
    for name in ("DATABASE_URL", "WALLET_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)

    assert dev.run(port=free_port(), data=tmp_path / ".wallet") == 1
    err = capsys.readouterr().err
    assert "pip install -e '.[embedded]'" in err
    assert "DATABASE_URL" in err
