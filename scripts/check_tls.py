"""Check that a public endpoint presents a trusted, valid, unexpired certificate over TLS 1.2+.

Run it against the deployed site after every certificate change and from monitoring::

    python scripts/check_tls.py bastion.example.org            # public CAs (system store)
    python scripts/check_tls.py db.internal:5432 --cafile ca.pem   # an internal, pinned CA

It uses Python's default verification (chain to a trusted root, host name, validity dates)
and fails, with the reason, on anything else: a self-signed or privately issued certificate
when no ``--cafile`` is given, a name mismatch, TLS older than 1.2, or fewer than
``--min-days`` days before expiry. Exit status 0 means the endpoint is fine.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
from datetime import UTC, datetime


def check(host: str, port: int = 443, *, cafile: str | None = None, min_days: int = 14,
          timeout: float = 10.0, server_name: str | None = None) -> tuple[bool, str]:
    """``(ok, message)`` for the certificate ``host:port`` presents."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    name = server_name or host
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            cert = tls.getpeercert()
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return False, f"{name}: certificate not trusted: {exc.verify_message}"
    except (ssl.SSLError, OSError) as exc:
        return False, f"{name}: TLS connection failed: {exc}"
    not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), UTC)
    days = (not_after - datetime.now(UTC)).days
    if days < min_days:
        return False, f"{name}: certificate expires in {days} days (on {not_after:%Y-%m-%d})"
    return True, f"{name}: trusted certificate, {version}, expires in {days} days"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("target", help="host or host:port (default port 443)")
    parser.add_argument("--cafile", help="trust only this CA bundle (internal, pinned CA)")
    parser.add_argument("--min-days", type=int, default=14, help="fail below this many days left")
    parser.add_argument("--server-name", help="name to verify, when it differs from the host")
    args = parser.parse_args(argv)
    host, _, port = args.target.partition(":")
    ok, message = check(host, int(port or 443), cafile=args.cafile, min_days=args.min_days,
                        server_name=args.server_name)
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
