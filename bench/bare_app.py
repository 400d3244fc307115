"""The baseline: bare Flask answering each scenario with Bastion's exact bytes.

``bench.run`` fetches every scenario's response from Bastion once, writes them to the JSON
file named by ``BENCH_BARE_RESPONSES`` and starts this app under the same gunicorn settings.
Same status, same Content-Type, same body: the difference between the two servers is what
Bastion's security and data access cost, nothing else.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from flask import Flask, Response


def create_app(responses_file: str | None = None) -> Flask:
    app = Flask(__name__)
    path = responses_file or os.environ["BENCH_BARE_RESPONSES"]
    with open(path, encoding="utf-8") as fh:
        captured: list[dict[str, Any]] = json.load(fh)
    for index, item in enumerate(captured):
        body = base64.b64decode(item["body_b64"])
        status, content_type = int(item["status"]), str(item["content_type"])

        def view(
            body: bytes = body, status: int = status, content_type: str = content_type, **_: Any
        ) -> Response:
            return Response(body, status=status, content_type=content_type)

        app.add_url_rule(item["path"], f"captured_{index}", view, methods=[item["method"]])
    return app
