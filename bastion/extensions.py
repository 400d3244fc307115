"""Unbound extension instances; ``create_app`` binds them (cookiecutter-flask style)."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from bastion.models.base import Base
from bastion.security.talisman_fast import PrecomputedTalisman

# Objects stay usable after commit: views render what a service just saved without a
# second round trip.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
csrf = CSRFProtect()
login_manager = LoginManager()
# The client address is REMOTE_ADDR; ProxyFix (set up only with BASTION_PROXY_HOPS) makes
# that the real client behind a known number of proxies, so a forged X-Forwarded-For from
# the client itself never picks someone else's bucket.
limiter = Limiter(key_func=get_remote_address)
# Same headers as flask_talisman.Talisman, with the policy strings built at start-up.
talisman = PrecomputedTalisman()
