"""Flask-Principal identity: role needs from the signed-in user's ranked role."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_login import current_user
from flask_principal import AnonymousIdentity, Identity, RoleNeed, UserNeed, identity_loaded

from bastion.extensions import principal
from bastion.models.user import ROLE_NAMES, ROLE_RANK


def init_identity(app: Flask) -> None:
    @principal.identity_loader
    def _load_identity() -> Identity:
        if current_user.is_authenticated:
            return Identity(current_user.id)
        return AnonymousIdentity()

    @identity_loaded.connect_via(app)
    def _on_identity_loaded(_sender: Any, identity: Identity) -> None:
        if not current_user.is_authenticated:
            return
        identity.provides.add(UserNeed(current_user.id))
        rank = ROLE_RANK[current_user.role.name]
        for name in ROLE_NAMES[: rank + 1]:
            identity.provides.add(RoleNeed(name))
