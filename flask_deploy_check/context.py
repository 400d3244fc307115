"""What every check receives: the app, the mode, and cached live answers.

Live requests go through ``app.test_client()``: the app's own before/after request
hooks, error handlers and middleware run exactly as in production, but no server or
network is needed. Each request is made once and shared by every check that reads it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, got_request_exception, request
from werkzeug.exceptions import InternalServerError

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from flask_deploy_check.deps import AuditOutcome, DepsOptions

PROBE_ORIGIN = "https://cors-probe.invalid"
"""An origin no real deployment trusts: echoing it back means any origin is accepted."""

PROBE_METHOD = "SECURITYPROBE"
"""A method no route declares, so a 405 is produced without ever calling a view."""

MAX_BODY_BYTES = 1_048_576
"""How much of a probed body is read: a streaming or endless page must not hang the run."""


@contextlib.contextmanager
def _logging_off() -> Iterator[None]:
    """No log record at all, then the level of switching off that was before: an error
    log is what an error tracker or an alert reads, and the failing-view probe is none."""
    before = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(before)


def describe_exception(exc: BaseException, limit: int = 240) -> str:
    """One line, bounded: reports must never contain a traceback."""
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def probe_host(app: Flask) -> str:
    """The host live requests are sent to: one the app accepts (SERVER_NAME, TRUSTED_HOSTS)."""
    server_name = app.config.get("SERVER_NAME")
    if server_name:
        return str(server_name)
    trusted = app.config.get("TRUSTED_HOSTS")
    if isinstance(trusted, str):  # Werkzeug accepts one host as a plain string
        trusted = [trusted]
    if trusted:
        first = str(next(iter(trusted)))
        return first.lstrip(".") or "localhost"
    return "localhost"


class ViewProbeError(Exception):
    """Raised in a request context to see the page the app shows when a view fails."""


def reflection_marker(token: str) -> str:
    """Markup put in the 404 probe's path: found verbatim, the page reflects it unescaped."""
    return f"<x{token}>"


def _read_bounded(response: Response, limit: int = MAX_BODY_BYTES) -> None:
    """Keep at most ``limit`` bytes of the body, then close the app's iterator."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_encoded():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    finally:
        response.close()
    response.response = [b"".join(chunks)[:limit]]


class LiveRequestError(Exception):
    """A live request could not be completed; checks that need it cannot run."""

    def __init__(self, probe: str, reason: str) -> None:
        super().__init__(f"{probe}: {reason}")
        self.probe = probe
        self.reason = reason


@dataclass(frozen=True)
class Probe:
    """One request made by the live checks."""

    method: str
    path: str
    scheme: str = "https"
    headers: tuple[tuple[str, str], ...] = ()
    failing_view: bool = False
    """Not sent: the app's error handling is run for an exception raised in its view."""

    def describe(self, host: str) -> str:
        """``GET https://host/`` for messages."""
        line = f"{self.method} {self.scheme}://{host}{self.path}"
        return f"{line} with a failing view" if self.failing_view else line


@dataclass
class ProbeResult:
    """The answer to a probe, plus any exception the app raised while producing it."""

    probe: Probe
    response: Response | None = None
    error: str | None = None
    app_exception: str | None = None


@dataclass
class CheckContext:
    """Shared state for one run of the checks against one application."""

    app: Flask
    deploy: bool = False
    deps_options: DepsOptions | None = None
    results: dict[str, ProbeResult] = field(default_factory=dict)
    _audit: AuditOutcome | None = None
    _probes: dict[str, Probe | None] | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(6))
    """Random per run: the 404 path, the reflection marker and the probe exception use it."""

    @property
    def host(self) -> str:
        """Host used for live requests."""
        return probe_host(self.app)

    def probes(self) -> dict[str, Probe | None]:
        """The named requests live checks may read (``None`` when not applicable).

        Built once per run so that the random 404 path stays the same.
        """
        if self._probes is None:
            token = self.token
            self._probes = {
                "home": Probe("GET", "/", headers=(("Origin", PROBE_ORIGIN),)),
                # Sandboxed iframes, data: URLs and some redirects send "Origin: null":
                # any page can make one, so an allowlist that names it trusts everyone.
                "home_null_origin": Probe("GET", "/", headers=(("Origin", "null"),)),
                "http_home": Probe("GET", "/", scheme="http"),
                "not_found": Probe(
                    "GET", f"/security-check-probe-{token}/missing{reflection_marker(token)}"
                ),
                "bad_method": self._bad_method_probe(),
                "server_error": Probe("GET", "/", failing_view=True),
            }
        return self._probes

    def response(self, name: str) -> Response:
        """The answer to probe ``name``; raises :class:`LiveRequestError` if it failed."""
        result = self.result(name)
        if result is None or result.response is None:
            raise LiveRequestError(name, (result.error if result else None) or "not applicable")
        return result.response

    def optional_response(self, name: str) -> Response | None:
        """Like :meth:`response`, but ``None`` for probes that do not apply to this app
        (no argument-less route to send a 405 probe to; exceptions that propagate to the
        server, whose own page the app does not control)."""
        result = self.result(name)
        if result is None or (result.response is None and result.error is None):
            return None
        return self.response(name)

    def result(self, name: str) -> ProbeResult | None:
        """Run probe ``name`` once and cache its result."""
        if name not in self.results:
            probe = self.probes().get(name)
            if probe is None:
                return None
            self.results[name] = self._send(probe)
        return self.results[name]

    def audit(self) -> AuditOutcome:
        """The dependency audit, run once and shared by the dependency checks."""
        if self._audit is None:
            from flask_deploy_check.deps import DepsOptions, audit_installed

            self._audit = audit_installed(self.deps_options or DepsOptions())
        return self._audit

    def _bad_method_probe(self) -> Probe | None:
        """A 405 probe on an existing argument-less route, or ``None`` if there is none."""
        rules = [
            rule
            for rule in self.app.url_map.iter_rules()
            if not rule.arguments and PROBE_METHOD not in (rule.methods or ())
        ]
        rules.sort(key=lambda rule: (rule.rule != "/", rule.rule))
        return Probe(PROBE_METHOD, rules[0].rule) if rules else None

    def _send(self, probe: Probe) -> ProbeResult:
        """Send one request, capturing app exceptions instead of printing tracebacks."""
        captured: list[str] = []

        def on_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
            captured.append(describe_exception(exception))

        logger = self.app.logger
        was_disabled = logger.disabled
        logger.disabled = True  # Flask would log the traceback of a failing view
        got_request_exception.connect(on_exception, self.app, weak=False)
        try:
            response: Response | None
            if probe.failing_view:
                response = self._failing_view_page(probe)
            else:
                client = self.app.test_client(use_cookies=False)
                response = client.open(
                    probe.path,
                    method=probe.method,
                    base_url=f"{probe.scheme}://{self.host}",
                    headers=list(probe.headers),
                    follow_redirects=False,
                    buffered=False,
                )
            if response is not None:
                _read_bounded(response)
        except Exception as exc:
            reason = f"{probe.describe(self.host)} raised {describe_exception(exc)}"
            return ProbeResult(probe, error=reason)
        finally:
            got_request_exception.disconnect(on_exception, self.app)
            logger.disabled = was_disabled
        return ProbeResult(
            probe, response=response, app_exception=captured[0] if captured else None
        )

    def _failing_view_page(self, probe: Probe) -> Response | None:
        """The page the app answers when a view raises, as ``Flask.wsgi_app`` builds it.

        No view is called and the app is not changed: an exception is raised inside a
        request context and handed to the app's own handlers (``errorhandler(Exception)``,
        then the 500 handler), whose answer goes through its after_request hooks. It is
        not sent through ``handle_exception``, which would log it and signal it (Sentry)
        as a real failure; nor may a handler that logs or signals what it catches itself,
        so logging and ``got_request_exception`` are off meanwhile. ``None`` when
        PROPAGATE_EXCEPTIONS lets it reach the server; debug and testing mode (reported on
        their own) do not count, since the handlers are what answers once they are off.
        """
        app = self.app
        base_url = f"{probe.scheme}://{self.host}"
        with (
            app.test_request_context(probe.path, base_url=base_url),
            got_request_exception.muted(),
            _logging_off(),
        ):
            with contextlib.suppress(Exception):
                app.preprocess_request()  # what handlers may read, e.g. g set by a hook
            try:
                raise ViewProbeError(f"security-check-probe-{self.token}")
            except ViewProbeError as exc:  # handled here, so handlers see sys.exc_info()
                response = self._handle_failure(exc)
            if response is not None:
                _read_bounded(response)  # inside the request, as a server would stream it
            return response

    def _handle_failure(self, exc: ViewProbeError) -> Response | None:
        """What ``Flask.handle_user_exception`` and ``handle_exception`` would answer."""
        app = self.app
        try:
            answer = app.handle_user_exception(exc)
        except ViewProbeError:
            if app.config.get("PROPAGATE_EXCEPTIONS"):
                return None  # set on purpose: the server's own page is shown
            error = InternalServerError(original_exception=exc)
            handler = app._find_error_handler(error, request.blueprints)
            answer = app.ensure_sync(handler)(error) if handler else error
        return app.finalize_request(answer, from_error_handler=True)
