"""Write a CycloneDX 1.5 JSON SBOM of the locked dependencies (``make sbom``).

Reads the hash-pinned lock files ``requirements/main.txt`` (runtime, scope ``required``),
``requirements/dev.txt`` (tests and tooling) and ``requirements/build.txt`` (the image's build
backend), both scope ``optional``, and lists every package with its version, package URL
and every SHA-256 the lock allows. The lock files are the source of truth: they are what
``pip install --require-hashes`` accepts, so the SBOM describes exactly what can be
installed, with no network access and no extra tool (the CycloneDX Python generator would
need another locked dependency for a ~100-line format).

Usage: ``python scripts/sbom.py [-o sbom.cdx.json] [requirements/main.txt ...]``
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LOCKS = (
    ROOT / "requirements" / "main.txt",
    ROOT / "requirements" / "dev.txt",
    ROOT / "requirements" / "build.txt",  # the image's build backend, removed after the build
)
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)")
HASH = re.compile(r"--hash=sha256:(?P<digest>[0-9a-f]{64})")


@dataclass
class Package:
    name: str
    version: str
    hashes: list[str] = field(default_factory=list)
    scope: str = "required"

    @property
    def purl(self) -> str:
        # PEP 503 normalised name, as the purl spec asks for PyPI packages.
        return f"pkg:pypi/{re.sub(r'[-_.]+', '-', self.name).lower()}@{self.version}"


def parse_lock(path: Path) -> list[Package]:
    """Packages of one pip-compile/uv lock file, with every hash it pins."""
    packages: list[Package] = []
    current: Package | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if match := REQUIREMENT.match(line):
            current = Package(match["name"], match["version"])
            packages.append(current)
        if current is not None:
            current.hashes.extend(m["digest"] for m in HASH.finditer(line))
    return packages


def collect(locks: list[Path]) -> list[Package]:
    """Union of the lock files; the first (runtime) file decides a package's scope."""
    found: dict[str, Package] = {}
    for index, lock in enumerate(locks):
        for package in parse_lock(lock):
            key = package.purl
            if key in found:
                found[key].hashes = sorted(set(found[key].hashes) | set(package.hashes))
                continue
            package.scope = "required" if index == 0 else "optional"
            package.hashes = sorted(set(package.hashes))
            found[key] = package
    return sorted(found.values(), key=lambda p: p.purl)


def _project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    return match.group(1) if match else "0"


def build(locks: list[Path]) -> dict[str, object]:
    """The SBOM document as a dict (CycloneDX 1.5 JSON)."""
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "bastion-sbom"}]},
            "component": {"type": "application", "bom-ref": "bastion", "name": "bastion",
                          "version": _project_version()},
        },
        "components": [
            {
                "type": "library",
                "bom-ref": p.purl,
                "name": p.name,
                "version": p.version,
                "scope": p.scope,
                "purl": p.purl,
                "hashes": [{"alg": "SHA-256", "content": h} for h in p.hashes],
                "externalReferences": [
                    {"type": "distribution", "url": f"https://pypi.org/project/{p.name}/{p.version}/"}
                ],
            }
            for p in collect(locks)
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("locks", nargs="*", type=Path, default=list(DEFAULT_LOCKS))
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    text = json.dumps(build(args.locks), indent=2) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
