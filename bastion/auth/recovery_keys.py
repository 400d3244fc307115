"""Which SECRET_KEY made each account's recovery codes, and what a key rotation leaves.

Why: recovery codes are stored only as digests keyed with SECRET_KEY (``twofactor``), so
unlike TOTP secrets they cannot be sealed again under a new key. Each code keeps the name
of the key that made it (``tokens.key_id``); with it ``secret-key reseal`` tells which
fallback keys still serve someone's codes, and the account page asks those owners to make
new ones. The ten codes of an account are always made together, under one key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from flask import current_app
from sqlalchemy import func, select, update

from bastion.extensions import db
from bastion.models import RecoveryCode
from bastion.security.tokens import key_id, secret_keys

# "unrecorded": made before keys were named (migration 0012); "retired": by a key that is
# neither SECRET_KEY nor a fallback any more, so the codes no longer match.
KeyState = Literal["current", "fallback", "retired", "unrecorded"]
_WORST_FIRST: tuple[KeyState, ...] = ("retired", "fallback", "unrecorded", "current")


def current_key_id() -> str:
    return key_id(current_app.config["SECRET_KEY"])


def _configured_ids() -> list[str]:
    """key_id of SECRET_KEY, then of each fallback, in order."""
    return [key_id(key) for key in secret_keys()]


def _state(kid: str | None, ids: list[str]) -> KeyState:
    if kid is None:
        return "unrecorded"
    if kid == ids[0]:
        return "current"
    return "fallback" if kid in ids[1:] else "retired"


@dataclass(frozen=True)
class CodeStatus:
    """An account's unused codes: how many, and the state of the key that made them."""

    left: int
    key: KeyState | None  # None when no code is left


def status(user_id: int) -> CodeStatus:
    kids = db.session.scalars(
        select(RecoveryCode.key_id).where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
        )
    ).all()
    if not kids:
        return CodeStatus(0, None)
    ids = _configured_ids()
    states = {_state(kid, ids) for kid in kids}
    return CodeStatus(len(kids), next(s for s in _WORST_FIRST if s in states))


def name_unrecorded_set(user_id: int, digests: list[str]) -> None:
    """A code was just spent; ``digests`` are its digests under SECRET_KEY and each fallback,
    in that order. If its set was made before keys were named, the key whose digest
    matched made all of it: name the set. The caller commits."""
    matched = db.session.scalar(
        select(RecoveryCode.code_hash).where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash.in_(digests),
            RecoveryCode.key_id.is_(None),
        )
    )
    if matched is None:
        return
    kid = key_id(secret_keys()[digests.index(matched)])
    db.session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.key_id.is_(None))
        .values(key_id=kid)
    )


@dataclass
class KeyReport:
    """Accounts with unused codes, by the state of their key; ``by_fallback`` maps the
    1-based position in SECRET_KEY_FALLBACKS to the accounts whose codes need that key."""

    current: int = 0
    unrecorded: int = 0
    retired: int = 0
    by_fallback: dict[int, int] = field(default_factory=dict)

    @property
    def under_fallbacks(self) -> int:
        return sum(self.by_fallback.values())


def report() -> KeyReport:
    """One grouped count over the unused codes (no per-account rows are read)."""
    rows = db.session.execute(
        select(RecoveryCode.key_id, func.count(func.distinct(RecoveryCode.user_id)))
        .where(RecoveryCode.used_at.is_(None))
        .group_by(RecoveryCode.key_id)
    ).all()
    ids = _configured_ids()
    found = KeyReport()
    for kid, accounts in rows:
        state = _state(kid, ids)
        if state == "fallback" and kid is not None:
            position = ids.index(kid)
            found.by_fallback[position] = found.by_fallback.get(position, 0) + accounts
        else:
            setattr(found, state, getattr(found, state) + accounts)
    return found
