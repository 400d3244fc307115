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
# Powerful features a publishing site never uses, denied to its pages and to anything they
# frame, so that injected script cannot ask for them either: sensors, camera, microphone
# and screen capture, devices (USB, serial, HID, MIDI), credentials (no WebAuthn here: the
# second factor is TOTP), payment, clipboard reading, and tracking (Topics, idle state,
# installed fonts, CPU pressure, window placement). Only names Chromium knows: it logs a
# warning for each other one (``bluetooth`` and ``document-domain`` among them), and a
# browser test checks that it knows and denies every one here. Written once, at import:
# Talisman sends a string as it is, even on views with their own options.
PERMISSIONS_POLICY_DENIED = (
    "accelerometer",
    "browsing-topics",
    "camera",
    "clipboard-read",
    "compute-pressure",
    "display-capture",
    "geolocation",
    "gyroscope",
    "hid",
    "identity-credentials-get",
    "idle-detection",
    "local-fonts",
    "magnetometer",
    "microphone",
    "midi",
    "otp-credentials",
    "payment",
    "publickey-credentials-create",
    "publickey-credentials-get",
    "screen-wake-lock",
    "serial",
    "usb",
    "window-management",
    "xr-spatial-tracking",
)
PERMISSIONS_POLICY = ", ".join(f"{name}=()" for name in PERMISSIONS_POLICY_DENIED)
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
        ("Permissions-Policy", PERMISSIONS_POLICY),
        *STATIC_HEADERS.items(),
        ("Cache-Control", "no-store"),
    ]
    if secure:
        headers.append(("Strict-Transport-Security", hsts(preload=hsts_preload)))
    return headers
