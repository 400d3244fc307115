"""Dependency audit (``--deps``) through pip-audit's library API.

The vulnerability source is pluggable so that the check works offline:

* ``--vuln-db PATH`` (or ``FLASK_SECURITY_VULN_DB``): a local OSV-format JSON file,
  e.g. a mirror exported by the security team or a test fixture;
* otherwise pip-audit's OSV service, at ``--vuln-url`` (``FLASK_SECURITY_VULN_URL``,
  for an internal mirror) or the public OSV API, bounded by ``--deps-timeout``.

When the source cannot be reached the result is "could not check dependencies"
(BST-W504), never a silent "no vulnerabilities".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from flask_deploy_check.context import CheckContext, describe_exception
from flask_deploy_check.registry import CheckResult, check

DEFAULT_TIMEOUT = 15.0


@dataclass(frozen=True)
class DepsOptions:
    """Where vulnerability data comes from and how long to wait for it."""

    vuln_db: Path | None = None
    vuln_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Vulnerability:
    """One known vulnerability affecting one installed distribution."""

    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    description: str
    fix_versions: tuple[str, ...]


@dataclass
class AuditOutcome:
    """Result of one audit: the vulnerabilities, or why none could be looked up."""

    vulnerabilities: list[Vulnerability] = field(default_factory=list)
    audited: int = 0
    error: str | None = None


def installed_distributions() -> dict[str, Version]:
    """Distributions importable by this interpreter (the app's environment), first wins."""
    found: dict[str, Version] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if not name:
            continue
        try:
            found.setdefault(canonicalize_name(name), Version(dist.version))
        except InvalidVersion:
            continue
    return found


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def in_range(version: Version, events: Iterable[dict[str, str]]) -> bool:
    """OSV range semantics: the last event at or below ``version`` decides."""
    points: list[tuple[Version, str]] = []
    for event in events:
        for kind, raw in event.items():
            parsed = Version("0") if raw == "0" else _version(raw)
            if parsed is not None:
                points.append((parsed, kind))
    affected = False
    for point, kind in sorted(points, key=lambda item: item[0]):
        if kind == "introduced" and version >= point:
            affected = True
        elif (kind in ("fixed", "limit") and version >= point) or (
            kind == "last_affected" and version > point
        ):
            affected = False
    return affected


def is_affected(name: str, version: Version, affected: dict[str, Any]) -> bool:
    """Whether one OSV ``affected`` entry covers ``name`` at ``version``."""
    package = affected.get("package") or {}
    if package.get("ecosystem") != "PyPI" or canonicalize_name(package.get("name", "")) != name:
        return False
    if any(_version(v) == version for v in affected.get("versions") or ()):
        return True
    return any(
        in_range(version, r.get("events") or ())
        for r in affected.get("ranges") or ()
        if r.get("type") in ("ECOSYSTEM", "SEMVER")
    )


def fixed_versions(affected: Iterable[dict[str, Any]]) -> list[Version]:
    """Every ``fixed`` event of the matching ``affected`` entries, oldest first."""
    found = [
        _version(event["fixed"])
        for entry in affected
        for ranges in entry.get("ranges") or ()
        for event in ranges.get("events") or ()
        if "fixed" in event
    ]
    return sorted(version for version in found if version is not None)


class LocalOsvService:
    """A pip-audit vulnerability service backed by a local OSV JSON file.

    Duck-types pip-audit's ``VulnerabilityService`` (``query_all``) so that
    pip-audit's ``Auditor`` runs unchanged on offline data.
    """

    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):  # {} is OSV's own answer when nothing is known
            data = data.get("vulns", [data] if "id" in data else [] if not data else None)
        # Anything else (a package.json passed by mistake) was read as "no advisories": a
        # wrong file passed the audit instead of failing it.
        if not isinstance(data, list) or not all(isinstance(e, dict) and "id" in e for e in data):
            raise ValueError(f"{path} is not an OSV list or {{'vulns': [...]}} document")
        self.entries: list[dict[str, Any]] = data

    def query(self, spec: Any) -> tuple[Any, list[Any]]:
        """Vulnerabilities for one resolved dependency, as pip-audit results."""
        from pip_audit._service import VulnerabilityResult

        results = []
        for entry in self.entries:
            if entry.get("withdrawn"):
                continue
            hits = [
                a
                for a in entry.get("affected") or ()
                if is_affected(spec.canonical_name, spec.version, a)
            ]
            if not hits:
                continue
            results.append(
                VulnerabilityResult.create(
                    ids=[entry["id"], *entry.get("aliases", [])],
                    description=" ".join(
                        str(entry.get("summary") or entry.get("details") or "N/A").split()
                    ),
                    fix_versions=fixed_versions(hits),
                    published=None,
                )
            )
        return spec, results

    def query_all(self, specs: Iterator[Any]) -> Iterator[tuple[Any, list[Any]]]:
        """pip-audit's batch entry point."""
        for spec in specs:
            yield self.query(spec)


class PinnedSource:
    """A pip-audit dependency source listing fixed ``(name, version)`` pairs.

    The installed distributions, or the pins of a lock file (``lock_audit``).
    """

    def __init__(self, pins: Iterable[tuple[str, Version]]) -> None:
        self.pins = sorted(set(pins))

    def collect(self) -> Iterator[Any]:
        """Resolved dependencies, in name order for reproducible output."""
        from pip_audit._service import ResolvedDependency

        for name, version in self.pins:
            yield ResolvedDependency(name=name, version=version)


def _service(options: DepsOptions) -> Any:
    if options.vuln_db is not None:
        return LocalOsvService(options.vuln_db)
    from pip_audit._service import OsvService

    url = options.vuln_url or OsvService.DEFAULT_OSV_URL
    service = OsvService(timeout=options.timeout, osv_url=url)
    # A redirect from the vulnerability service is an error, not a new destination for the
    # list of installed packages (ASVS V15.3.2); requests would follow up to 30 of them.
    service.session.max_redirects = 0
    return service


def describe_source(options: DepsOptions) -> str:
    """Where the vulnerability data was to come from, for messages."""
    if options.vuln_db is not None:
        return f"reading the vulnerability database {options.vuln_db}"
    return f"querying {options.vuln_url or 'the public OSV API'}"


def audit_pins(pins: Iterable[tuple[str, Version]], options: DepsOptions) -> AuditOutcome:
    """Audit ``(name, version)`` pairs; any failure becomes ``error``, never a pass."""
    source = PinnedSource(pins)
    try:
        from pip_audit._audit import Auditor
    except ImportError:
        return AuditOutcome(
            audited=len(source.pins), error="pip-audit is not installed (pip install pip-audit)"
        )
    outcome = AuditOutcome(audited=len(source.pins))
    try:
        auditor = Auditor(_service(options))
        for dep, results in auditor.audit(source):
            for result in results:
                outcome.vulnerabilities.append(
                    Vulnerability(
                        package=dep.name,
                        version=str(dep.version),
                        id=str(result.id),
                        aliases=tuple(sorted(str(a) for a in result.aliases)),
                        description=str(result.description),
                        fix_versions=tuple(str(v) for v in result.fix_versions),
                    )
                )
    except Exception as exc:  # network, service, file and parse errors alike
        return AuditOutcome(
            audited=len(source.pins),
            error=f"{describe_source(options)} failed: {describe_exception(exc)}",
        )
    return outcome


def audit_installed(options: DepsOptions) -> AuditOutcome:
    """Audit every installed distribution of this interpreter."""
    return audit_pins(installed_distributions().items(), options)


@check(
    "BST-E503",
    title="An installed dependency has a known vulnerability",
    why="Published vulnerabilities come with public exploits; attackers scan for "
    "vulnerable versions automatically.",
    fix="Upgrade the package to a fixed version (see the message), re-lock and redeploy.",
    asvs="V15.2.1",
    kind="deps",
)
def vulnerable_dependency(ctx: CheckContext) -> CheckResult:
    """One finding per vulnerability, so CI output names every advisory."""
    outcome = ctx.audit()
    messages = []
    for vuln in outcome.vulnerabilities:
        aliases = f" ({', '.join(vuln.aliases)})" if vuln.aliases else ""
        fixed = f" Fixed in {', '.join(vuln.fix_versions)}." if vuln.fix_versions else ""
        messages.append(
            f"{vuln.package} {vuln.version}: {vuln.id}{aliases}: {vuln.description[:200]}{fixed}"
        )
    return messages


@check(
    "BST-W504",
    title="Could not check dependencies",
    why="The vulnerability data could not be read, so nothing is known about the "
    "dependencies; this is not a clean bill of health.",
    fix="Allow access to the OSV API, point --vuln-url at a mirror, or pass "
    "--vuln-db with a local OSV export.",
    asvs="V15.2.1",
    kind="deps",
)
def dependencies_unchecked(ctx: CheckContext) -> CheckResult:
    """An unreachable source is reported, never mistaken for "no vulnerabilities"."""
    outcome = ctx.audit()
    if outcome.error is None:
        return None
    return f"{outcome.audited} installed distributions not audited; {outcome.error}"
