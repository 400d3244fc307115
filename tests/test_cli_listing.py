"""``flask --help`` says what each of the app's command groups is for."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskCliRunner

FLASK = str(Path(sys.executable).parent / "flask")

# "  name   text" lines of the "Commands:" section; a group without help has no text.
COMMAND_LINE = re.compile(r"^  (\S+)(?: +(.*))?$")


def _write_development_env(path: Path) -> None:
    """An env file with development's settings, every path inside ``path``'s folder."""
    here = path.parent
    path.write_text(
        "BASTION_ENV=development\n"
        f"BASTION_DATABASE_URL=sqlite:///{here / 'bastion.db'}\n"
        f"BASTION_UPLOAD_DIR={here / 'uploads'}\n"
        f"BASTION_OUTBOX_DIR={here / 'outbox'}\n",
        encoding="utf-8",
    )


def _assert_listing_runs(cwd: Path, *args: str, **extra_env: str) -> None:
    """``flask --app bastion --help *args`` in ``cwd``, with none of our settings in the
    environment but ``extra_env``, lists Bastion's commands without refusing to start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "FLASK_"))}
    proc = subprocess.run([FLASK, "--app", "bastion", "--help", *args],
                          env={**env, **extra_env}, cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)

    assert proc.returncode == 0, proc.stderr
    assert "refuses to start" not in proc.stderr
    assert "create-admin" in proc.stdout.split("Commands:", 1)[1]


def test_every_command_in_the_listing_has_a_line_of_help(runner: FlaskCliRunner) -> None:
    """``uploads`` was listed with nothing beside it: an operator could not tell what it
    does without opening each group's own help."""
    listing = runner.invoke(args=["--help"])
    assert listing.exit_code == 0, listing.output
    commands = listing.output.split("Commands:", 1)[1].splitlines()
    found = dict(m.groups() for line in commands if (m := COMMAND_LINE.match(line)))
    assert {"uploads", "users", "api", "audit", "secret-key"} <= found.keys()
    assert [name for name, text in found.items() if not text] == []
    assert found["uploads"] == "Check the image store against the database."


def test_the_listing_reads_dotenv_as_the_commands_do(tmp_path: Path) -> None:
    """``flask --app bastion --help`` loaded the app before Flask read ``.env`` (its
    ``--env-file`` option is handled after ``--help``): a developer who had copied
    ``.env.example`` met production's refusal, was told to copy the file they had, and saw
    none of Bastion's commands, which each ran fine on their own."""
    _write_development_env(tmp_path / ".env")
    _assert_listing_runs(tmp_path)


@pytest.mark.parametrize(
    "env_file",
    [["-e", "other.env"], ["--env-file=other.env"], ["-eother.env"],
     ["--env-file", "other.env"]],
    ids=" ".join,
)
def test_the_listing_reads_the_env_file_named_after_help(
    tmp_path: Path, env_file: list[str]
) -> None:
    """``flask --app bastion --help -e other.env`` read ``.env`` for the listing, not the
    file named: Flask handles ``-e`` only after an ``--help`` that came first. A ``.env``
    with production's settings beside it must not win over the file the command names."""
    (tmp_path / ".env").write_text("BASTION_ENV=production\n", encoding="utf-8")
    _write_development_env(tmp_path / "other.env")
    _assert_listing_runs(tmp_path, *env_file)


def test_the_listing_reads_the_env_file_named_by_flask_env_file(tmp_path: Path) -> None:
    """``FLASK_ENV_FILE`` names the file as ``-e`` does, for the listing too."""
    _write_development_env(tmp_path / "other.env")
    _assert_listing_runs(tmp_path, FLASK_ENV_FILE="other.env")
