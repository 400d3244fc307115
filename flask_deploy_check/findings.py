"""Findings: what a check reports, and how severe it is."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Severity(enum.IntEnum):
    """How bad a finding is; ordered so that ``>=`` compares against a fail level."""

    INFO = 10
    WARNING = 20
    ERROR = 30

    @property
    def label(self) -> str:
        """The lower-case name used in text and JSON output."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Severity:
        """Parse ``error``/``warning``/``info`` (case-insensitive)."""
        return cls[label.upper()]

    @classmethod
    def from_check_id(cls, check_id: str) -> Severity:
        """Derive the severity from the letter of a ``BST-E001`` style id.

        Encoding the severity in the id keeps ids and severities from drifting apart.
        """
        letter = check_id.split("-", 1)[1][:1]
        return {"E": cls.ERROR, "W": cls.WARNING, "I": cls.INFO}[letter]


@dataclass(frozen=True)
class Finding:
    """One problem found in an application, with enough context to act on it."""

    id: str
    severity: Severity
    title: str
    message: str
    why: str
    fix: str
    asvs: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of a finding (see ``schema.json``)."""
        return {
            "id": self.id,
            "severity": self.severity.label,
            "title": self.title,
            "message": self.message,
            "why": self.why,
            "fix": self.fix,
            "asvs": self.asvs,
        }

    def sort_key(self) -> tuple[int, str, str]:
        """Most severe first, then by id, so output is deterministic."""
        return (-int(self.severity), self.id, self.message)
