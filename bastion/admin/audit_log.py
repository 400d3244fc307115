"""Reading the audit trail: filtered, paginated queries and CSV / JSON Lines exports.

The admin page and ``flask audit export`` share the filter and the exports below.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import orjson
from markupsafe import Markup
from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.orm import aliased

from bastion.auth.services import canonical_username
from bastion.content.services import Page, escape_like
from bastion.extensions import db
from bastion.models import AuditEvent, User

PAGE_MAX = 10_000
# Events the admin page counts at most: the trail only grows, and counting all of it on
# every view would cost more with each year. Past this the page says "more than" and offers
# older pages one at a time, as far as PAGE_MAX; exports are not capped by it.
COUNT_MAX = 10_000
# Its details keep the deleted account's username: the one place the name outlives the row.
DELETED_EVENT = "user.deleted"
EXPORT_MAX = 100_000
CSV_COLUMNS = (
    "id",
    "created_at",
    "event",
    "actor_id",
    "target_user_id",
    "ip",
    "user_agent",
    "request_id",
    "details",
)
# Spreadsheets run cells starting with these as formulas (CSV injection, OWASP).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Where a spreadsheet may begin a new cell inside one of ours: Excel splits a comma file's
# lines at ";" where that is the list separator (German, French, ...), and import dialogs
# split at tabs and line breaks. Cells are quoted only when they hold a comma or a quote.
CELL_BREAK_RE = re.compile(r"([;\t\r\n])")


@dataclass(frozen=True)
class AuditFilter:
    """What an admin asked for; ``user`` is a username or a numeric id.

    ``since``/``until`` as dates cover whole days (both inclusive); as datetimes they are
    exact bounds (the command line takes either).
    """

    user: str = ""
    event: str = ""
    since: date | datetime | None = None
    until: date | datetime | None = None


def _held(user_id: int) -> ColumnElement[bool]:
    return or_(AuditEvent.actor_id == user_id, AuditEvent.target_user_id == user_id)


@dataclass(frozen=True)
class UserMatch:
    """A ``user`` filter, resolved once: the conditions on the rows it names (None for no
    filter, empty when it names none), and whether it named any account at all.

    An export for a name no account ever had is empty, as is one for an account without
    events: ``named`` tells a typo from the latter, without a second pass over the trail.
    """

    conditions: tuple[ColumnElement[bool], ...] | None = None
    named: bool = True


def _id_known(user_id: int) -> bool:
    """Whether an account has or had ``user_id``: it exists, or a row of the trail holds
    the id (a deleted account, also one purged unconfirmed, which leaves no
    ``user.deleted``). Two index probes, not a pass over the trail."""
    if db.session.scalar(select(User.id).where(User.id == user_id)) is not None:
        return True
    return db.session.scalar(select(AuditEvent.id).where(_held(user_id)).limit(1)) is not None


def as_user_id(user: str) -> int | None:
    """``user`` read as an account id: ASCII digits only (str.isdigit() is also true for
    "²" or "①", which int() refuses), short enough to be one."""
    return int(user) if user.isascii() and user.isdigit() and len(user) < 10 else None


def match_user(user: str) -> UserMatch:
    """The rows ``user`` names: by id (digits), by a live username, by a deleted one.

    No conditions for no filter; empty ones when nothing matches. Usernames may be all digits
    ("1024"), so digits are read both ways: read only as an id, an account named after
    another's id would have the filter show that account's events instead of its own.

    A deleted account's rows keep only its id; its name lives on in the details of its
    ``user.deleted`` row, so a name also finds the accounts deleted under it, which is where
    an investigation starts. A name covers its id only while that account held it: SQLite
    (development) hands a deleted account's id out again, and the rows of the id's earlier
    or later holders are not this account's. An id given as digits covers every holder.
    """
    user = user.strip()
    if not user:
        return UserMatch()
    if "\x00" in user:  # no username or id has one, and PostgreSQL refuses NUL in text
        return UserMatch(conditions=(), named=False)
    conditions: list[ColumnElement[bool]] = []
    as_id = as_user_id(user)
    if as_id is not None:
        conditions.append(_held(as_id))
    name = canonical_username(user)
    live = db.session.scalar(select(User.id).where(User.username == name))
    # The newest hundred: a name deleted more often than that is an operator's script, and
    # the statement stays bounded however often a name comes back.
    deleted_as_name = (
        select(AuditEvent.target_user_id, AuditEvent.created_at)
        .where(
            AuditEvent.event == DELETED_EVENT,
            AuditEvent.details["username"].as_string() == name,
        )
        .order_by(AuditEvent.created_at.desc())
        .limit(100)
    )
    gone = [(i, at) for i, at in db.session.execute(deleted_as_name) if i is not None]
    ids = {i for i, _ in gone} | ({live} if live is not None else set())
    deletions: dict[int, list[datetime]] = {}
    if ids:
        for user_id, at in db.session.execute(
            select(AuditEvent.target_user_id, AuditEvent.created_at).where(
                AuditEvent.event == DELETED_EVENT, AuditEvent.target_user_id.in_(ids)
            )
        ):
            if user_id is not None:
                deletions.setdefault(user_id, []).append(at)

    def since_last_deletion(user_id: int, until: datetime | None) -> list[ColumnElement[bool]]:
        earlier = [at for at in deletions.get(user_id, []) if until is None or at < until]
        return [AuditEvent.created_at > max(earlier)] if earlier else []

    if live is not None:
        conditions.append(and_(_held(live), *since_last_deletion(live, None)))
    for user_id, deleted_at in gone:
        window = [AuditEvent.created_at <= deleted_at, *since_last_deletion(user_id, deleted_at)]
        conditions.append(and_(_held(user_id), *window))
    named = live is not None or bool(gone) or (as_id is not None and _id_known(as_id))
    return UserMatch(conditions=tuple(conditions), named=named)


def _filtered(f: AuditFilter, who: UserMatch | None = None) -> Select[AuditEvent]:
    """The trail's rows ``f`` asks for; ``who`` is ``f.user`` resolved already, if it is."""
    stmt = select(AuditEvent)
    named = (who if who is not None else match_user(f.user)).conditions
    if named is not None:
        stmt = stmt.where(or_(*named) if named else false())
    event = f.event.strip()
    if "\x00" in event:  # no event name has one, and PostgreSQL refuses NUL in text
        stmt = stmt.where(false())
    elif event.endswith("*"):
        stmt = stmt.where(AuditEvent.event.like(escape_like(event[:-1]) + "%", escape="\\"))
    elif event:
        stmt = stmt.where(AuditEvent.event == event)
    if (start := _start(f)) is not None:
        stmt = stmt.where(AuditEvent.created_at >= start)
    if isinstance(f.until, datetime):
        stmt = stmt.where(AuditEvent.created_at <= _aware(f.until))
    elif (end := _day_after_until(f)) is not None:
        stmt = stmt.where(AuditEvent.created_at < end)
    return stmt


def _start(f: AuditFilter) -> datetime | None:
    if isinstance(f.since, datetime):
        return _aware(f.since)
    return datetime.combine(f.since, time.min, UTC) if f.since else None


def _day_after_until(f: AuditFilter) -> datetime | None:
    """The exclusive end of a whole-day ``until``; None for the last day there is."""
    if isinstance(f.until, datetime) or not f.until or f.until == date.max:
        return None
    return datetime.combine(f.until, time.min, UTC) + timedelta(days=1)


def is_inverted(f: AuditFilter) -> bool:
    """Whether ``since`` lies after ``until``: a range no event can be in, surely a mistake
    (swapped bounds), to refuse rather than answer with an empty export."""
    start = _start(f)
    if start is None or f.until is None:
        return False
    if isinstance(f.until, datetime):
        return start > _aware(f.until)
    end = _day_after_until(f)
    return end is not None and start >= end


def _aware(moment: datetime) -> datetime:
    """Naive times are taken as UTC, the time zone the trail is stored in."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class EventPage(Page):
    """A page of the trail whose ``total`` stops at ``COUNT_MAX + 1``: ``capped`` then
    says there are more than ``COUNT_MAX`` events, and ``pages`` counts only those."""

    has_older: bool = False

    @property
    def capped(self) -> bool:
        return self.total > COUNT_MAX


def query_events(
    f: AuditFilter, *, page: int = 1, per_page: int = 50, who: UserMatch | None = None
) -> EventPage:
    """One page of the filtered trail, newest first, counting at most ``COUNT_MAX + 1`` of
    its events (a LIMITed subquery of their ids). One row beyond the page is read to tell
    whether an older page exists, which past the count is the only way to know. ``who``:
    ``f.user`` already resolved (:func:`match_user`), for a caller that also shows whether
    it named anyone."""
    page = min(max(1, int(page)), PAGE_MAX)
    stmt = _filtered(f, who)
    counted = stmt.with_only_columns(AuditEvent.id).limit(COUNT_MAX + 1).subquery()
    total = db.session.scalar(select(func.count()).select_from(counted)) or 0
    items = list(db.session.scalars(
        stmt.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(per_page + 1)
        .offset((page - 1) * per_page)
    ))
    return EventPage(
        items=items[:per_page], page=page, per_page=per_page, total=total,
        has_older=len(items) > per_page and page < PAGE_MAX,
    )


def known_events() -> list[str]:
    """Event names present in the trail, for the filter's suggestions, in name order.

    The trail only grows (every failed sign-in, every CSP report), and ``SELECT DISTINCT``
    reads all of it on every view of the page. This walks the (event, created_at) index
    from one name to the next instead: one index probe per name, however many events.
    """
    later = aliased(AuditEvent)
    first = select(func.min(AuditEvent.event).label("event")).cte("names", recursive=True)
    following = (
        select(func.min(later.event)).where(later.event > first.c.event).scalar_subquery()
    )
    names = first.union_all(select(following).where(first.c.event.is_not(None)))
    return list(db.session.scalars(
        select(names.c.event).where(names.c.event.is_not(None)).order_by(names.c.event)
    ))


def _shown(char: str) -> str:
    r"""``char`` itself when printable (or a line break / tab), else its JSON escape
    (``\u202e``), which in the ``details`` JSON is the same string, still valid JSON."""
    if char.isprintable() or char in "\t\r\n":
        return char
    return json.dumps(char)[1:-1]


def readable(text: str) -> str:
    """``text`` with invisible characters written as escapes, as details and cells show them."""
    return text if text.isprintable() else "".join(_shown(char) for char in text)


def address_breaks(ip: str) -> Markup:
    """``ip`` escaped, free to wrap after each colon: an IPv6 address in a narrow column
    breaks between its groups ("2001:0db8:85a3:" / "0000:..."), not wherever the column
    ends; ``<wbr>`` adds nothing to the text, so a copied address stays whole."""
    return Markup(":<wbr>").join(ip.split(":"))


def details_text(details: object) -> str:
    """An event's details as JSON an admin can read: ``<`` and accented letters as they are
    (the template escapes the HTML), invisible characters as escapes (no bidi tricks).

    Jinja's ``tojson`` escaped every ``<`` and non-ASCII letter too, so a CSP report read
    ``\u003cscript\u003e`` on the page that exists to show what an attacker sent.
    """
    return readable(json.dumps(details, ensure_ascii=False, sort_keys=True, default=str))


def csv_cell(value: object) -> str:
    """Text for one CSV cell that a spreadsheet will show as stored, never evaluate.

    Anonymous requests put text in the trail (a CSP report's fields, a user agent): a bidi
    override, zero-width or tag character there would make the cell read differently from
    what it holds, so such characters are written as escapes. Text after a ";", tab or
    line break is judged as a cell of its own (``CELL_BREAK_RE``): "x;=cmd|..." gets its
    quote after the ";".
    """
    text = readable("" if value is None else str(value))
    parts = CELL_BREAK_RE.split(text)  # text, break, text, break, ..., text
    text = "".join(
        "'" + part if i % 2 == 0 and i and _starts_a_formula(part) else part
        for i, part in enumerate(parts)
    )
    return "'" + text if _starts_a_formula(text) else text


def _starts_a_formula(text: str) -> bool:
    """A formula prefix first, or after leading spaces (spreadsheets skip those) or double
    quotes, or in its full-width or small form (NFKC folds U+FF1D and U+FE66 to ``=``): all
    are read as a formula by some spreadsheet or import dialog, or become one after a trim.

    Quotes: a cell that holds one is written quoted, its quotes doubled, so a ``"`` after a
    ";" or tab becomes ``""``; a spreadsheet that splits the line there reads that as an
    empty quoted field and runs the ``=...`` that follows it as the cell's formula.
    """
    if text.startswith(FORMULA_PREFIXES):
        return True
    head = text.lstrip(' "')[:1]
    return bool(head) and unicodedata.normalize("NFKC", head) in FORMULA_PREFIXES


def _values(event: AuditEvent) -> tuple[object, ...]:
    """One event in CSV_COLUMNS order."""
    return (
        event.id,
        event.created_at.isoformat(),
        event.event,
        event.actor_id,
        event.target_user_id,
        event.ip,
        event.user_agent,
        event.request_id,
        event.details or {},
    )


def _row(event: AuditEvent) -> list[str]:
    values = list(_values(event))
    values[-1] = orjson.dumps(values[-1], option=orjson.OPT_SORT_KEYS).decode()
    return [csv_cell(v) for v in values]


def _oldest_first(
    f: AuditFilter, everything: bool, who: UserMatch | None
) -> Iterator[AuditEvent]:
    stmt = _filtered(f, who).order_by(AuditEvent.created_at, AuditEvent.id)
    stmt = stmt.limit(None if everything else EXPORT_MAX)
    return iter(db.session.scalars(stmt.execution_options(yield_per=500)))


def export_jsonl(
    f: AuditFilter, *, everything: bool = False, who: UserMatch | None = None
) -> Iterator[str]:
    """The filtered trail as JSON Lines, oldest first: one object per line, typed values
    (no formula escaping: JSON is read by programs, not spreadsheets). Invisible and
    control characters are escaped as in the CSV: the file is also read in terminals,
    where a raw C1 control or bidi override would show something other than what is
    stored; the escaped line decodes to the same values. Up to ``EXPORT_MAX`` events
    unless ``everything``; ``who``: ``f.user`` already resolved (:func:`match_user`)."""
    for event in _oldest_first(f, everything, who):
        line = dict(zip(CSV_COLUMNS, _values(event), strict=True))
        yield readable(orjson.dumps(line, option=orjson.OPT_SORT_KEYS).decode()) + "\n"


def export_csv(
    f: AuditFilter, *, everything: bool = False, who: UserMatch | None = None
) -> Iterator[str]:
    """The filtered trail as CSV, oldest first, streamed in chunks; up to ``EXPORT_MAX``
    events (a bound for the web download) unless ``everything``; ``who``: ``f.user``
    already resolved (:func:`match_user`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for n, event in enumerate(_oldest_first(f, everything, who), 1):
        writer.writerow(_row(event))
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
