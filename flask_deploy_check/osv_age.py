"""How old a local OSV export is (``--max-age-days`` of ``make audit``).

"No known vulnerabilities" in a month-old export says nothing of last week's advisories.
The honest measure is the newest ``modified`` date among its records, which OSV sets on
every change of an advisory; only when the records carry none (an empty export, or one
stripped of dates) is the file's modification time used, which a copy or checkout resets,
and the description says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask_deploy_check.deps import LocalOsvService

# A clock a little ahead of this machine's is not a wrong date; a year ahead is.
CLOCK_SKEW = timedelta(days=1)
# OSV's RFC 3339 time; the fraction may have more digits than ``fromisoformat`` reads.
OSV_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True)
class DataAge:
    """When an OSV export was last changed, and what that is measured by."""

    as_of: datetime
    from_records: bool  # False: the file's modification time

    def days(self, now: datetime) -> int:
        """Whole days between the data and ``now`` (negative: dated in the future)."""
        return (now - self.as_of) // timedelta(days=1)

    def is_future(self, now: datetime) -> bool:
        """Dated beyond clock skew: such a date cannot vouch for freshness."""
        return self.as_of - now > CLOCK_SKEW

    def is_stale(self, now: datetime, max_days: int) -> bool:
        """Older than ``max_days`` whole days (0: no limit), or dated in the future."""
        return max_days > 0 and (self.days(now) > max_days or self.is_future(now))

    def describe(self, now: datetime) -> str:
        """``vulnerability data as of 2026-11-20, 10 days old``, and its basis if not records."""
        if self.is_future(now):
            age = "in the future (this machine's clock or the export is wrong)"
        else:
            days = max(self.days(now), 0)
            age = f"{days} day{'' if days == 1 else 's'} old"
        basis = (
            ""
            if self.from_records
            else " (by the file's modification time: its records carry no `modified` date)"
        )
        return f"vulnerability data as of {self.as_of:%Y-%m-%d}, {age}{basis}"


def modified(entry: dict[str, Any]) -> datetime:
    """One record's ``modified`` date; a wrong one is a broken export, not an undated one."""
    value = entry["modified"]
    match = OSV_TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
    if match is not None:
        date, time, fraction, offset = match.groups()
        micro = f".{fraction[:6].ljust(6, '0')}" if fraction else ""
        try:
            moment = datetime.fromisoformat(f"{date}T{time}{micro}{offset.upper()}")
            return moment.astimezone(UTC)  # the date printed is UTC's, whatever the offset
        except ValueError:  # a 13th month, a 25th hour
            pass
    raise ValueError(f"advisory {entry['id']} has no RFC 3339 `modified` date: {value!r}")


def data_age(path: Path) -> DataAge:
    """The newest ``modified`` date of the export's records, else the file's mtime."""
    entries = LocalOsvService(path).entries
    stamps = [modified(entry) for entry in entries if "modified" in entry]
    if stamps:
        return DataAge(max(stamps), from_records=True)
    return DataAge(datetime.fromtimestamp(path.stat().st_mtime, UTC), from_records=False)
