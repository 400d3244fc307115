"""The registry of checks: every id, its metadata and the function that runs it.

Metadata lives next to the check (in the ``@check`` decorator) so that the text
output, the JSON output and ``docs/security-check.md`` all come from one place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from flask_deploy_check.findings import Finding, Severity

if TYPE_CHECKING:
    from flask_deploy_check.context import CheckContext

CheckResult = str | Iterable[str] | None
"""A check returns nothing when all is well, else one message per problem."""

CheckFunc = Callable[["CheckContext"], CheckResult]
Kind = Literal["config", "live", "deps", "meta"]

ID_PATTERN = re.compile(r"^BST-[EWI]\d{3}$")
# Messages quote header values and advisory text from outside; control characters
# (an ESC sequence) would otherwise reach the operator's terminal and CI logs raw.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` on one line, other control characters shown as ``\\xNN`` escapes."""
    one_line = re.sub(r"[\t\n\r]+", " ", text)
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", one_line)


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: stable id, documentation and the function to run."""

    id: str
    title: str
    why: str
    fix: str
    asvs: str | None
    deploy: bool
    kind: Kind
    func: CheckFunc | None
    django: str | None = None

    @property
    def severity(self) -> Severity:
        """Severity is encoded in the id letter (E, W or I)."""
        return Severity.from_check_id(self.id)

    def finding(self, message: str) -> Finding:
        """Build a finding for this check with a concrete message."""
        return Finding(
            id=self.id,
            severity=self.severity,
            title=self.title,
            message=printable(message),
            why=self.why,
            fix=self.fix,
            asvs=self.asvs,
        )


REGISTRY: dict[str, CheckSpec] = {}


def register(spec: CheckSpec) -> CheckSpec:
    """Add a spec, refusing malformed or duplicate ids (ids are a public contract)."""
    if not ID_PATTERN.match(spec.id):
        raise ValueError(f"malformed check id {spec.id!r}")
    number = spec.id[-3:]
    for other in REGISTRY.values():
        if other.id == spec.id or other.id[-3:] == number:
            raise ValueError(f"check id {spec.id} clashes with {other.id}")
    REGISTRY[spec.id] = spec
    return spec


def check(
    id: str,
    *,
    title: str,
    why: str,
    fix: str,
    asvs: str | None = None,
    deploy: bool = False,
    kind: Kind = "config",
    django: str | None = None,
) -> Callable[[CheckFunc], CheckFunc]:
    """Register the decorated function as the check ``id``.

    ``deploy=True`` runs it only with ``--deploy``, like Django's deployment checks.
    """

    def decorator(func: CheckFunc) -> CheckFunc:
        register(
            CheckSpec(
                id=id,
                title=title,
                why=why,
                fix=fix,
                asvs=asvs,
                deploy=deploy,
                kind=kind,
                func=func,
                django=django,
            )
        )
        return func

    return decorator


def all_specs() -> list[CheckSpec]:
    """Every registered check, ordered by number (importing the check modules first)."""
    from flask_deploy_check import (  # noqa: F401 - imported for registration
        config_checks,
        cookie_checks,
        deps,
        live_checks,
        output_checks,
        request_checks,
        runner,
    )

    return sorted(REGISTRY.values(), key=lambda spec: spec.id[-3:])
