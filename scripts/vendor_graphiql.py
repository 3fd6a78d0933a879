"""Vendor the browser assets of Strawberry's GraphiQL page, so the page works with no CDN.

Reads the GraphiQL template of the installed strawberry-graphql, fetches every package it
loads from the CDN with `npm pack <package>@<version>` (the npm registry, not the CDN),
checks each file against the template's `integrity` hash, and writes:

* app/static/graphiql/<package>@<version>/<path>: the files, laid out as the CDN serves them,
  with the package's LICENSE next to them;
* app/static/graphiql.html: Strawberry's template with every CDN address replaced by the
  `{{ assets }}` placeholder that app/graphiql.py fills in with the local address.

Run it from the repository root with the project's interpreter after upgrading Strawberry:

    .venv/bin/python scripts/vendor_graphiql.py

Folders of versions the template no longer loads are removed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from strawberry.http.ides import get_graphql_ide_html

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "app" / "static"
ASSETS = STATIC / "graphiql"
PAGE = STATIC / "graphiql.html"
CDN = "https://unpkg.com/"
PLACEHOLDER = "{{ assets }}/"
# <script src="https://unpkg.com/react@18.2.0/umd/x.js" integrity="sha384-..."> (or <link href=...>)
ASSET_TAG = re.compile(
    r'(?:src|href)="' + re.escape(CDN) + r'(?P<package>(?:@[^/@"]+/)?[^/@"]+)@(?P<version>[^/"]+)/(?P<path>[^"]+)"'
    r'\s+integrity="(?P<integrity>sha384-[^"]+)"'
)


@dataclass(frozen=True)
class Asset:
    package: str
    version: str
    path: str
    integrity: str

    @property
    def folder(self) -> str:
        return f"{self.package}@{self.version}"


def assets_in(template: str) -> list[Asset]:
    """Every CDN file the template loads; a CDN address without an integrity hash is refused,
    since nothing would prove the vendored bytes are the ones the template expects."""
    assets = [Asset(**match.groupdict()) for match in ASSET_TAG.finditer(template)]
    if template.count(CDN) != len(assets):
        sys.exit(f"the template loads {template.count(CDN)} CDN files but only {len(assets)} carry an integrity hash")
    return assets


def fetch_package(spec: str, into: Path) -> Path:
    """`npm pack` the package from the registry and unpack it; returns its `package/` folder."""
    into.mkdir(parents=True)
    name = subprocess.run(
        ["npm", "pack", "--silent", "--pack-destination", str(into), spec],
        check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    with tarfile.open(into / name) as archive:
        archive.extractall(into, filter="data")
    return into / "package"


def sri(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


def license_text(package_dir: Path, unpacked: dict[str, Path]) -> str:
    """The package's LICENSE; a package that ships none (e.g. @graphiql/plugin-explorer) gets
    the LICENSE of a vendored package from the same repository, under a line saying so."""
    for name in ("LICENSE", "LICENSE.md", "LICENSE.txt", "license"):
        if (package_dir / name).is_file():
            return (package_dir / name).read_text()
    manifest = json.loads((package_dir / "package.json").read_text())
    repository = repository_of(manifest)
    for folder, other in unpacked.items():
        if repository and repository_of(json.loads((other / "package.json").read_text())) == repository and (other / "LICENSE").is_file():
            return (
                f"{manifest['name']} {manifest['version']} ships no LICENSE file; its package.json declares "
                f"\"{manifest.get('license')}\" and its repository is {repository}.\n"
                f"The LICENSE below is that repository's, as shipped in {folder}.\n\n" + (other / "LICENSE").read_text()
            )
    sys.exit(f"{manifest['name']} ships no LICENSE file and no vendored package shares its repository")


def repository_of(manifest: dict) -> str | None:
    """The repository as host/owner/name, however package.json spells its URL."""
    repository = manifest.get("repository")
    url = repository.get("url") if isinstance(repository, dict) else repository
    if not url:
        return None
    return re.sub(r"^(git\+)?[a-z]+://|\.git$", "", url)


def vendor(assets: list[Asset], work: Path) -> None:
    unpacked = {folder: fetch_package(folder, work / folder) for folder in sorted({a.folder for a in assets})}
    for asset in assets:
        source = unpacked[asset.folder] / asset.path
        if sri(source) != asset.integrity:
            sys.exit(f"{asset.folder}/{asset.path}: the registry's file does not match the template's integrity hash")
    licenses = {folder: license_text(package_dir, unpacked) for folder, package_dir in unpacked.items()}
    if ASSETS.exists():
        shutil.rmtree(ASSETS)
    for asset in assets:
        target = ASSETS / asset.folder / asset.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(unpacked[asset.folder] / asset.path, target)
    for folder, text in licenses.items():
        (ASSETS / folder / "LICENSE").write_text(text)
        print(f"vendored {folder}")


def main() -> None:
    template = get_graphql_ide_html(graphql_ide="graphiql")
    assets = assets_in(template)
    with tempfile.TemporaryDirectory() as work:
        vendor(assets, Path(work))
    PAGE.write_text(template.replace(CDN, PLACEHOLDER))
    print(f"wrote {PAGE.relative_to(ROOT)}; update the versions listed in {(STATIC / 'README.md').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
