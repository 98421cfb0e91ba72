"""GraphiQL's scripts and styles, for a browser test on a machine with no CDN to reach.

Strawberry's GraphiQL page loads React, GraphiQL and its explorer plugin from unpkg, each with
a Subresource Integrity hash. unpkg serves files of npm packages unchanged, so the same files
are taken from the npm registry (`npm pack`, cached between runs) and handed to the browser in
place of the CDN's answers; the browser checks each against the page's own hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

_CDN_ASSET = re.compile(
    r'(?:src|href)="(?P<url>https://unpkg\.com/(?P<package>(?:@[^/"]+/)?[^/@"]+@[^/"]+)'
    r'/(?P<file>[^"]+))"\s+integrity="(?P<integrity>[^"]+)"'
)


@dataclass(frozen=True)
class Asset:
    url: str
    package: str  # name@version, as npm takes it
    file: str  # path inside the package
    integrity: str  # sha384-<base64>


def cdn_assets(html: str) -> list[Asset]:
    return [
        Asset(m["url"], m["package"], m["file"], m["integrity"]) for m in _CDN_ASSET.finditer(html)
    ]


def _integrity(content: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(content).digest()).decode()


def _npm_pack(package: str, destination: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to take GraphiQL's files from the npm registry")
    result = subprocess.run(
        [npm, "pack", package, "--pack-destination", str(destination), "--silent"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"npm pack {package} failed:\n{result.stderr}")
    return destination / result.stdout.strip().splitlines()[-1]


def local_copies(assets: list[Asset], cache: Path) -> dict[str, Path]:
    """URL -> a local file with the same bytes, checked against the page's integrity hash."""
    copies = {}
    for asset in assets:
        target = cache / asset.package / asset.file
        if not target.exists():
            with (
                tempfile.TemporaryDirectory() as scratch,
                tarfile.open(_npm_pack(asset.package, Path(scratch))) as archive,
            ):
                member = archive.extractfile(f"package/{asset.file}")
                assert member is not None, asset
                content = member.read()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        actual = _integrity(target.read_bytes())
        assert actual == asset.integrity, f"{asset.url}: {actual} != {asset.integrity}"
        copies[asset.url] = target
    return copies
