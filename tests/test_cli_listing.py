"""``flask --help`` says what each of the app's command groups is for."""

from __future__ import annotations

import re

from flask.testing import FlaskCliRunner

# "  name   text" lines of the "Commands:" section; a group without help has no text.
COMMAND_LINE = re.compile(r"^  (\S+)(?: +(.*))?$")


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
