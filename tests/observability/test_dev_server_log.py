"""The development server's request lines keep no secret of an emailed link."""

from __future__ import annotations

import contextlib
import logging
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
