"""Accounts: users and their single role (admin > editor > viewer)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bastion.models.base import Base, TimestampMixin, utcnow

if TYPE_CHECKING:
    from bastion.models.session import UserSession

ROLE_NAMES = ("viewer", "editor", "admin")
ROLE_RANK = {name: rank for rank, name in enumerate(ROLE_NAMES)}


class Role(Base):
    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str] = mapped_column(String(200), default="")

    def __repr__(self) -> str:
        return f"<Role {self.name}>"


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored canonical (NFKC, lower case) so "Alice" and "alice" cannot both exist.
    username: Mapped[str] = mapped_column(String(32), unique=True)
    # Stored canonical too (``canonical_email``: the domain in IDNA ASCII), so one mailbox
    # has one spelling.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(80), default="")
    bio: Mapped[str] = mapped_column(Text, default="")
    avatar_id: Mapped[str | None] = mapped_column(String(40), default=None)
    email_confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    password_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    # TOTP: the shared secret is encrypted at rest; the last accepted time step is kept so a
    # code can never be used twice.
    totp_secret: Mapped[str | None] = mapped_column(String(255), default=None)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(default=None)
    totp_last_step: Mapped[int | None] = mapped_column(default=None)
    # Renewed whenever every session ends (``revoke_all``); emailed links carry a
    # fingerprint of it, so they die with the sessions (``bastion.auth.links``).
    security_stamp: Mapped[str] = mapped_column(String(32), default="", server_default="")

    role: Mapped[Role] = relationship(lazy="joined", innerjoin=True)
    sessions: Mapped[list[UserSession]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    # Flask-Login protocol ------------------------------------------------------------
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)

    # Small invariants ----------------------------------------------------------------
    @property
    def role_name(self) -> str:
        return self.role.name

    def has_role(self, name: str) -> bool:
        """Roles are ranked: an admin can do what an editor can, and so on."""
        return ROLE_RANK.get(self.role.name, -1) >= ROLE_RANK[name]

    @property
    def is_admin(self) -> bool:
        return self.role.name == "admin"

    @property
    def has_2fa(self) -> bool:
        return self.totp_enabled_at is not None

    @property
    def public_name(self) -> str:
        return self.display_name or self.username

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username}>"


class RetiredUsername(Base):
    """The username of a deleted account, never given to anyone again: its profile URL,
    the mentions and links to it and the audit trail's ``user.deleted`` row would
    otherwise name whoever registered it next (``bastion.admin.deletion``). Written in the
    deletion's transaction; canonical, as ``users.username`` is stored."""

    __tablename__ = "retired_usernames"

    username: Mapped[str] = mapped_column(String(32), primary_key=True)
    retired_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<RetiredUsername {self.username}>"
