"""A serving process does not import what only other code paths need (start-up time).

Markdown is rendered when an article is written and on profile pages (a bio), not for
the home, article or API pages: markdown-it loads on the first render.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CODE = """
import json, sys
from bastion import create_app
app = create_app({"UPLOAD_DIR": sys.argv[1], "OUTBOX_DIR": sys.argv[1]})
app.test_client().get("/healthz")
print(json.dumps(sorted(m for m in ("alembic", "flask_migrate", "markdown_it", "segno",
                                     "sentry_sdk")
                        if m in sys.modules)))
"""


def test_create_app_and_a_request_leave_migrations_qr_codes_and_sentry_unloaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Testing reads no BASTION_* variable but its name: the directories go in as overrides.
    env = {**os.environ, "BASTION_ENV": "testing"}
    env.pop("BASTION_SENTRY_DSN", None)
    out = subprocess.run(
        [sys.executable, "-c", _CODE, str(tmp_path)], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_migrations_load_when_used_in_process(make_app) -> None:  # type: ignore[no-untyped-def]
    from flask_migrate import current

    app = make_app()
    with app.app_context():
        current()  # reads app.extensions["migrate"]: Flask-Migrate is set up on demand
    from flask_migrate import _MigrateConfig

    assert isinstance(app.extensions["migrate"], _MigrateConfig)
    assert app.extensions["migrate"].directory.endswith("migrations")
