"""Second-factor recovery codes and login-throttle counters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from bastion.models.base import Base, utcnow


class RecoveryCode(Base):
    """One single-use 2FA recovery code, kept only as a keyed hash."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # tokens.key_id of the SECRET_KEY the digest was made with; None: made before it was kept.
    key_id: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class LoginThrottle(Base):
    """Recent failed sign-ins for one account or one client address (the default store).

    Kept in the database so every instance sees the same count; Redis replaces it when
    ``BASTION_REDIS_URL`` is set.
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime] = mapped_column(default=utcnow)
