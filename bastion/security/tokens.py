"""Random tokens that are shown once and stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """SHA-256 is enough here: the input is 256 random bits, not a password."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def keyed_digest(purpose: bytes, value: str, *, key: object = None) -> str:
    """HMAC-SHA256 of ``purpose + value`` under the app's SECRET_KEY (or ``key``, one of
    :func:`fallback_keys`), in hex.

    For values that are stored or shown but must reveal nothing and be unforgeable without
    the key (recovery codes, link and session fingerprints). ``purpose`` keeps one use's
    digests from standing in for another's; callers keep their existing prefixes, so the
    digests already stored stay valid.
    """
    if key is None:
        from flask import current_app

        key = current_app.config["SECRET_KEY"]
    return _hmac_hex(key, purpose, value)


def fallback_keys() -> list[object]:
    """SECRET_KEY_FALLBACKS: old keys that still verify what they made, never make anything."""
    from flask import current_app

    return list(current_app.config.get("SECRET_KEY_FALLBACKS") or ())


def keyed_digests(purpose: bytes, value: str) -> list[str]:
    """:func:`keyed_digest` under SECRET_KEY and then each of SECRET_KEY_FALLBACKS.

    For checking a digest made before the key was rotated: while an old key is kept as a
    fallback, what it made still matches. Making a digest always uses the current key.
    """
    return [_hmac_hex(key, purpose, value) for key in secret_keys()]


def secret_keys() -> list[object]:
    """SECRET_KEY, the one that makes things, then each of :func:`fallback_keys`."""
    from flask import current_app

    return [current_app.config["SECRET_KEY"], *fallback_keys()]


def key_id(key: object) -> str:
    """A short public name for one of :func:`secret_keys`, stored beside what it made.

    Why: digests that cannot be recomputed (recovery codes) keep the name of the key that
    made them, so an operator can tell when a fallback key no longer serves anyone. 64 bits
    of an HMAC of a constant: it tells which key, and nothing that helps guess one.
    """
    return _hmac_hex(key, b"key-id:", "")[:16]


def _hmac_hex(key: object, purpose: bytes, value: str) -> str:
    return hmac.new(str(key).encode(), purpose + value.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
