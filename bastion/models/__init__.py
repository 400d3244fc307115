"""All models, imported here so metadata (and Alembic) sees every table."""

from bastion.models.audit import AuditEvent
from bastion.models.base import Base, TimestampMixin, utcnow
from bastion.models.content import Article, Comment
from bastion.models.credentials import LoginThrottle, RecoveryCode
from bastion.models.session import UserSession
from bastion.models.token import ApiToken, RefreshToken, RevokedToken, SetupToken
from bastion.models.upload import Upload
from bastion.models.user import ROLE_NAMES, RetiredUsername, Role, User

__all__ = [
    "ROLE_NAMES",
    "ApiToken",
    "Article",
    "AuditEvent",
    "Base",
    "Comment",
    "LoginThrottle",
    "RecoveryCode",
    "RefreshToken",
    "RetiredUsername",
    "RevokedToken",
    "Role",
    "SetupToken",
    "TimestampMixin",
    "Upload",
    "User",
    "UserSession",
    "utcnow",
]
