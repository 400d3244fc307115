"""The development server's request lines keep no secret of an emailed link."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

SECRETS = {
    "/setup/SetupSecret_0123456789abcdef": "/setup/[redacted]",
    "/auth/reset/ResetSecret.abc.def": "/auth/reset/[redacted]",
    "/auth/%72eset/EncodedSecret.abc": "/auth/reset/[redacted]",  # decoded, as it is routed
    "/auth/confirm/ConfirmSecret.abc?next=/": "/auth/confirm/[redacted]?[redacted]",
    "/api/v1/tokens/bst_PersonalSecret0123456789": "/api/v1/tokens/[redacted]",
    "/articles?q=QuerySecret": "/articles?[redacted]",
}


@pytest.fixture
def dev_server(app: Flask) -> Iterator[BaseWSGIServer]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(timeout=10)


@pytest.mark.asvs("V16.2.5", "V14.2.1")
def test_the_dev_servers_request_lines_are_redacted(
    dev_server: BaseWSGIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="werkzeug")
    for path in SECRETS:
        # A 404 or a refusal raises here; the line is logged all the same.
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{dev_server.port}{path}", timeout=10)
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    text = "\n".join(lines)
    for secret in ("SetupSecret", "ResetSecret", "EncodedSecret", "ConfirmSecret",
                   "PersonalSecret", "QuerySecret"):
        assert secret not in text, secret
    for shown in SECRETS.values():
        assert f" {shown} HTTP/1.1" in text, (shown, text)


def _raw_request(server: BaseWSGIServer, line: bytes) -> None:
    """Send one request line as written, as a client that encodes nothing for us would."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass


# Request lines the server routes to a link, or logs whole on a 400, with the secret in
# another shape than a plain path: the first word after the method is not all there is.
RAW_LINES = [
    b"GET /setup%2FSlashSecret HTTP/1.1",  # routed to /setup/<token>: PATH_INFO is decoded
    b"GET %2Fsetup/NoSlashSecret HTTP/1.1",
    b"GET http://127.0.0.1/setup/AbsoluteSecret HTTP/1.1",  # absolute form: routed by path
    b"GET http://[::1/setup/BracketSecret HTTP/1.1",  # no URL to urlsplit(), a 400 or 500
    b"GET /setup/Spaced%20Secret HTTP/1.1",
    b"GET /x /setup/SecondWordSecret HTTP/1.1",  # 400: "Bad request syntax" quotes it
    b"GET /setup/TrailingSecret HTTP/1.1 x",  # 400, logged as received
    b"GET\t/setup/TabbedSecret\tHTTP/1.1\tx",  # 400, tabs escaped in the line
]


@pytest.mark.asvs("V16.2.5")
def test_request_lines_in_other_shapes_are_redacted(
    dev_server: BaseWSGIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The filter redacted the first word after the method that starts with "/", as
    written: a %2F, an absolute-form target, or a line Werkzeug refused with 400 (logged as
    received, and quoted in its error line) wrote the link's secret out."""
    caplog.set_level(logging.INFO, logger="werkzeug")
    for line in RAW_LINES:
        _raw_request(dev_server, line)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "werkzeug")
    assert "Secret" not in text, text
    assert text.count("/setup/[redacted]") >= len(RAW_LINES), text
    _raw_request(dev_server, b"GET /a%20b/c HTTP/1.1")  # an ordinary path: shown as it was
    last = [r.getMessage() for r in caplog.records if r.name == "werkzeug"][-1]
    assert "GET /a%20b/c HTTP/1.1" in last, last
