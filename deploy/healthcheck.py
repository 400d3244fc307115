"""Container health check: exit 0 when GET /healthz on the local server answers 200.

The slim image has no curl, so the container runtime runs this with the image's Python.
The request looks like one from the TLS-terminating proxy (trusted Host, X-Forwarded-Proto
https) so that the host allowlist and HTTPS enforcement of a production app accept it.
Redirects are not followed: a health endpoint that redirects is unhealthy.
"""

from __future__ import annotations

import os
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
    return f"http://127.0.0.1:{port}{path}", host


def main() -> int:
    """Probe the server once; print the reason and return 1 on any failure."""
    url, host = target()
    # The URL always starts with the fixed http://127.0.0.1 prefix built in target().
    request = urllib.request.Request(  # noqa: S310
        url, headers={"Host": host, "X-Forwarded-Proto": "https", "User-Agent": "healthcheck"}
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
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
