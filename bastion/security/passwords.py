"""Password hashing: Argon2id, with legacy bcrypt hashes verified and upgraded.

argon2-cffi's defaults follow RFC 9106's second recommendation (t=3, m=64 MiB, p=4). A hash
made with other parameters, or a Flask-Bcrypt hash from an older deployment, verifies and
reports ``needs_rehash`` so the caller re-hashes on the next successful login.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bastion.security.tokens import fallback_keys, keyed_digest

_hasher = PasswordHasher()
# Verifying against this when the account does not exist makes "no such user" cost the
# same time as "wrong password". It is the hash of a public dummy password, written out
# rather than computed at import: hashing it cost every worker one full Argon2 run
# (64 MiB, over a second on a busy machine) before it could serve anything. Should the
# configured parameters ever differ, a matching one is made once instead.
_DUMMY_PRECOMPUTED = (
    "$argon2id$v=19$m=65536,t=3,p=4$/yZwdNkAgJN0gN6R9qeH7Q$YWKl58p0seCiuKhkcSi/iXpH9QUTYNfN/z+jhlfLvnU"
)
_DUMMY_HASH = (
    _DUMMY_PRECOMPUTED
    if not _hasher.check_needs_rehash(_DUMMY_PRECOMPUTED)
    else _hasher.hash("bastion-dummy-password-for-timing")
)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


def is_legacy_hash(stored_hash: str | None) -> bool:
    """A Flask-Bcrypt hash from an older deployment, made from the password as typed."""
    return bool(stored_hash) and str(stored_hash).startswith(_BCRYPT_PREFIXES)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant-cost check; a missing hash still spends one Argon2 verification."""
    if not stored_hash:
        _verify_argon2(_DUMMY_HASH, password)
        return False
    if is_legacy_hash(stored_hash):
        # bcrypt reads only the first 72 bytes; a longer password would be silently
        # truncated, so refuse it instead of letting a prefix match.
        raw = password.encode("utf-8")
        if len(raw) > 72:
            _verify_argon2(_DUMMY_HASH, password)
            return False
        try:
            return bcrypt.checkpw(raw, stored_hash.encode("ascii"))
        except ValueError:
            return False
    return _verify_argon2(stored_hash, password)


def _verify_argon2(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    if not stored_hash.startswith("$argon2id$"):
        return True
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def password_fingerprint(changed_at: datetime | None, *, key: object = None) -> str:
    """A keyed digest naming which password a token or a session was granted on (as
    Django's session auth hash does): when the user's password has been set again since,
    whatever was granted on the old one is refused.

    Made from the time the password was last set (``User.password_changed_at``), not from
    the stored hash: signing in rehashes a password stored with old parameters, and that
    must not sign the user out of every other device. Under SECRET_KEY unless ``key``
    names one of its fallbacks.
    """
    # In UTC whatever offset the driver returned: the value names the moment.
    moment = changed_at.astimezone(UTC).isoformat() if changed_at is not None else ""
    return _digest(moment, key)


def hash_fingerprint(password_hash: str | None, *, key: object = None) -> str:
    """What sessions and tokens issued by earlier versions carry: a digest of the stored
    hash. Still accepted while that hash is unchanged, so an upgrade signs nobody out."""
    return _digest(password_hash or "", key)


def fallback_fingerprints(
    changed_at: datetime | None, password_hash: str | None
) -> tuple[str, ...]:
    """Both fingerprints under each of SECRET_KEY_FALLBACKS: what a session or token
    granted on the same password before SECRET_KEY was rotated carries. Empty, and no
    digest made, when there are no fallbacks (no rotation under way)."""
    return tuple(
        fingerprint
        for key in fallback_keys()
        for fingerprint in (password_fingerprint(changed_at, key=key),
                            hash_fingerprint(password_hash, key=key))
    )


def matches_older_fingerprint(
    given: str, changed_at: datetime | None, password_hash: str | None
) -> bool:
    """Whether ``given``, which is not :func:`password_fingerprint` under the current key,
    still names the password the user holds: made by an earlier version (a digest of the
    hash) or under a key now in SECRET_KEY_FALLBACKS.

    Asked only after the current fingerprint did not match, so the usual request does no
    more work. Setting the password again changes every one of these, so a grant still
    ends with the password it stood on, whichever key made it.
    """
    if hmac.compare_digest(given, hash_fingerprint(password_hash)):
        return True
    return any(hmac.compare_digest(given, fingerprint)
               for fingerprint in fallback_fingerprints(changed_at, password_hash))


def _digest(material: str, key: object = None) -> str:
    return keyed_digest(b"bastion.password:", material, key=key)[:32]


def dummy_verify(password: str) -> None:
    """Spend the time of one verification (unknown user, disabled account...)."""
    _verify_argon2(_DUMMY_HASH, password)
