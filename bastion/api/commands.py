"""``flask --app bastion api new-key``: print a keyset entry for BASTION_JWT_KEYS."""

from __future__ import annotations

import json

import click

from bastion.api import bp
from bastion.api.keys import new_key_entry
from bastion.cli import write_output

bp.cli.help = "API signing keys."

KEY_NOTE = (
    "The keyset above holds a private key that signs API tokens for every account: store it "
    "as a secret (BASTION_JWT_KEYS, or a file named by BASTION_JWT_KEYS_FILE), never in the "
    "repository, an image or a log."
)


@bp.cli.command("new-key")
@click.option("--kid", default=None, help="Key id (default: random).")
def new_key(kid: str | None) -> None:
    """Print a new Ed25519 key as a one-entry JSON keyset.

    Only the keyset goes to standard output (redirect it into the secret's file); a
    reminder that it is a secret goes to standard error. To rotate, put the new entry first
    in BASTION_JWT_KEYS and keep the old one after it until the longest-lived token it
    signed (the refresh lifetime) has expired.
    """
    # A key written nowhere (stdout closed, disk full) is an error, not exit 0 or a traceback.
    write_output(json.dumps([new_key_entry(kid)]), what="the keyset")
    click.echo(KEY_NOTE, err=True)
