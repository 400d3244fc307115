"""Container health check: exit 0 when GET /healthz on the local server answers 200.

The slim image has no curl, so the container runtime runs this with the image's Python.
The request looks like one from the TLS-terminating proxy (trusted Host, X-Forwarded-Proto
https) so that the host allowlist and HTTPS enforcement of a production app accept it.
Redirects are not followed: a health endpoint that redirects is unhealthy.

When gunicorn serves TLS (``GUNICORN_CERT_FILE``), the probe speaks TLS too and trusts only
the internal CA in ``BASTION_INTERNAL_CA_FILE``: a certificate it did not issue, or no CA
file at all, is unhealthy, never a reason to fall back to plain HTTP or skip verification.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a 3xx as an error instead of following it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def target() -> tuple[str, str]:
    """Return the URL to probe and the Host header to send, from the app's own settings."""
    bind = os.environ.get("BASTION_BIND", "0.0.0.0:8000").split(",")[0].strip()
    port = bind.rsplit(":", 1)[-1] if ":" in bind else "8000"
    hosts = [h.strip() for h in os.environ.get("BASTION_TRUSTED_HOSTS", "").split(",")]
    # A leading dot allows every subdomain; the bare domain is then a valid Host.
    host = next((h.lstrip(".") for h in hosts if h.strip(".")), "localhost")
    path = os.environ.get("BASTION_HEALTHCHECK_PATH", "/healthz")
    scheme = "https" if os.environ.get("GUNICORN_CERT_FILE", "").strip() else "http"
    return f"{scheme}://127.0.0.1:{port}{path}", host


def tls_context() -> ssl.SSLContext | None:
    """The pinned internal CA for an https target; raises ValueError without one."""
    if not os.environ.get("GUNICORN_CERT_FILE", "").strip():
        return None
    cafile = os.environ.get("BASTION_INTERNAL_CA_FILE", "").strip()
    if not cafile:
        raise ValueError("gunicorn serves TLS but BASTION_INTERNAL_CA_FILE is not set")
    # With a cafile, only that CA is trusted (not the system store): the pin.
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def main() -> int:
    """Probe the server once; print the reason and return 1 on any failure."""
    url, host = target()
    # The URL always starts with the fixed http(s)://127.0.0.1 prefix built in target().
    request = urllib.request.Request(  # noqa: S310
        url, headers={"Host": host, "X-Forwarded-Proto": "https", "User-Agent": "healthcheck"}
    )
    try:
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        context = tls_context()
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        opener = urllib.request.build_opener(*handlers)
        with opener.open(
            request, timeout=float(os.environ.get("HEALTHCHECK_TIMEOUT", "4"))
        ) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
