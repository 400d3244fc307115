"""Bastion: a secure-by-default Flask publishing site.

``create_app`` only wires named steps together; each step lives with the code it sets up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from bastion.config import load_config
from bastion.flask_app import BastionFlask


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = BastionFlask(__name__, instance_relative_config=True)
    load_config(app, config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    from bastion.observability.logging import configure_logging

    configure_logging(app)
    from bastion.redis_eviction import check_redis_eviction

    check_redis_eviction(app)  # after logging: a policy it cannot read is a warning line
    register_converters(app)
    register_observability(app)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    register_template_helpers(app)
    configure_proxy(app)

    from bastion.security.access import check_every_view_has_policy

    check_every_view_has_policy(app)
    if not app.testing:
        announce_setup(app)
    return app


def register_extensions(app: Flask) -> None:
    from bastion.api.auth import offer_state_read
    from bastion.dbmigrate import init_migrations
    from bastion.extensions import csrf, db, limiter, login_manager
    from bastion.models.sqlite import enforce_foreign_keys
    from bastion.security import ratelimit_fallback, ratelimit_storage
    from bastion.security.access import enforce_access_policy
    from bastion.security.headers import init_headers
    from bastion.security.ratelimit_headers import init_ratelimit_headers
    from bastion.security.session_cookie import CookieFirstSessionInterface
    from bastion.security.throttle_audit import init_throttle_audit

    app.session_interface = CookieFirstSessionInterface()
    db.init_app(app)
    with app.app_context():  # the engines exist now; none has connected yet
        for engine in db.engines.values():
            enforce_foreign_keys(engine)
    init_migrations(app)  # Flask-Migrate loads when something migrates
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = None  # sessions are server-side records instead
    init_throttle_audit(app)
    # Before Flask-Limiter's hook, so the read it prepares can go with the limit's hit.
    app.before_request(offer_state_read)
    limiter.init_app(app)
    ratelimit_fallback.install(limiter)  # while Redis is down: forgets idle clients
    ratelimit_storage.enable(app, limiter.storage if limiter.enabled else None)
    init_ratelimit_headers(app)
    init_headers(app)
    # Runs after Flask-Login has a user to look at; the single gate for every view.
    app.before_request(enforce_access_policy)

    import bastion.auth.sessions  # noqa: F401 - registers the user loader


def register_converters(app: Flask) -> None:
    """URL converters; first among the steps that add routes, which bind them when added."""
    from bastion.routing import register_converters as register

    register(app)


def register_observability(app: Flask) -> None:
    """Metrics, error reporting and outage behaviour; first, so they see every request."""
    from bastion.observability.metrics import init_metrics
    from bastion.observability.outages import init_outage_handling
    from bastion.observability.sentry import init_sentry

    init_sentry(app)
    init_metrics(app)
    init_outage_handling(app)


# Feature packages, each exposing ``bp`` in __init__ and its views in ``routes``.
BLUEPRINTS = (
    "bastion.main",
    "bastion.auth",
    "bastion.account",
    "bastion.setup",
    "bastion.content",
    "bastion.profiles",
    "bastion.admin",
    "bastion.uploads",
    "bastion.api",
    "bastion.api.web",
)


def register_blueprints(app: Flask) -> None:
    from importlib import import_module

    from bastion.observability.health import bp as health_bp

    app.register_blueprint(health_bp)
    for name in BLUEPRINTS:
        import_module(f"{name}.routes")
        app.register_blueprint(import_module(name).bp)


def register_template_helpers(app: Flask) -> None:
    from bastion.form_attributes import install as install_form_attributes
    from bastion.static_assets import init_static_assets
    from bastion.templating import register_template_helpers as register

    register(app)
    init_static_assets(app)
    install_form_attributes()


def register_errorhandlers(app: Flask) -> None:
    from bastion.errors import register_errorhandlers as register

    register(app)


def register_commands(app: Flask) -> None:
    from bastion.cli import register_commands as register

    register(app)


def configure_proxy(app: Flask) -> None:
    """Trust X-Forwarded-* only from the configured number of proxies, never by default."""
    hops = app.config["PROXY_HOPS"]
    if hops > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=0
        )


def announce_setup(app: Flask) -> None:
    from bastion.setup.services import announce_setup_if_needed, serving_with_flask_run

    if not serving_with_flask_run():
        return
    with app.app_context():
        announce_setup_if_needed()
