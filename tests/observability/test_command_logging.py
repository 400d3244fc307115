"""``flask`` commands keep their output readable: the app's INFO lines are not mixed in."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

FLASK = str(Path(sys.executable).parent / "flask")
PASSPHRASE = "tangerine-orbit-lattice-93"
INFO = '"level":"info"'
# Typed into ``flask shell``: a line at each level, from a logger under the app's.
LINES = ('import logging; log = logging.getLogger("bastion.example"); '
         'log.info("an info line"); log.warning("a warning line")\n')


def _flask(tmp: Path, *args: str, stdin: str = "", **env: str
           ) -> subprocess.CompletedProcess[str]:
    """``flask --app bastion <args>`` in a process of its own (development, SQLite)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "FLASK_"))}
    environ.update({
        "BASTION_ENV": "development",
        "BASTION_DATABASE_URL": f"sqlite:///{tmp / 'bastion.db'}",
        "BASTION_UPLOAD_DIR": str(tmp / "uploads"),
        "BASTION_OUTBOX_DIR": str(tmp / "outbox"),
        **env,
    })
    return subprocess.run([FLASK, "--app", "bastion", *args], env=environ, cwd=tmp,
                          input=stdin, capture_output=True, text=True, timeout=120,
                          check=False)


def test_commands_print_no_info_lines_and_still_audit(tmp_path: Path) -> None:
    """``security check`` printed a JSON line for each request it made, and ``create-admin``
    the audit line of the account it made, among their own output."""
    assert _flask(tmp_path, "db", "upgrade").returncode == 0
    made = _flask(tmp_path, "create-admin", "--username", "root", "--email",
                  "root@example.org", "--password-stdin", stdin=f"{PASSPHRASE}\n")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "Admin 'root' created."
    assert INFO not in made.stderr
    # The audit trail is the table, and the event is in it.
    with sqlite3.connect(tmp_path / "bastion.db") as conn:
        events = [row[0] for row in conn.execute("SELECT event FROM audit_events")]
    assert "cli.admin_created" in events

    checked = _flask(tmp_path, "security", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No problems found." in checked.stdout
    assert INFO not in checked.stderr


def test_a_command_shows_warnings_and_the_level_setting_still_applies(tmp_path: Path) -> None:
    quiet = _flask(tmp_path, "shell", stdin=LINES)
    assert quiet.returncode == 0, quiet.stderr
    assert '"msg":"a warning line"' in quiet.stderr
    assert "an info line" not in quiet.stderr

    asked = _flask(tmp_path, "shell", stdin=LINES, BASTION_LOG_LEVEL="info")
    assert asked.returncode == 0, asked.stderr
    assert '"msg":"an info line"' in asked.stderr and "a warning line" in asked.stderr
