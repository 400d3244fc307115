"""JWT signing keys: an Ed25519 keyset with ``kid``s, separate from the session secret.

Why Ed25519 (``EdDSA``): it is asymmetric, so a component that only verifies (or a leaked
verifying key) cannot mint tokens, unlike HS256 where the verifier holds the signing secret;
it has no parameter choices to get wrong and deterministic signatures (no nonce reuse).

``BASTION_JWT_KEYS`` (or ``BASTION_JWT_KEYS_FILE``) holds a JSON list
``[{"kid": "2026-11", "pem": "-----BEGIN PRIVATE KEY-----..."}, ...]``. The first entry
signs; every entry verifies, so after a rotation tokens signed by the previous key stay
valid until they expire. A retired key may be given as a public key only.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "EdDSA"


class KeysetError(ValueError):
    """The configured keyset is unusable; the message names the problem, never the key."""


@dataclass(frozen=True)
class Keyset:
    active_kid: str
    signing_key: Ed25519PrivateKey
    verifying_keys: dict[str, Ed25519PublicKey]


def new_key_entry(kid: str | None = None) -> dict[str, str]:
    """A fresh private key entry for a keyset (used by the CLI and development)."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {"kid": kid or secrets.token_hex(8), "pem": pem.decode()}


def parse_keyset(raw: str | list[Any]) -> Keyset:
    """Read the keyset from JSON text, or from the list Flask already decoded.

    ``app.config.from_prefixed_env`` JSON-decodes environment values, so
    ``BASTION_JWT_KEYS`` set in the environment arrives as a list, while the ``_FILE``
    variant and overrides arrive as text.
    """
    if isinstance(raw, list):
        entries: Any = raw
    else:
        try:
            entries = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise KeysetError("BASTION_JWT_KEYS is not valid JSON") from exc
    if not isinstance(entries, list) or not entries:
        raise KeysetError("BASTION_JWT_KEYS must be a non-empty JSON list of {kid, pem}")
    verifying: dict[str, Ed25519PublicKey] = {}
    signing: Ed25519PrivateKey | None = None
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or not entry["kid"]:
            raise KeysetError(f"BASTION_JWT_KEYS entry {index} needs a non-empty 'kid'")
        kid, pem = entry["kid"], str(entry.get("pem", "")).encode()
        if kid in verifying:
            raise KeysetError(f"BASTION_JWT_KEYS has the kid {kid!r} twice")
        key = _load_pem(pem, index)
        if isinstance(key, Ed25519PrivateKey):
            verifying[kid] = key.public_key()
            if index == 0:
                signing = key
        else:
            verifying[kid] = key
    if signing is None:
        raise KeysetError("the first BASTION_JWT_KEYS entry must be an Ed25519 private key")
    return Keyset(active_kid=entries[0]["kid"], signing_key=signing, verifying_keys=verifying)


def _load_pem(pem: bytes, index: int) -> Ed25519PrivateKey | Ed25519PublicKey:
    try:
        if b"PRIVATE KEY" in pem:
            key: object = serialization.load_pem_private_key(pem, password=None)
        else:
            key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise KeysetError(f"BASTION_JWT_KEYS entry {index} is not a readable PEM key") from exc
    if not isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
        raise KeysetError(f"BASTION_JWT_KEYS entry {index} is not an Ed25519 key")
    return key


def keyset_problem(raw: object) -> str | None:
    """Why the configured keyset cannot be used, or None (for the production check)."""
    if not raw:
        return None
    try:
        parse_keyset(raw if isinstance(raw, list) else str(raw))
    except KeysetError as exc:
        return str(exc)
    return None


def instance_keyset(instance: Path) -> str:
    """Development and tests: one keyset per checkout, private to its owner in ``instance/``."""
    path = instance / "jwt_keys.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written aside then linked into place: atomic, so a concurrent reader never sees a
        # half-written file and two processes never end up with different keys.
        tmp = path.with_name(f".jwt_keys.{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps([new_key_entry("dev-1")]))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text(encoding="utf-8")


def main() -> None:
    """``python -m bastion.api.keys``: print a new one-entry keyset without starting the app.

    The same as ``flask --app bastion api new-key``, which needs an app that starts: in
    production, one without ``BASTION_JWT_KEYS`` refuses to, so it cannot make the first.
    """
    print(json.dumps([new_key_entry()]))


if __name__ == "__main__":
    main()
