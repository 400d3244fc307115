"""Server-side sessions behind Flask-Login.

The signed cookie holds only a random session id (``sid``); the record in ``user_sessions``
decides whether it is still valid. That makes logout, "sign out everywhere", password
changes and admin actions take effect at once, on every instance, which a purely
client-side cookie (Flask's default, and Flask-Login's remember cookie) cannot do.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta
from functools import cache

from flask import current_app, g, request, session
from flask_login import login_user, logout_user
from sqlalchemy import Select, bindparam, or_, select, update
from sqlalchemy.orm import joinedload, load_only
from sqlalchemy.orm.attributes import set_committed_value

from bastion.api.pats import revoke_all_for as revoke_personal_tokens
from bastion.api.tokens import revoke_all_for_user
from bastion.auth.pending import FINISHED_KEY
from bastion.extensions import db, login_manager
from bastion.models import User, UserSession, utcnow
from bastion.models.base import ID_MAX, affected_rows, storable_text
from bastion.models.locks import lock_user
from bastion.security.passwords import matches_older_fingerprint, password_fingerprint
from bastion.security.tokens import new_token, token_hash

# Writing last_seen on every request would turn every page view into a database write.
LAST_SEEN_GRANULARITY = timedelta(minutes=1)
# Live sessions one account may hold: more than anyone's devices, few enough that the
# account page lists them all and a script signing in over and over cannot grow the table
# without end. A new sign-in beyond it ends the least recently used (V7.1.2).
MAX_LIVE_SESSIONS = 20


GRANTED_ON_KEY = "pwd"
# Sent with every answer that ends the browser's own session (sign-out, revoking this
# device, "sign out everywhere"): the browser drops cached pages and storage of the account.
# Cookies are not listed, so the flash message of the answer survives.
CLEAR_SITE_DATA = '"cache", "storage"'


class AccountGoneError(LookupError):
    """The account was deleted after its sign-in was checked: no session starts (the
    sign-in pages answer as for a wrong password; a signed-in request is signed out)."""


def start_session(
    user: User,
    *,
    remember: bool = False,
    reauthenticated: bool = True,
    password: str | None = None,
    continues: UserSession | None = None,
) -> str:
    """Begin a fresh session for ``user``: a new id, so nothing set before login survives.

    ``password`` is the fingerprint of the password hash the sign-in verified (by default
    the one ``user`` holds, loaded before the check). Kept in the signed cookie, it ends
    the session once the stored hash is another: a sign-in that checked the old password
    while a change committed creates its record after ``revoke_all`` ran, and would live.

    ``continues`` is the session this one replaces without a sign-in (a password change):
    the new id keeps its "keep me signed in" choice, its end and its last
    re-authentication. A password alone is not the second factor, so it must not renew
    either the 10-minute window or the session's lifetime.
    """
    now, user_id = utcnow(), user.id
    # First, and as a statement that counts its row: an account deleted since its password
    # was checked (the holder in another tab, an admin) would otherwise fail the flush
    # below on its foreign key, a 500. Also takes the user's row lock before the session's.
    if not affected_rows(db.session.execute(
        update(User).where(User.id == user_id).values(last_login_at=now)
        .execution_options(synchronize_session=False, user_state_neutral=True)
    )):
        db.session.rollback()
        raise AccountGoneError(user_id)
    set_committed_value(user, "last_login_at", now)
    sid = new_token(32)
    if continues is not None:
        remember = continues.remember
        expires_at, reauth_at = continues.expires_at, continues.reauth_at
    else:
        lifetime = (
            timedelta(days=current_app.config["REMEMBER_DAYS"])
            if remember
            else current_app.config["SESSION_ABSOLUTE"]
        )
        expires_at, reauth_at = now + lifetime, now if reauthenticated else None
    record = UserSession(
        token_hash=token_hash(sid),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=expires_at,
        reauth_at=reauth_at,
        remember=remember,
        ip=storable_text(request.remote_addr, 45),
        user_agent=storable_text(request.user_agent.string, 255),
    )
    db.session.add(record)
    db.session.flush()
    _end_sessions_beyond_the_cap(user.id, now)
    db.session.commit()
    session.clear()
    session.permanent = remember
    session["sid"] = sid
    session[GRANTED_ON_KEY] = password or password_fingerprint(user.password_changed_at)
    login_user(user, remember=False)
    return sid


@cache
def _record_by_token_hash() -> Select[UserSession]:
    """The session record with its user (and the user's role) in one query.

    Every signed-in request needs all three, and a lazy load would be a second round trip.
    Built once: constructing this select with its eager load took about 0.15 ms of CPU per
    request, more than a third of running it. Statements are immutable, so threads share it.
    """
    return (
        select(UserSession)
        .options(joinedload(UserSession.user))
        .where(UserSession.token_hash == bindparam("token_hash"))
    )


def current_record() -> UserSession | None:
    sid = session.get("sid")
    if not isinstance(sid, str) or len(sid) > 128:
        return None
    return db.session.scalar(_record_by_token_hash(), {"token_hash": token_hash(sid)})


def current_record_live() -> bool:
    """Whether the browser's session record is still live, read again from the database
    (not the copy loaded at the start of the request): for a check made under a lock."""
    sid = session.get("sid")
    if not isinstance(sid, str) or len(sid) > 128:
        return False
    record = db.session.scalar(
        _record_by_token_hash().execution_options(populate_existing=True),
        {"token_hash": token_hash(sid)},
    )
    return record is not None and is_live(record, utcnow())


def end_session() -> None:
    """Destroy the current session record and the cookie's contents."""
    record = current_record()
    if record is not None and record.revoked_at is None:
        record.revoked_at = utcnow()
        db.session.commit()
    logout_user()
    session.clear()


def revoke_all(user_id: int, *, except_id: int | None = None, commit: bool = True) -> int:
    """End every session, refresh token and personal access token of a user (password
    change or reset, disable, "sign out everywhere"); ``except_id`` keeps the caller's own
    browser session. Returns the sessions ended.

    The user's row is locked first: a personal token being created meanwhile holds the
    same lock and re-checks its creator's sign-in under it (``bastion.api.pats.create``),
    so it is either refused or committed before, and then revoked here with the rest.
    """
    lock_user(user_id)
    count = end_browser_sessions(user_id, keep_id=except_id)
    # Emailed links carry a fingerprint of this stamp: they end with the sessions.
    user = db.session.get(User, user_id)
    if user is not None:
        user.security_stamp = secrets.token_hex(16)
    # API tokens are sessions too: every refresh family dies with the rest, and so do the
    # access tokens issued from it (the API's one revocation rule, shared by all paths).
    revoke_all_for_user(user_id, commit=False)
    # And personal tokens: whoever had the password (or a signed-in browser) could have
    # made one, and it would outlive every step the owner takes to lock them out.
    revoke_personal_tokens(user_id, commit=False)
    if commit:
        db.session.commit()
    return count


def end_browser_sessions(user_id: int, *, keep_id: int | None = None) -> int:
    """End the user's browser sessions (remember-me included) but ``keep_id``, in the
    caller's transaction; tokens, links and the stamp stay (for those, ``revoke_all``).
    Returns the sessions ended."""
    stmt = (
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if keep_id is not None:
        stmt = stmt.where(UserSession.id != keep_id)
    return affected_rows(db.session.execute(stmt))


def _end_sessions_beyond_the_cap(user_id: int, now: datetime) -> None:
    """Revoke the account's least recently used sessions beyond ``MAX_LIVE_SESSIONS``."""
    newest_first = (
        select(UserSession.id)
        .where(
            UserSession.user_id == user_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > now,
        )
        .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
        .offset(MAX_LIVE_SESSIONS)
    )
    surplus = list(db.session.scalars(newest_first))
    if surplus:
        db.session.execute(
            update(UserSession).where(UserSession.id.in_(surplus)).values(revoked_at=now)
        )


def is_live(record: UserSession, now: datetime) -> bool:
    idle = current_app.config["SESSION_IDLE"]
    if record.revoked_at is not None or record.expires_at <= now:
        return False
    # Remembered sessions are long-lived by choice; the idle limit applies to the others.
    return record.remember or record.last_seen_at + idle > now


# Requests that show nothing of the site: they do not count as use for the idle limit.
_NOT_USE = frozenset({"HEAD", "OPTIONS"})


# What a signed-in cookie holds beyond a visitor's: ours and Flask-Login's.
_SIGN_IN_KEYS = ("sid", GRANTED_ON_KEY, "_user_id", "_fresh", "_id", "_remember",
                 "_remember_seconds", FINISHED_KEY)


def _forget_sign_in() -> None:
    """Drop a dead sign-in from the cookie. The cookie is signed, not encrypted: left in,
    the user id and password fingerprint would stay readable on a shared computer."""
    for key in _SIGN_IN_KEYS:
        session.pop(key, None)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Resolve the cookie's session id to a live record and its active user."""
    record = current_record()
    now = utcnow()
    if record is None or str(record.user_id) != user_id or not is_live(record, now):
        _forget_sign_in()
        return None
    user = record.user
    # Never None while the foreign key holds (enforced on SQLite too: the record goes with
    # its account); a guard, so a row left without its user signs nobody in.
    if user is None or not user.is_active:
        _forget_sign_in()
        return None
    granted_on = session.get(GRANTED_ON_KEY)  # absent only in sessions from older versions
    current = password_fingerprint(user.password_changed_at)
    if granted_on is not None and not hmac.compare_digest(str(granted_on), current):
        if matches_older_fingerprint(str(granted_on), user.password_changed_at,
                                     user.password_hash):
            # Granted by an earlier version, or before SECRET_KEY was rotated (the old key
            # a fallback): renamed under the current key, so the next request matches at once.
            session[GRANTED_ON_KEY] = current
        else:
            record.revoked_at = now  # out of the account's session list too
            db.session.commit()
            _forget_sign_in()
            return None
    # A HEAD (a link preview, a prefetch) is nobody using the site: it neither writes
    # nor keeps an idle session alive, as it leaves the cookie alone (session_cookie).
    # Nor is an OPTIONS, answered by Flask with the allowed methods and nothing else.
    if now - record.last_seen_at > LAST_SEEN_GRANULARITY and request.method not in _NOT_USE:
        record.last_seen_at = now
        db.session.commit()
    g.session_record = record
    return user


def reauthenticated(user: User) -> None:
    """After a fresh password (and 2FA) check: a new session id, the old one revoked.

    Re-authentication is a sign-in, so it rotates the session like one (ASVS V7.2.4); a
    cookie copied before it is worthless afterwards.
    """
    old = current_record()
    remember = old.remember if old is not None else False
    if old is not None:
        old.revoked_at = utcnow()
    start_session(user, remember=remember, reauthenticated=True)


# What the account page's session list shows and ``is_live`` asks: not the token hash
# (a stolen list would name no cookie, but there is no reason to read it), the
# re-authentication time or the owner. The browser's own record, already loaded in full
# for the request, stays complete: load_only never unloads what an object holds.
LISTED_SESSION_COLUMNS = (
    UserSession.id,
    UserSession.created_at,
    UserSession.last_seen_at,
    UserSession.expires_at,
    UserSession.remember,
    UserSession.ip,
    UserSession.user_agent,
    UserSession.revoked_at,
)


def list_sessions(user_id: int) -> list[UserSession]:
    """Live sessions of a user, newest activity first, for the account page: only the
    ``LISTED_SESSION_COLUMNS`` are read (others load on first use, one statement each).

    ``is_live`` is asked in the query too: expired and idle sessions stay as rows until
    they are purged (every sign-in leaves one), and the page must not read them all to
    show the few that are live.
    """
    now = utcnow()
    rows = db.session.scalars(
        select(UserSession)
        .options(load_only(*LISTED_SESSION_COLUMNS))
        .where(
            UserSession.user_id == user_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > now,
            or_(UserSession.remember.is_(True),
                UserSession.last_seen_at > now - current_app.config["SESSION_IDLE"]),
        )
        .order_by(UserSession.last_seen_at.desc())
    ).all()
    return [r for r in rows if is_live(r, now)]


def revoke_session(user_id: int, session_id: int) -> bool:
    """Revoke one of the user's own sessions; False when it is not theirs or already gone."""
    if not 0 < session_id <= ID_MAX:  # outside the column's range: PostgreSQL would refuse it
        return False
    count = affected_rows(db.session.execute(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.user_id == user_id,
               UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ))
    db.session.commit()
    return bool(count)


def forget_cached_identity() -> None:
    """before_request (first of all): resolve the user from this request's cookie only.

    Flask-Login caches the user (and Flask-WTF the CSRF token) in ``g``, which belongs to
    the app context. A server gives each request a fresh context, but code that runs
    requests inside one shared context (the test client under a held app context, a batch
    job) would otherwise carry one request's user into the next.
    """
    csrf_cache = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    ctx_g = g._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not three
    for name in ("_login_user", "session_record", csrf_cache):
        ctx_g.pop(name, None)
