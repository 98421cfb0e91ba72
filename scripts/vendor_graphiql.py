"""Copy GraphiQL's files from the npm registry into the package, with their integrity hashes.

    python scripts/vendor_graphiql.py

The versions are pinned below. Each file is taken from `npm pack` of its package (the bytes
unpkg serves, the ones Strawberry's own page names), written to
src/wallet/web/static/graphiql/, and recorded in assets.json with its package, version, path in
the package and sha384 (Subresource Integrity). The page the API serves names each file with
that hash, so a browser refuses a file that changed; tests/unit/test_graphiql_assets.py fails
on one too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

# The one definition of the hash, shared with the page that names it (wallet is installed).
from wallet.web.graphiql import integrity

TARGET = Path(__file__).resolve().parents[1] / "src" / "wallet" / "web" / "static" / "graphiql"

# (file written, npm package@version, path inside the package), in the order the page loads them.
FILES = [
    ("react.production.min.js", "react@18.2.0", "umd/react.production.min.js"),
    ("react-dom.production.min.js", "react-dom@18.2.0", "umd/react-dom.production.min.js"),
    ("graphiql.min.css", "graphiql@3.8.3", "graphiql.min.css"),
    ("graphiql.min.js", "graphiql@3.8.3", "graphiql.min.js"),
    ("plugin-explorer.css", "@graphiql/plugin-explorer@1.0.2", "dist/style.css"),
    ("plugin-explorer.umd.js", "@graphiql/plugin-explorer@1.0.2", "dist/index.umd.js"),
]


def npm_pack(package: str, destination: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed (apt-get install npm)")
    result = subprocess.run(
        [npm, "pack", package, "--pack-destination", str(destination), "--silent"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return destination / result.stdout.strip().splitlines()[-1]


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    records = []
    licences: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        archives: dict[str, Path] = {}
        for name, package, source in FILES:
            if package not in archives:
                archives[package] = npm_pack(package, Path(scratch))
            with tarfile.open(archives[package]) as archive:
                member = archive.extractfile(f"package/{source}")
                assert member is not None, (package, source)
                content = member.read()
                names = archive.getnames()
                if "package/LICENSE" in names:
                    licence = archive.extractfile("package/LICENSE")
                    assert licence is not None
                    licences[package] = licence.read().decode()
                else:  # some ship none; their package.json names the licence
                    manifest = archive.extractfile("package/package.json")
                    assert manifest is not None
                    licences[package] = "License: " + json.load(manifest)["license"]
            (TARGET / name).write_bytes(content)
            records.append(
                {
                    "file": name,
                    "package": package.rsplit("@", 1)[0],
                    "version": package.rsplit("@", 1)[1],
                    "source": source,
                    "integrity": integrity(content),
                    "bytes": len(content),
                }
            )
    (TARGET / "assets.json").write_text(json.dumps(records, indent=2) + "\n")
    notices = [f"== {package} ==\n\n{text.strip()}\n" for package, text in licences.items()]
    (TARGET / "LICENSES.txt").write_text("\n".join(notices))
    print(f"{len(records)} files, {sum(r['bytes'] for r in records):,} bytes, in {TARGET}")


if __name__ == "__main__":
    main()
