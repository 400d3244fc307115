"""Personal access tokens: ``bst_`` + 32 random bytes, shown once, stored as SHA-256.

The prefix lets secret scanners (and people) recognise a leaked token. A token carries a
subset of the scopes its owner's role allows; the role is checked again on every use, so a
demoted user's old token loses what the new role no longer grants, and the demotion revokes
a token holding any scope beyond the new role (``bastion.admin.demotion``), so a later
promotion does not bring it back. A user whose role
requires 2FA and who has none can neither create one nor use one they hold
(``bastion.api.auth.require_scopes``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import load_only
from sqlalchemy.orm.attributes import set_committed_value

from bastion.api.schemas import ONE_LINE, PATTERN_MESSAGES
from bastion.api.user_states import ENROL_2FA_DETAIL, lacks_required_2fa
from bastion.extensions import db
from bastion.mail import send_mail, site_url
from bastion.models import ApiToken, Role, User, utcnow
from bastion.models.base import affected_rows
from bastion.models.locks import lock_user
from bastion.security import audit, authz
from bastion.security.tokens import new_token, token_hash

PREFIX = "bst_"
SCOPES = ("articles:read", "articles:write", "comments:write", "admin")
# What each role may grant; JWT access tokens carry exactly this set for the user's role.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"articles:read", "comments:write"}),
    "editor": frozenset({"articles:read", "comments:write", "articles:write"}),
    "admin": frozenset(SCOPES),
}
# Writing last_used_at on every call would make every API read a database write.
LAST_USED_GRANULARITY = timedelta(minutes=1)
MAX_TOKENS_PER_USER = 50
# How long a revoked or expired token is still listed to its owner.
ENDED_LISTED_FOR = timedelta(days=30)
SIGNED_OUT_DETAIL = "You were signed out while the token was being made; sign in again."


class TokenRequestError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SignedOutMeanwhileError(Exception):
    """The creator's own sign-in was revoked while the token was being made."""


@dataclass(frozen=True)
class CreatedToken:
    record: ApiToken
    secret: str


def role_scopes(user: User) -> frozenset[str]:
    return scopes_of_role(user.role_name)


def scopes_of_role(role_name: str) -> frozenset[str]:
    return ROLE_SCOPES.get(role_name, frozenset())


def create(
    user: User,
    *,
    name: str,
    scopes: list[str],
    days: int | None = None,
    still_signed_in: Callable[[], bool] | None = None,
) -> CreatedToken:
    """Issue a token; the caller has already re-authenticated the user.

    ``still_signed_in`` re-checks the caller's own sign-in (browser session or API token)
    once the user's row is locked. "Sign out everywhere", a password change and the rest
    revoke under that same lock, so a creation that was already in flight when they
    committed is refused (``SignedOutMeanwhileError``) instead of leaving a token that
    outlives them; one that commits first is revoked with the rest. Only console and
    test callers, who have no sign-in, leave it out.
    """
    _refuse_beyond_role(user.role_name, user.has_2fa, set())
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise TokenRequestError("Give the token a name of 1 to 80 characters.", "name")
    # The account page's form has no pattern like the API schema's: the same rule here.
    # PostgreSQL refuses NUL in text (a 500 instead of a clear refusal), and a control or
    # bidi character made the token list show another name than the one stored.
    if "\x00" in name:
        raise TokenRequestError("The name must not contain NUL characters.", "name")
    if not re.fullmatch(ONE_LINE, name):
        raise TokenRequestError(PATTERN_MESSAGES[ONE_LINE], "name")
    wanted = set(scopes)
    if not wanted or not wanted <= set(SCOPES):
        raise TokenRequestError(f"Choose scopes among: {', '.join(SCOPES)}.", "scopes")
    _refuse_beyond_role(user.role_name, user.has_2fa, wanted, scopes_too=True)
    days = current_app.config["PAT_DEFAULT_DAYS"] if days is None else int(days)
    if not 1 <= days <= current_app.config["PAT_MAX_DAYS"]:
        limit = current_app.config["PAT_MAX_DAYS"]
        raise TokenRequestError(f"Expiry must be between 1 and {limit} days.", "expires_in_days")
    lock_user(user.id)  # held until commit: parallel creations count one at a time
    if still_signed_in is not None and not still_signed_in():
        db.session.rollback()  # release the lock; nothing was written
        raise SignedOutMeanwhileError(SIGNED_OUT_DETAIL)
    _judge_again_under_lock(user, wanted)
    if len(list_for(user, include_inactive=False)) >= MAX_TOKENS_PER_USER:
        raise TokenRequestError("You have too many tokens; revoke some first.", "name")
    secret = PREFIX + new_token(32)
    record = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=token_hash(secret),
        hint=secret[:8],
        scopes=" ".join(s for s in SCOPES if s in wanted),
        expires_at=utcnow() + timedelta(days=days),
    )
    db.session.add(record)
    db.session.flush()
    audit.record(
        "token.created",
        actor_id=user.id,
        target_user_id=user.id,
        details={"token_id": record.id, "scopes": record.scopes},
        commit=False,
    )
    db.session.commit()
    _notify(user, record)
    return CreatedToken(record, secret)


def _refuse_beyond_role(
    role_name: str, has_2fa: bool, wanted: set[str], *, scopes_too: bool = False
) -> None:
    """Raise TokenRequestError when the role requires a second factor the user lacks, or
    (``scopes_too``) cannot grant every scope in ``wanted``."""
    if lacks_required_2fa(role_name, has_2fa):
        raise TokenRequestError(ENROL_2FA_DETAIL)
    if scopes_too and (beyond := sorted(wanted - scopes_of_role(role_name))):
        raise TokenRequestError(f"Your role cannot grant: {', '.join(beyond)}.", "scopes")


def _judge_again_under_lock(user: User, wanted: set[str]) -> None:
    """The role and second factor as committed now, under the user's lock (rolling back,
    so the lock goes, before a refusal).

    A role change commits the user's row under that lock. A demotion committed since the
    checks on the copy loaded with the request would otherwise leave a token with scopes
    the new role cannot grant: the demotion revokes such tokens, but not one written after
    it, and a later promotion would bring it back whole.
    """
    now = db.session.execute(
        select(Role.name, User.totp_enabled_at)
        .join(Role, User.role_id == Role.id)
        .where(User.id == user.id)
    ).first()
    if now is None:  # the account was deleted meanwhile, and its sign-ins with it
        db.session.rollback()
        raise SignedOutMeanwhileError(SIGNED_OUT_DETAIL)
    try:
        _refuse_beyond_role(now.name, now.totp_enabled_at is not None, wanted, scopes_too=True)
    except TokenRequestError:
        db.session.rollback()
        raise


def _notify(user: User, record: ApiToken) -> None:
    """Tell the owner: a stolen session that is still fresh could otherwise mint a token
    that outlives it, unnoticed. The token's name is left out: whoever made it chose it, and
    it must not put their words in a mail from the site."""
    account_url = site_url("api_web.tokens")
    send_mail(
        user.email,
        "A personal access token was created for your account",
        "token_created",
        user=user,
        hint=record.hint,
        scopes=", ".join(record.scopes.split()),
        expires=f"{record.expires_at:%d %b %Y}",
        account_url=account_url,
    )


def list_for(
    user: User, *, include_inactive: bool = True, columns: Sequence[Any] = ()
) -> list[ApiToken]:
    """The user's live tokens, newest first, and (``include_inactive``) those revoked or
    expired in the last ``ENDED_LISTED_FOR``: long enough to see what ended and when,
    short enough that years of rotated tokens do not bury the live ones. The rows stay,
    as the audit trail's events refer to them. ``columns``: read only these (a page that
    shows no token hash need not read one)."""
    now = utcnow()
    live = and_(ApiToken.revoked_at.is_(None), ApiToken.expires_at > now)
    stmt = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
    if columns:
        stmt = stmt.options(load_only(*columns))
    if include_inactive:
        cutoff = now - ENDED_LISTED_FOR
        recently_ended = or_(
            ApiToken.revoked_at > cutoff,
            and_(ApiToken.revoked_at.is_(None), ApiToken.expires_at > cutoff),
        )
        return list(db.session.scalars(stmt.where(or_(live, recently_ended))))
    return list(db.session.scalars(stmt.where(live)))


def revoke(user: User, token_id: int) -> bool:
    """Revoke one of the user's own tokens; False when there is no such token of theirs."""
    record = own_token(user, token_id)
    if record is None:
        return False
    _end(record)
    return True


def own_token(user: User, token_id: int) -> ApiToken | None:
    """One of the user's own tokens, ended or not, to revoke; None when there is no such
    token of theirs.

    Another account's token is absent to the caller as well, and the refusal is audited,
    as for every change refused on a hidden article or comment (``authz.record_denial``).
    """
    record = db.session.get(ApiToken, token_id)
    if record is not None and record.user_id != user.id:
        authz.record_denial(hide=True, what=f"revoke token {token_id}")
        return None
    return record


def end(record: ApiToken) -> None:
    """Revoke ``record``, found by ``own_token`` (once; a second call changes nothing)."""
    _end(record)


def revoke_presented(secret: str) -> int | None:
    """``POST /auth/revoke`` with a personal token: holding it is the authority to end it
    (RFC 7009). Returns the owner's id when a live token was revoked; None otherwise, and
    the caller answers the same either way."""
    record = _find(secret)
    if record is None or not is_active(record):
        return None
    # Read before the write: after a rollback the record reloads, and a deleted row raises.
    owner_id = record.user_id
    return owner_id if _end(record) else None


def _end(record: ApiToken) -> bool:
    """Revoke ``record`` (once) and audit it as its owner's act; whether this call did.

    Compare-and-set: of two revocations at once (a double click, a retried call) that both
    read the token as live, only the first writes its time and its "token.revoked" event.
    A token deleted meanwhile (with its owner's account) is no row to write: False too.
    """
    token_id, owner_id = record.id, record.user_id
    ended = affected_rows(db.session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ))
    if not ended:
        db.session.rollback()
        return False
    audit.record("token.revoked", actor_id=owner_id, target_user_id=owner_id,
                 details={"token_id": token_id}, commit=False)
    db.session.commit()
    return True


def revoke_all_for(user_id: int, *, commit: bool = True) -> int:
    """Revoke every live token of a user at once (``revoke_all`` of the sessions: a password
    change or reset, a disabled account, "sign out everywhere", a reset second factor);
    returns how many.

    The caller audits: one event for the action that ended them, not one per token.
    """
    count = affected_rows(db.session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None),
               ApiToken.expires_at > utcnow())
        .values(revoked_at=utcnow())
    ))
    if commit:
        db.session.commit()
    return count


def authenticate(secret: str) -> tuple[User, frozenset[str], int] | None:
    """The owner, effective scopes and id of a live token, or None."""
    record = _find(secret)
    now = utcnow()
    if record is None or record.revoked_at is not None or record.expires_at <= now:
        return None
    user = db.session.get(User, record.user_id)
    if user is None or not user.is_active:
        return None
    if record.last_used_at is None or now - record.last_used_at > LAST_USED_GRANULARITY:
        # A conditional write, not a flush of the loaded record: the account (and its
        # tokens with it) deleted, or the token revoked, since the reads above left no
        # live row, and the ORM's flush raised on it (a 500 instead of a 401).
        touched = affected_rows(db.session.execute(
            update(ApiToken)
            .where(ApiToken.id == record.id, ApiToken.revoked_at.is_(None))
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        ))
        db.session.commit()
        if touched != 1:
            return None
        set_committed_value(record, "last_used_at", now)
    return user, frozenset(record.scopes.split()) & role_scopes(user), record.id


def still_live(token_id: int) -> bool:
    """Whether the token is unrevoked and unexpired now, read again: for a check made under
    its owner's lock, which "sign out everywhere" and the rest of ``revoke_all`` hold."""
    return db.session.scalar(
        select(ApiToken.id).where(
            ApiToken.id == token_id, ApiToken.revoked_at.is_(None), ApiToken.expires_at > utcnow()
        )
    ) is not None


def _find(secret: str) -> ApiToken | None:
    """The record of a token by its secret (live or not), or None."""
    if not secret.startswith(PREFIX) or len(secret) > 100:
        return None
    return db.session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(secret)))


def is_active(record: ApiToken) -> bool:
    return record.revoked_at is None and record.expires_at > utcnow()
