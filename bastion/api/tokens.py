"""JWT access and refresh tokens (PyJWT): issue, verify, rotate, revoke.

Every claim is required and checked: ``iss``, ``aud``, ``sub``, ``jti``, ``typ``
(access|refresh), ``iat``, ``nbf``, ``exp``. The algorithm is pinned to EdDSA and the key is
picked by ``kid`` from our own keyset only, so ``alg: none``, HS256-with-the-public-key and
foreign keys are refused before any signature maths. ``iat`` carries milliseconds so that a
password change in the same second as a login is ordered correctly.

Refresh tokens rotate on every use; presenting one that was already used revokes its whole
family (the login it came from and every access token issued from it): a stolen refresh
token is then worth nothing to either the thief or the victim, who signs in again. Rotation
renews the token, not the sign-in: a family ends ``JWT_REFRESH_DAYS`` after its sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import jwt
from flask import current_app, g
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from bastion.api import revocation, user_states
from bastion.api.keys import ALGORITHM, Keyset, parse_keyset
from bastion.api.user_states import UserState
from bastion.extensions import db
from bastion.models import RefreshToken, User, utcnow
from bastion.models.base import ID_MAX
from bastion.observability import counters
from bastion.security import audit, passwords

REQUIRED_CLAIMS = ["iss", "aud", "sub", "jti", "typ", "iat", "nbf", "exp"]
TOKEN_TYPES = ("access", "refresh")
MAX_TOKEN_CHARS = 4096
# 9999-12-31T23:59:59Z, the last second a datetime holds.
LATEST_TIMESTAMP = 253402300799
# A ``jti`` or ``fam`` the revocation table and the refresh-token column can hold (ours are
# 32 hex digits): PostgreSQL refuses a longer key or a NUL in one with an error, not a miss.
TOKEN_ID = re.compile(r"[\x21-\x7e]{1,64}")


class TokenError(Exception):
    """A token that must be refused; the message is safe to show (and deliberately vague)."""


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def keyset() -> Keyset:
    ks = current_app.extensions.get("bastion.jwt_keys")
    if ks is None:
        ks = parse_keyset(current_app.config["JWT_KEYS"])
        current_app.extensions["bastion.jwt_keys"] = ks
    return ks  # type: ignore[no-any-return]


def _encode(
    user: User,
    typ: str,
    lifetime: timedelta,
    *,
    jti: str,
    family: str,
    password: str,
    not_after: datetime | None = None,
) -> str:
    """A signed token living ``lifetime`` from now, and never past ``not_after``: the
    family's end is fixed before the commit, so a lifetime counted from after it would
    overshoot by however long the commit took."""
    ks = keyset()
    now = time.time()
    expires = now + lifetime.total_seconds()
    if not_after is not None:
        expires = min(expires, not_after.timestamp())
    claims: dict[str, Any] = {
        "iss": current_app.config["JWT_ISSUER"],
        "aud": _audience(typ),
        "sub": str(user.id),
        "jti": jti,
        "typ": typ,
        "fam": family,
        "pwd": password,
        "iat": math.ceil(now * 1000) / 1000,  # never earlier than now
        "nbf": int(now),
        "exp": int(expires),
    }
    return jwt.encode(claims, ks.signing_key, algorithm=ALGORITHM, headers={"kid": ks.active_kid})


def _audience(typ: str) -> str:
    """``JWT_AUDIENCE`` for access tokens, ``JWT_AUDIENCE:refresh`` for refresh tokens.

    Both are signed with the same key and Bastion tells them apart by ``typ``; another
    service that verifies our access tokens with the published key and checks only
    ``iss``/``aud`` would not, and would take a 14-day refresh token for an access token.
    """
    audience = str(current_app.config["JWT_AUDIENCE"])
    return f"{audience}:refresh" if typ == "refresh" else audience


def _access_lifetime() -> timedelta:
    return timedelta(minutes=current_app.config["JWT_ACCESS_MINUTES"])


def _refresh_lifetime() -> timedelta:
    return timedelta(days=current_app.config["JWT_REFRESH_DAYS"])


def _family_end(family: str) -> datetime | None:
    """When a family's sign-in ends: ``JWT_REFRESH_DAYS`` after its first member was issued.

    The absolute lifetime of an API sign-in, as sessions have one: rotation renews the refresh
    token, never the sign-in, so a refresh token stolen and rotated every few days does not
    live for ever without the password (and 2FA) being asked again. None for no such family.
    """
    started = db.session.scalar(
        select(func.min(RefreshToken.issued_at)).where(RefreshToken.family_id == family)
    )
    return None if started is None else started + _refresh_lifetime()


def issue_pair(user: User, *, family: str | None = None) -> TokenPair:
    """A new access + refresh token; a new family unless rotating within one.

    Both carry the fingerprint of the password hash ``user`` was loaded with, the one a
    sign-in just verified: a sign-in whose check raced a password change gets tokens that
    are refused once the change commits, though they were issued after ``revoke_all`` ran.
    Neither outlives the family (``_family_end``). TokenError when the account was deleted
    since it was checked: its refresh row is refused by the foreign key.
    """
    now, user_id = utcnow(), user.id
    end = now + _refresh_lifetime()
    if family is not None:
        end = min(end, _family_end(family) or end)
    family = family or secrets.token_hex(16)
    password = passwords.password_fingerprint(user.password_changed_at)
    refresh_life = end - now
    access_life = min(_access_lifetime(), refresh_life)
    refresh_jti = secrets.token_hex(16)
    db.session.add(
        RefreshToken(jti=refresh_jti, family_id=family, user_id=user_id, expires_at=end)
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if db.session.scalar(select(User.id).where(User.id == user_id)) is None:
            raise TokenError("The token is not valid.") from None
        raise
    access = _encode(
        user,
        "access",
        access_life,
        jti=secrets.token_hex(16),
        family=family,
        password=password,
        not_after=end,
    )
    refresh = _encode(
        user, "refresh", refresh_life, jti=refresh_jti, family=family, password=password,
        not_after=end,
    )
    return TokenPair(access, refresh, int(access_life.total_seconds()))


def _verified(token: str, key: Any, audience: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=[ALGORITHM],
        audience=audience,
        issuer=current_app.config["JWT_ISSUER"],
        options={"require": REQUIRED_CLAIMS, "strict_aud": True},
    )
    return claims


def decode(token: str, expected_type: str) -> dict[str, Any]:
    """Verified claims of a token of ``expected_type``; raises TokenError otherwise."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("The token is not valid.")
    try:
        header = jwt.get_unverified_header(token)
        key = keyset().verifying_keys.get(str(header.get("kid", "")))
        if key is None or header.get("alg") != ALGORITHM:
            raise TokenError("The token is not valid.")
        claims = _verified(token, key, _audience(expected_type))
    except jwt.InvalidAudienceError as exc:
        if expected_type != "refresh":
            raise TokenError("The token is not valid.") from exc
        # Refresh tokens issued before they had an audience of their own (at most
        # JWT_REFRESH_DAYS old) keep working until they expire; ``typ`` still decides.
        try:
            claims = _verified(token, key, str(current_app.config["JWT_AUDIENCE"]))
        except jwt.ExpiredSignatureError as exc2:
            raise TokenError("The token has expired.") from exc2
        except jwt.PyJWTError as exc2:
            raise TokenError("The token is not valid.") from exc2
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("The token has expired.") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("The token is not valid.") from exc
    if claims.get("typ") != expected_type:
        raise TokenError("The token is not valid.")
    for name in ("sub", "jti", "fam"):
        if not isinstance(claims.get(name), str):
            raise TokenError("The token is not valid.")
    if not (TOKEN_ID.fullmatch(claims["jti"]) and TOKEN_ID.fullmatch(claims["fam"])):
        raise TokenError("The token is not valid.")
    # Only our key signs, so these hold for every token we issued; checked anyway, so that
    # a token signed with a leaked or test key is refused instead of a 500 further on: a
    # subject beyond the id column (or one that int() reads from other digits, U+0661 as 1),
    # an expiry no date can hold (1e300).
    sub = claims["sub"]
    if not (sub.isascii() and sub.isdigit() and 0 < int(sub) <= ID_MAX):
        raise TokenError("The token is not valid.")
    if not all(_a_time(claims[name]) for name in ("exp", "iat", "nbf")):
        raise TokenError("The token is not valid.")
    return claims


def _a_time(value: Any) -> bool:
    """A number of seconds a date can hold (PyJWT also takes "123" and 1e300 as times)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and abs(value) <= LATEST_TIMESTAMP  # NaN is refused too
    )


def _refuse_stale(claims: dict[str, Any], state: UserState | None) -> UserState:
    """Refuse a token whose user is gone or disabled, or changed password after it."""
    if state is None or not state.active:
        raise TokenError("The token is not valid.")
    # A password change ends every token issued before it (sessions end the same way).
    # ``iat`` is rounded up to the millisecond, so a token from the same millisecond as the
    # change cannot be told apart from an earlier one: it is refused too.
    changed = state.password_changed_ts
    if changed is not None and float(claims["iat"]) <= changed + 0.001:
        raise TokenError("The token has been revoked.")
    # And one that stands on another password than the stored one: a sign-in that checked
    # the old password while the change was committing. (Tokens from before the claim
    # existed have only the time check above.)
    stood_on = claims.get("pwd")
    if stood_on is not None and not (
        hmac.compare_digest(str(stood_on), state.password_fingerprint)
        # Issued by an earlier version, which named the password by its hash.
        or hmac.compare_digest(str(stood_on), state.hash_fingerprint)
        # Issued before SECRET_KEY was rotated, while the old key is kept as a fallback.
        or any(hmac.compare_digest(str(stood_on), old) for old in state.fallback_fingerprints)
    ):
        raise TokenError("The token has been revoked.")
    return state


def _subject(claims: dict[str, Any]) -> int:
    try:
        return int(claims["sub"])
    except ValueError as exc:
        raise TokenError("The token is not valid.") from exc


def user_for(claims: dict[str, Any]) -> User:
    """The active user a verified token speaks for, unless revoked by a later event."""
    if revocation.any_revoked(*own_revocation_keys(claims)):
        raise TokenError("The token has been revoked.")
    user = db.session.get(User, _subject(claims))
    if user is None:
        raise TokenError("The token is not valid.")
    _refuse_stale(claims, UserState.of(user))
    return user


def own_revocation_keys(claims: dict[str, Any]) -> tuple[str, str]:
    """The revocation entries that would end the token: its own id and its family."""
    return f"jti:{claims['jti']}", f"fam:{claims['fam']}"


def revocation_keys(claims: dict[str, Any]) -> list[str]:
    """The Redis keys of ``own_revocation_keys`` (and the marker ``revocation.revoked`` asks)."""
    return revocation.redis_keys(*own_revocation_keys(claims))


def state_for(claims: dict[str, Any]) -> UserState:
    """Like ``user_for``, but with Redis the revocation keys and the user's state come from
    one MGET and a worker's snapshot (``bastion.api.user_states``), not the database."""
    user_id = _subject(claims)
    if not revocation.uses_redis():
        user = user_for(claims)
        # Held for the rest of the request, as ``user_states.state`` does: the session's
        # identity map keeps rows weakly, and a view that needs the user
        # (``ApiPrincipal.user``) would otherwise read the same row a second time.
        g.user_state_row = user
        return UserState.of(user)
    own = own_revocation_keys(claims)
    revoked, stamp = user_states.fetch(revocation.redis_keys(*own), user_id)
    if revocation.revoked(own, revoked):
        raise TokenError("The token has been revoked.")
    return _refuse_stale(claims, user_states.state(user_id, stamp))


# Verified access tokens, by SHA-256 of the token, until they expire. Why: clients send the
# same token with every request for its whole (short) life, and parsing plus an Ed25519
# check for each request is most of what the API's authentication costs. Only the
# signature and claim checks are reused: revocation, the user's state and password
# changes are still checked on every request (state_for), and expiry is checked again here.
_VERIFIED_MAX = 10_000


def _verified_cache() -> dict[bytes, dict[str, Any]]:
    """The cache for the current keyset: a new keyset (rotation) starts an empty one."""
    ks = keyset()
    held: tuple[Keyset, dict[bytes, dict[str, Any]]] | None = current_app.extensions.get(
        "bastion.jwt_verified"
    )
    if held is None or held[0] is not ks:
        held = current_app.extensions["bastion.jwt_verified"] = (ks, {})
    return held[1]


def state_keys_if_known(token: str) -> list[str] | None:
    """What ``state_for`` will read from Redis for ``token``, if this worker verified it
    before; None otherwise. Nothing is verified here: this only guesses which keys to read
    early (``bastion.api.auth.offer_state_read``), and the reader compares them."""
    held: tuple[Keyset, dict[bytes, dict[str, Any]]] | None = current_app.extensions.get(
        "bastion.jwt_verified"
    )
    if held is None or len(token) > MAX_TOKEN_CHARS:
        return None
    claims = held[1].get(hashlib.sha256(token.encode()).digest())
    if claims is None:
        return None
    try:
        return user_states.read_keys(revocation_keys(claims), _subject(claims))
    except TokenError:
        return None


def _decode_access(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("The token is not valid.")
    digest = hashlib.sha256(token.encode()).digest()
    cache = _verified_cache()
    claims = cache.get(digest)
    if claims is not None:
        if claims["exp"] > time.time():
            return claims
        cache.pop(digest, None)
        raise TokenError("The token has expired.")
    claims = decode(token, "access")
    if len(cache) >= _VERIFIED_MAX:
        cache.clear()  # bounded; a flood of valid tokens only costs re-verification
    cache[digest] = claims
    return claims


def verify_access(token: str) -> tuple[UserState, dict[str, Any]]:
    claims = _decode_access(token)
    return state_for(claims), claims


def rotate(refresh_token: str) -> tuple[User, TokenPair]:
    """Swap a refresh token for a new pair; a second use revokes the family.

    A user whose role requires 2FA and who has none (promoted, or turned it off, since the
    sign-in) gets no new pair: the family ends and they sign in again once enrolled.
    """
    claims = decode(refresh_token, "refresh")
    row = db.session.get(RefreshToken, claims["jti"])
    if row is None or row.family_id != claims["fam"] or str(row.user_id) != claims["sub"]:
        raise TokenError("The token is not valid.")
    if row.used_at is not None or row.revoked_at is not None:
        _refuse_spent(row)
    end = _family_end(row.family_id)
    if end is None or end <= utcnow():  # the sign-in is over: sign in again
        raise TokenError("The token has expired.")
    user = user_for(claims)
    if user_states.lacks_required_2fa(user.role_name, user.has_2fa):
        revoke_family(row.family_id, commit=True)
        raise TokenError(user_states.ENROL_2FA_DETAIL)
    # Mark used with a conditional update: of two concurrent refreshes only one wins, and a
    # revocation that committed since the checks above ("sign out everywhere" racing this
    # refresh; PostgreSQL re-evaluates the condition once that transaction's lock is gone)
    # wins over the refresh.
    won = db.session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.jti == row.jti,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(used_at=utcnow())
    ).rowcount  # type: ignore[attr-defined]
    if not won:
        db.session.commit()
        if db.session.scalar(select(RefreshToken.jti).where(RefreshToken.jti == row.jti)) is None:
            raise TokenError("The token is not valid.")  # its account was deleted meanwhile
        db.session.refresh(row)  # what beat us: another refresh (reuse) or a revocation
        _refuse_spent(row)
    pair = issue_pair(user, family=row.family_id)
    # A revocation of the family that ran after the update above could not see the row
    # issue_pair has just committed: look again, and end that row too if it missed it.
    if revocation.any_revoked(f"fam:{row.family_id}"):
        revoke_family(row.family_id, commit=True)
        raise TokenError("The token has been revoked.")
    return user, pair


def _refuse_spent(row: RefreshToken) -> NoReturn:
    """End the family of a used or revoked refresh token; a used one is reported as reuse."""
    if row.used_at is not None and row.revoked_at is None:
        _report_reuse(row)
    revoke_family(row.family_id, commit=True)
    raise TokenError("The token has been revoked.")


def _report_reuse(row: RefreshToken) -> None:
    counters.increment("token_reuse_detected")
    audit.record(
        "token.refresh_reuse",
        target_user_id=row.user_id,
        details={"family": row.family_id[:12]},
        commit=False,
    )


def revoke_family(family: str, *, commit: bool = True) -> None:
    """Revoke every refresh token of a family and the access tokens issued from it.

    The revocation outlives every member, including one a refresh racing this call adds
    after the update below: it lasts a full refresh (or access) lifetime from now, and
    longer if an existing row expires later still (a lifetime shortened since).
    """
    now = utcnow()
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    latest = db.session.scalar(
        select(RefreshToken.expires_at)
        .where(RefreshToken.family_id == family)
        .order_by(RefreshToken.expires_at.desc())
        .limit(1)
    )
    until = now + max(_refresh_lifetime(), _access_lifetime())
    if latest is not None:
        until = max(until, latest)
    revocation.revoke(f"fam:{family}", until, commit=False)
    if commit:
        db.session.commit()


def revoke_token(token: str) -> int | None:
    """``POST /auth/revoke``: end an access token, or a refresh token's whole family
    (personal access tokens: ``bastion.api.pats.revoke_presented``).

    Returns the owner's id when something was revoked; unknown tokens are ignored, as RFC
    7009 asks, so the endpoint does not tell valid tokens apart from garbage.
    """
    for typ in TOKEN_TYPES:
        try:
            claims = decode(token, typ)
        except TokenError:
            continue
        if typ == "refresh":
            revoke_family(claims["fam"])
        else:
            until = datetime.fromtimestamp(int(claims["exp"]), UTC)
            revocation.revoke(f"jti:{claims['jti']}", until)
        return int(claims["sub"]) if claims["sub"].isascii() and claims["sub"].isdigit() else None
    return None


def revoke_all_for_user(user_id: int, *, commit: bool = True) -> None:
    """End every refresh family of a user and the access tokens issued from them.

    The one rule for "this user's API sign-ins are over": ``bastion.auth.sessions.revoke_all``
    calls it, so sign out everywhere (account page, admin, CLI), password change and reset,
    and disabling all end API tokens at once instead of leaving access tokens to expire.
    """
    families = db.session.scalars(
        select(RefreshToken.family_id)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .distinct()
    ).all()
    for family in families:
        revoke_family(family, commit=False)
    if commit:
        db.session.commit()
