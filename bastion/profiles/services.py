"""Public profiles: lookup, the rules for display name and bio, and the initials avatar."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import select

from bastion.auth.services import canonical_username, username_problem
from bastion.content.rendering import render_markdown
from bastion.extensions import db
from bastion.models import User
from bastion.security import audit

DISPLAY_NAME_MAX, BIO_MAX = 80, 2_000


class ProfileError(ValueError):
    """Invalid profile data; the message is safe to show."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class InitialsAvatar:
    """What the template needs to draw an SVG avatar; no markup is built in Python."""

    initials: str
    hue: int


def find_profile(username: str) -> User | None:
    """The active, confirmed user with that name.

    Disabled accounts have no public page, and neither have unconfirmed ones: such an
    account cannot sign in or publish, may have been started by someone else with the
    owner's address, and its page would tell probers a sign-up is pending (200) where a
    disabled or unknown name answers 404.
    """
    if username_problem(username):
        return None
    user = db.session.scalar(select(User).where(User.username == canonical_username(username)))
    if user is None or not user.is_active or user.email_confirmed_at is None:
        return None
    return user


def bio_html(user: User) -> str:
    """The bio as sanitised Markdown, like an article body (same allowlist)."""
    return _rendered_bio(user.bio) if user.bio.strip() else ""


@lru_cache(maxsize=256)
def _rendered_bio(bio: str) -> str:
    """Bios are rendered on every signed-in profile view, up to about 35 ms each for a hostile
    2,000 characters, and change rarely: each text is rendered once per worker. Keyed by
    the text itself, so an edited bio is never served stale (at most about 7 MB a worker)."""
    return render_markdown(bio)


def initials_avatar(user: User) -> InitialsAvatar:
    words = [w for w in user.public_name.replace("_", " ").replace("-", " ").split() if w]
    letters = "".join(w[0] for w in words[:2]) or user.username[:1]
    # A stable colour per account so people are recognisable; not a security property.
    hue = int(hashlib.sha256(user.username.encode()).hexdigest()[:4], 16) % 360
    return InitialsAvatar(initials=letters.upper()[:2], hue=hue)


def clean_profile(display_name: str, bio: str) -> tuple[str, str]:
    """Validate a profile edit; used by the account settings form and the API alike."""
    display_name = unicodedata.normalize("NFC", display_name or "").strip()
    bio = unicodedata.normalize("NFC", bio or "").replace("\r\n", "\n")
    for value, field in ((display_name, "display_name"), (bio, "bio")):
        if "\x00" in value:
            raise ProfileError("Must not contain NUL characters.", field)
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in display_name):
        raise ProfileError("Use letters, digits, spaces and punctuation only.", "display_name")
    if len(display_name) > DISPLAY_NAME_MAX:
        raise ProfileError(f"Use at most {DISPLAY_NAME_MAX} characters.", "display_name")
    if len(bio) > BIO_MAX:
        raise ProfileError(f"Use at most {BIO_MAX} characters.", "bio")
    return display_name, bio


def update_profile(user: User, *, display_name: str, bio: str) -> User:
    """Change only the two public profile fields; nothing else can be set this way."""
    user.display_name, user.bio = clean_profile(display_name, bio)
    audit.record("profile.updated", actor_id=user.id, target_user_id=user.id, commit=False)
    db.session.commit()
    return user
