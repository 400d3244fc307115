"""The security header values every answer carries, in one place for the app and gunicorn.

The app sends them through Talisman (``bastion/security/headers.py``,
``bastion/security/talisman_fast.py``). gunicorn answers some requests itself, before the
app sees them (a malformed request line, headers over its limits), and the worker class
(``bastion/gunicorn_worker.py``) gives those answers the same headers from here. No Flask
import: the gunicorn master loads the worker class, and must not build an app for it.
"""

from __future__ import annotations

# Answers that are data, not documents (the JSON API, its errors, health checks, the plain
# text of gunicorn's refusals): nothing in them may load, run or be framed, and a browser
# that opens one as a page gets an empty, sandboxed document (OWASP REST guidance).
DATA_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox"
PERMISSIONS_POLICY = dict.fromkeys(("accelerometer", "camera", "geolocation", "gyroscope", "magnetometer", "microphone", "payment", "usb", "browsing-topics"), "()")
# Fixed headers Talisman does not set.
STATIC_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Permitted-Cross-Domain-Policies": "none",
}
FRAME_OPTIONS = "DENY"
REFERRER_POLICY = "strict-origin-when-cross-origin"
HSTS_MAX_AGE = 63072000  # two years, with includeSubDomains


def hsts(*, preload: bool) -> str:
    """The Strict-Transport-Security value, written as Talisman writes it."""
    value = f"max-age={HSTS_MAX_AGE}; includeSubDomains"
    return f"{value}; preload" if preload else value


def server_answer_headers(*, secure: bool, hsts_preload: bool) -> list[tuple[str, str]]:
    """The headers of an app's data answer, for one the server writes without the app.

    HSTS only over TLS, as the app sends it (nginx sets its own for its clients), and
    ``no-store``: such an answer is about one client's request, never worth keeping.
    """
    headers = [
        ("Content-Security-Policy", DATA_CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", FRAME_OPTIONS),
        ("Referrer-Policy", REFERRER_POLICY),
        ("Permissions-Policy", ", ".join(f"{name}={v}" for name, v in PERMISSIONS_POLICY.items())),
        *STATIC_HEADERS.items(),
        ("Cache-Control", "no-store"),
    ]
    if secure:
        headers.append(("Strict-Transport-Security", hsts(preload=hsts_preload)))
    return headers
