"""Audit hash-pinned lock files for known vulnerabilities (``make audit``).

``flask security check --deps`` audits the distributions installed where it runs; this
audits what a lock file lets ``pip install --require-hashes`` install, without installing
it, an app, or pip's resolver. It exists because pip-audit's own CLI
(``pip-audit -r requirements/main.txt``) has no offline vulnerability source: an air-gapped
CI could not run it on an exported OSV file. Here the same OSV matching and
``LocalOsvService`` as ``--deps`` read ``--vuln-db`` (or ``FLASK_SECURITY_VULN_DB``);
without one, pip-audit's OSV service is queried (``--vuln-url`` for a mirror).

Every pin of a universal lock is audited, whatever its environment marker: each is
installed on some platform. A line that is not a hash-pinned ``name==version`` (a range,
a URL, an include) is refused, never skipped, and so is a file without a pin.

Usage: ``python -m flask_deploy_check.lock_audit -r requirements/main.txt [-r ...]
[--vuln-db osv.json | --vuln-url URL] [--timeout SECONDS]``

Exit status: 0 no known vulnerability; 1 known vulnerabilities; 2 an unusable lock file or
option; 3 the vulnerability data could not be read (nothing was checked).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from flask_deploy_check.deps import DEFAULT_TIMEOUT, DepsOptions, audit_pins

HASH_OPTION = re.compile(r"\s--hash[=\s]+sha256:[0-9a-f]{64}(?=\s|$)")
COMMENT = re.compile(r"(^|\s)#.*")


class LockError(ValueError):
    """A lock file this audit cannot vouch for."""


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """pip's lines: comments dropped, backslash continuations joined, with line numbers."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = COMMENT.sub("", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            yield start, line
    if pending.strip():  # pip installs a line still continued at the end of the file
        yield start, pending.strip()


def parse_pin(line: str) -> tuple[str, Version]:
    """``(name, version)`` of one ``name==version [; marker] --hash=...`` line."""
    hashes = HASH_OPTION.findall(" " + line)
    try:
        requirement = Requirement(HASH_OPTION.sub("", " " + line).strip())
    except InvalidRequirement as exc:
        raise LockError(f"is not a requirement: {exc}") from None
    specifiers = list(requirement.specifier)
    pinned = len(specifiers) == 1 and specifiers[0].operator == "=="
    if requirement.url or not pinned or "*" in specifiers[0].version:
        raise LockError("is not pinned to one version with ==")
    if not hashes:
        raise LockError("has no --hash=sha256 (the lock must be made by `make lock`)")
    try:
        return canonicalize_name(requirement.name), Version(specifiers[0].version)
    except InvalidVersion:
        raise LockError("pins no valid version") from None


def read_lock(path: Path) -> list[tuple[str, Version]]:
    """Every pin of one lock file; ``LockError`` names the first line that is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LockError(f"{path}: cannot be read: {exc}") from None
    pins = []
    for number, line in _logical_lines(text):
        try:
            pins.append(parse_pin(line))
        except LockError as exc:
            raise LockError(f"{path}:{number}: {line[:80]!r} {exc}") from None
    if not pins:
        raise LockError(f"{path}: holds no pinned requirement")
    return pins


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flask_deploy_check.lock_audit",
        description="Audit hash-pinned requirement files for known vulnerabilities.",
    )
    parser.add_argument(
        "-r", "--requirement", type=Path, action="append", required=True, metavar="FILE"
    )
    parser.add_argument(
        "--vuln-db",
        type=Path,
        default=os.environ.get("FLASK_SECURITY_VULN_DB") or None,
        help="local OSV JSON file (default: $FLASK_SECURITY_VULN_DB, else the OSV service)",
    )
    parser.add_argument(
        "--vuln-url",
        default=os.environ.get("FLASK_SECURITY_VULN_URL") or None,
        help="OSV query endpoint of a mirror (default: $FLASK_SECURITY_VULN_URL, else OSV)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS")
    args = parser.parse_args(argv)
    # A mistyped path must not turn into "no advisories" (see --vuln-db of --deps).
    if args.vuln_db is not None and (not args.vuln_db.exists() or args.vuln_db.is_dir()):
        parser.error(f"--vuln-db {args.vuln_db} does not exist or is a directory")
    if not args.timeout > 0:  # also NaN
        parser.error("--timeout must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Print each known vulnerability and a summary; the exit status is the verdict."""
    args = _arguments(argv)
    names = ", ".join(str(path) for path in args.requirement)
    try:
        pins = [pin for path in args.requirement for pin in read_lock(path)]
    except LockError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    outcome = audit_pins(pins, DepsOptions(args.vuln_db, args.vuln_url, args.timeout))
    if outcome.error is not None:
        print(
            f"could not check {outcome.audited} pins of {names}: {outcome.error}",
            file=sys.stderr,
        )
        return 3
    for vuln in outcome.vulnerabilities:
        aliases = f" ({', '.join(vuln.aliases)})" if vuln.aliases else ""
        fixed = ", ".join(vuln.fix_versions) or "no fixed version"
        print(f"{vuln.package} {vuln.version}: {vuln.id}{aliases}: fixed in {fixed}: "
              f"{vuln.description[:200]}")
    found = len(outcome.vulnerabilities)
    verdict = f"{found or 'no'} known vulnerabilit{'y' if found == 1 else 'ies'}"
    print(f"{outcome.audited} pins audited from {names}: {verdict}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
