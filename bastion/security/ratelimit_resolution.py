"""Flask-Limiter's LimitManager, remembering which limits apply to a request's endpoint.

Why: before every request Flask-Limiter works out the limits again from scratch: the view's
qualified name, its decorated limits, its blueprint's and their ancestors' limits and
exemptions, the defaults, each limit string parsed anew. None of that changes between two
requests to the same view, and it cost about 50-70 us of CPU per request in-process (5-7%
of a page; ``make bench``'s breakdown), more than the Redis round trip's own Python.
Flask-Limiter has no such cache, so this subclass keeps one.

What keeps it exact: the answer is the one ``LimitManager.resolve_limits`` gives for the
same inputs, and the key holds every input it reads:

- the arguments, the app (each has its own view functions and blueprints), the view
  function now registered under the endpoint and the request's method (a limit declared
  for POST only is "method exempt" on a GET, which brings the default limits back);
- the text every limit given as a callable returns *now* (the limit strings are the only
  part evaluated while resolving; key functions, ``exempt_when``, costs and ``deduct_when``
  are evaluated by Flask-Limiter for each request, after this);
- a generation that every registration (decorated, blueprint and default limits,
  exemptions, new endpoint hints) moves on, which empties the cache.

A callable limit that raises is left to Flask-Limiter's own handling, uncached.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

import flask
from flask_limiter._limits import RuntimeLimit
from flask_limiter._manager import LimitManager

# Views times arguments stay small; the bound only guards against a pathological app.
MAX_ENTRIES = 4096

Resolved = tuple[list[RuntimeLimit], ...]


class CachedLimitManager(LimitManager):
    """``LimitManager`` with ``resolve_limits`` remembered per app and inputs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resolved: weakref.WeakKeyDictionary[flask.Flask, dict[tuple[Any, ...], Resolved]]
        self._resolved = weakref.WeakKeyDictionary()
        self._scopes: weakref.WeakKeyDictionary[flask.Flask, dict[tuple[Any, ...], Any]]
        self._scopes = weakref.WeakKeyDictionary()
        self._providers: list[Any] | None = None

    @classmethod
    def replacing(cls, manager: LimitManager) -> CachedLimitManager:
        """A cached manager sharing ``manager``'s registrations (the Limiter's own dicts)."""
        return cls(**registrations(manager))

    def _changed(self) -> None:
        self._resolved = weakref.WeakKeyDictionary()
        self._scopes = weakref.WeakKeyDictionary()
        self._providers = None

    def set_application_limits(self, limits: Any) -> None:
        super().set_application_limits(limits)
        self._changed()

    def set_default_limits(self, limits: Any) -> None:
        super().set_default_limits(limits)
        self._changed()

    def add_decorated_limit(self, route: str, limit: Any, override: bool = False) -> None:
        super().add_decorated_limit(route, limit, override)
        self._changed()

    def add_blueprint_limit(self, blueprint: str, limit: Any) -> None:
        super().add_blueprint_limit(blueprint, limit)
        self._changed()

    def add_route_exemption(self, route: str, scope: Any) -> None:
        super().add_route_exemption(route, scope)
        self._changed()

    def add_blueprint_exemption(self, blueprint: str, scope: Any) -> None:
        super().add_blueprint_exemption(blueprint, scope)
        self._changed()

    def add_endpoint_hint(self, endpoint: str, callable: str) -> None:
        # Flask-Limiter calls this on every call of a decorated helper: only news count.
        if callable not in self._endpoint_hints.get(endpoint, ()):
            super().add_endpoint_hint(endpoint, callable)
            self._changed()

    def _dynamic_providers(self) -> list[Any]:
        """Every limit (and meta limit) given as a callable, in a fixed order."""
        if self._providers is None:
            groups = itertools.chain(
                self._application_limits,
                self._default_limits,
                *self._decorated_limits.values(),
                *self._blueprint_limits.values(),
            )
            found = []
            # One provider shared by several limits (a shared limit on three views) is
            # asked once per request: it reads the same setting each time.
            seen: set[int] = set()
            for group in groups:
                for limit in (group, *(getattr(group, "meta_limits", None) or ())):
                    provider = getattr(limit, "limit_provider", limit)
                    if callable(provider) and id(provider) not in seen:
                        seen.add(id(provider))
                        found.append(provider)
            self._providers = found
        return self._providers

    def resolve_limits(
        self,
        app: flask.Flask,
        endpoint: str | None = None,
        blueprint: str | None = None,
        callable_name: str | None = None,
        in_middleware: bool = False,
        marked_for_limiting: bool = False,
    ) -> Resolved:
        # Flask-Limiter passes ``current_app``, a proxy: key by the app behind it.
        unwrap = getattr(app, "_get_current_object", None)
        app = unwrap() if unwrap is not None else app
        args = (app, endpoint, blueprint, callable_name, in_middleware, marked_for_limiting)
        try:
            texts = tuple(provider() for provider in self._dynamic_providers())
        except Exception:  # Flask-Limiter logs a broken limit; let it, uncached
            return super().resolve_limits(*args)
        view = app.view_functions.get(endpoint or "")
        # A limit declared for some methods only leaves the defaults on for the others.
        method = flask.request.method if flask.has_request_context() else None
        key: tuple[Any, ...] = (endpoint, blueprint, callable_name, in_middleware)
        key += (marked_for_limiting, view, method, texts)
        per_app = self._resolved.get(app)
        if per_app is None:
            per_app = self._resolved[app] = {}
        found = per_app.get(key)
        if found is None:
            found = super().resolve_limits(*args)
            if len(per_app) >= MAX_ENTRIES:
                per_app.clear()
            per_app[key] = found
        # Callers get lists of their own; the limits in them are immutable.
        return tuple(list(limits) for limits in found)


    def exemption_scope(
        self, app: flask.Flask, endpoint: str | None, blueprint: str | None
    ) -> Any:
        """Asked again before the limits are counted: it reads only the exemptions, the
        app's blueprints (fixed once it serves) and the view under ``endpoint``."""
        unwrap = getattr(app, "_get_current_object", None)
        app = unwrap() if unwrap is not None else app
        key = (endpoint, blueprint, app.view_functions.get(endpoint or ""))
        per_app = self._scopes.get(app)
        if per_app is None:
            per_app = self._scopes[app] = {}
        found = per_app.get(key)
        if found is None:
            found = super().exemption_scope(app, endpoint, blueprint)
            if len(per_app) >= MAX_ENTRIES:
                per_app.clear()
            per_app[key] = found
        return found


def registrations(manager: LimitManager) -> dict[str, Any]:
    """``manager``'s limits and exemptions, as ``LimitManager``'s constructor takes them."""
    return {
        "application_limits": manager._application_limits,
        "default_limits": manager._default_limits,
        "decorated_limits": manager._decorated_limits,
        "blueprint_limits": manager._blueprint_limits,
        "route_exemptions": manager._route_exemptions,
        "blueprint_exemptions": manager._blueprint_exemptions,
    }


def install(limiter: Any) -> None:
    """Give ``limiter`` a cached manager; call before any limit is declared or app bound."""
    limiter.limit_manager = CachedLimitManager.replacing(limiter.limit_manager)
