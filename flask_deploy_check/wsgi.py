"""Helpers that look inside an app without running it: WSGI middleware and extensions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Flask

_MAX_MIDDLEWARE = 50
# Where middleware keeps the application it wraps: Werkzeug and Sentry use ``app``,
# WhiteNoise and many hand-written wrappers ``application``, others ``wsgi_app`` or
# ``_app``; functools.wraps leaves ``__wrapped__``. Missing one would hide what is inside.
_INNER_ATTRIBUTES = ("app", "application", "wsgi_app", "_app", "__wrapped__")


def wsgi_chain(app: Flask) -> Iterator[Any]:
    """Yield every object wrapped around ``app.wsgi_app``, outermost first.

    Middleware conventionally keeps the wrapped application in ``.app``
    (Werkzeug's ProxyFix, DebuggedApplication, SharedDataMiddleware, Sentry's
    middleware) or one of the other ``_INNER_ATTRIBUTES``; DispatcherMiddleware also
    keeps ``.mounts``.
    """
    pending: list[Any] = [app.wsgi_app]
    seen: set[int] = set()
    while pending and len(seen) < _MAX_MIDDLEWARE:
        current = pending.pop(0)
        if id(current) in seen or isinstance(getattr(current, "__self__", None), Flask):
            continue  # a Flask app's own bound wsgi_app ends a branch
        seen.add(id(current))
        yield current
        for attribute in _INNER_ATTRIBUTES:
            inner = getattr(current, attribute, None)
            if inner is not None and callable(inner) and not isinstance(inner, Flask):
                pending.append(inner)
        mounts = getattr(current, "mounts", None)
        if isinstance(mounts, dict):
            pending.extend(mounts.values())


def instances_of(app: Flask, module: str, name: str) -> list[Any]:
    """Middleware in the chain whose class is ``module.name`` (matched by name, no import)."""
    return [
        obj
        for obj in wsgi_chain(app)
        if type(obj).__name__ == name and type(obj).__module__.startswith(module)
    ]


def extension_instances(app: Flask, key: str) -> list[Any]:
    """``app.extensions[key]`` as a list (Flask-Limiter stores a set of instances)."""
    value = app.extensions.get(key)
    if value is None:
        return []
    if isinstance(value, set | frozenset | list | tuple):
        return list(value)
    return [value]


def talisman_instances(app: Flask) -> list[Any]:
    """Flask-Talisman objects serving ``app``, found through their bound request hooks
    (Talisman keeps no ``app.extensions`` entry)."""
    found: list[Any] = []
    for hooks in app.before_request_funcs.values():
        for hook in hooks:
            owner = getattr(hook, "__self__", None)
            kind = type(owner)
            talisman = kind.__name__ == "Talisman" and kind.__module__.startswith("flask_talisman")
            if talisman and all(owner is not other for other in found):
                found.append(owner)
    return found


def has_flask_login(app: Flask) -> bool:
    """Flask-Login attaches ``app.login_manager`` rather than using ``app.extensions``."""
    return getattr(app, "login_manager", None) is not None


def unsafe_method_rules(app: Flask) -> list[str]:
    """Rules that accept a state-changing method, i.e. the ones CSRF protection matters for."""
    unsafe = {"POST", "PUT", "PATCH", "DELETE"}
    return sorted(
        rule.rule for rule in app.url_map.iter_rules() if unsafe & set(rule.methods or ())
    )
