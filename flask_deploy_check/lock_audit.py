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
a URL, an include) is refused, never skipped, and so is a file without a pin. The file is
decoded as pip decodes it (a byte order mark is honoured), and refused where pip would
read it otherwise (an encoding declaration, bytes that are not UTF-8) or it is no text.

A ``--vuln-db`` export is only as good as its date: its age (``osv_age``) is printed, and
data more than ``--max-age-days`` old (default 7, 0 to accept any age) fails the audit.
The OSV service answers with its current data; a mirror's age cannot be seen.

Usage: ``python -m flask_deploy_check.lock_audit -r requirements/main.txt [-r ...]
[--vuln-db osv.json | --vuln-url URL] [--max-age-days N] [--timeout SECONDS]``

Exit status: 0 no known vulnerability; 1 known vulnerabilities; 2 an unusable lock file or
option; 3 the vulnerability data could not be read (nothing was checked); 4 the
vulnerability data is older than ``--max-age-days`` (and no vulnerability was found in it).
"""

from __future__ import annotations

import argparse
import codecs
import os
import re
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from flask_deploy_check.context import describe_exception
from flask_deploy_check.deps import (
    DEFAULT_TIMEOUT,
    AuditOutcome,
    DepsOptions,
    audit_pins,
    describe_source,
)
from flask_deploy_check.osv_age import DataAge, data_age

EXIT_VULNERABLE, EXIT_REFUSED, EXIT_UNCHECKED, EXIT_STALE = 1, 2, 3, 4
DEFAULT_MAX_AGE_DAYS = 7

HASH_OPTION = re.compile(r"\s--hash[=\s]+sha256:[0-9a-f]{64}(?=\s|$)")
COMMENT = re.compile(r"(^|\s)#.*")
# pip's own table (``pip._internal.req.req_file.BOMS``): UTF-32 first, as its BOMs start
# with UTF-16's.
BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
# pip honours a PEP 263 declaration on either of the first two lines, unanchored.
PEP263_ENCODING = re.compile(rb"coding[:=]\s*([-\w.]+)")


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


def _line_of(text: str) -> int:
    """The number of the line ``text`` (everything before some point) ends in."""
    return len((text + "x").splitlines())


def decode_lock(data: bytes) -> str:
    """The text pip reads from ``data``; ``LockError`` (``N: why``) where it would differ.

    A different reading would let a lock install pins this audit never saw: under a
    ``# coding: utf-7`` line, pip turns ``+AAo-`` inside a comment into a new line.
    """
    encoding = "utf-8"
    for bom, bom_encoding in BOMS:
        if data.startswith(bom):  # pip ignores any declaration then, and so may we
            data, encoding = data[len(bom) :], bom_encoding
            break
    else:
        for number, line in enumerate(data.split(b"\n")[:2], 1):
            declared = PEP263_ENCODING.search(line) if line.startswith(b"#") else None
            if declared and _codec(declared.group(1)) not in ("utf-8", "ascii"):
                raise LockError(
                    f"{number}: declares the encoding {declared.group(1).decode('ascii')!r}, "
                    "not UTF-8: pip would decode the file so and could install lines this "
                    "audit does not see; remove the declaration (or re-lock with `make lock`)"
                )
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode(encoding, errors="replace")
        raise LockError(
            f"{_line_of(before)}: is not {encoding.upper()} (byte 0x{data[exc.start]:02x}): "
            "re-save the file as UTF-8 (or re-lock with `make lock`)"
        ) from None
    if "\0" in text:
        raise LockError(
            f"{_line_of(text[: text.index(chr(0))])}: holds a NUL byte: not a text file, or "
            "UTF-16 saved without a byte order mark; re-save it as UTF-8 (or re-lock with "
            "`make lock`)"
        )
    return text


def _codec(name: bytes) -> str | None:
    try:
        return codecs.lookup(name.decode("ascii")).name
    except LookupError:  # pip would fail on it: refused as well
        return None


def read_lock(path: Path) -> list[tuple[str, Version]]:
    """Every pin of one lock file; ``LockError`` names the first line that is not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LockError(f"{path}: cannot be read: {exc}") from None
    try:
        text = decode_lock(data)
    except LockError as exc:
        raise LockError(f"{path}:{exc}") from None
    pins = []
    for number, line in _logical_lines(text):
        try:
            pins.append(parse_pin(line))
        except LockError as exc:
            raise LockError(f"{path}:{number}: {line[:80]!r} {exc}") from None
    if not pins:
        raise LockError(f"{path}: holds no pinned requirement")
    return pins


def _max_age(text: str) -> int:
    days = int(text)  # argparse turns the ValueError into a usage error
    if days < 0:
        raise argparse.ArgumentTypeError("must be 0 (no limit) or a number of days")
    return days


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
    parser.add_argument(
        "--max-age-days",
        type=_max_age,
        default=DEFAULT_MAX_AGE_DAYS,
        metavar="N",
        help=f"fail (exit {EXIT_STALE}) when the --vuln-db data is more than N days old "
        f"(default {DEFAULT_MAX_AGE_DAYS}; 0: any age)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS")
    args = parser.parse_args(argv)
    # A mistyped path must not turn into "no advisories" (see --vuln-db of --deps).
    if args.vuln_db is not None and (not args.vuln_db.exists() or args.vuln_db.is_dir()):
        parser.error(f"--vuln-db {args.vuln_db} does not exist or is a directory")
    if not args.timeout > 0:  # also NaN
        parser.error("--timeout must be positive")
    return args


def _age(options: DepsOptions, outcome: AuditOutcome) -> DataAge | None:
    """The age of a ``--vuln-db`` export read without error; a broken date is an error."""
    if outcome.error is not None or options.vuln_db is None:
        return None
    try:
        return data_age(options.vuln_db)
    except (OSError, ValueError) as exc:
        outcome.error = f"{describe_source(options)} failed: {describe_exception(exc)}"
        return None


def _stale(age: DataAge | None, now: datetime, max_days: int) -> str | None:
    """Why the data is too old to vouch for anything, or None."""
    if age is None or not age.is_stale(now, max_days):
        return None
    why = "a future date proves nothing" if age.is_future(now) else (
        f"more than the {max_days} days --max-age-days allows"
    )
    return (f"{age.describe(now)}: {why}; export a fresh OSV database "
            "(or pass --max-age-days 0 to accept data of any age)")


def main(argv: Sequence[str] | None = None) -> int:
    """Print each known vulnerability and a summary; the exit status is the verdict."""
    args = _arguments(argv)
    names = ", ".join(str(path) for path in args.requirement)
    try:
        pins = [pin for path in args.requirement for pin in read_lock(path)]
    except LockError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    options = DepsOptions(args.vuln_db, args.vuln_url, args.timeout)
    outcome = audit_pins(pins, options)
    age = _age(options, outcome)
    if outcome.error is not None:
        print(
            f"could not check {outcome.audited} pins of {names}: {outcome.error}",
            file=sys.stderr,
        )
        return EXIT_UNCHECKED
    for vuln in outcome.vulnerabilities:
        aliases = f" ({', '.join(vuln.aliases)})" if vuln.aliases else ""
        fixed = ", ".join(vuln.fix_versions) or "no fixed version"
        print(f"{vuln.package} {vuln.version}: {vuln.id}{aliases}: fixed in {fixed}: "
              f"{vuln.description[:200]}")
    now = datetime.now(UTC)
    # The service answers with its current data, a mirror with its own: neither is dated.
    source = describe_source(options).removeprefix("querying ")
    print(age.describe(now) if age else f"vulnerability data: what {source} serves now")
    stale = _stale(age, now, args.max_age_days)
    found = len(outcome.vulnerabilities)
    verdict = f"{found or 'no'} known vulnerabilit{'y' if found == 1 else 'ies'}"
    print(f"{outcome.audited} pins audited from {names}: {verdict}"
          f"{' in stale data' if stale else ''}")
    if stale:
        print(f"stale: {stale}", file=sys.stderr)
    return EXIT_VULNERABLE if found else EXIT_STALE if stale else 0


if __name__ == "__main__":
    sys.exit(main())
