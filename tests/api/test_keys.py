"""Signing keys: separate from SECRET_KEY, validated at start-up, private on disk."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from bastion.api.keys import (
    KeysetError,
    instance_keyset,
    keyset_problem,
    new_key_entry,
    parse_keyset,
)
from bastion.config import validate


def _ec_pem() -> str:
    key = generate_private_key(SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "non-empty"),
        (json.dumps([{"pem": "x"}]), "kid"),
        (json.dumps([{"kid": "a", "pem": "garbage"}]), "readable PEM"),
        (json.dumps([{"kid": "a", "pem": "PLACEHOLDER_EC"}]), "Ed25519"),
        (json.dumps([new_key_entry("a"), new_key_entry("a")]), "twice"),
    ],
)
def test_bad_keysets_are_refused_with_a_clear_message(raw: str, message: str) -> None:
    raw = raw.replace("PLACEHOLDER_EC", _ec_pem().replace("\n", "\\n"))
    with pytest.raises(KeysetError, match=message):
        parse_keyset(raw)
    assert keyset_problem(raw)


def test_first_key_must_be_able_to_sign() -> None:
    private = serialization.load_pem_private_key(new_key_entry()["pem"].encode(), None)
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(KeysetError, match="private key"):
        parse_keyset(json.dumps([{"kid": "old", "pem": public}]))
    ks = parse_keyset(json.dumps([new_key_entry("new"), {"kid": "old", "pem": public}]))
    assert ks.active_kid == "new"
    assert set(ks.verifying_keys) == {"new", "old"}


def test_production_needs_a_usable_keyset() -> None:
    base = {
        "ENV_NAME": "production",
        "SQLALCHEMY_DATABASE_URI": "postgresql://x",
        "RATELIMIT_STORAGE_URI": "redis://",
    }
    assert any("BASTION_JWT_KEYS" in p for p in validate(base))
    assert any("not valid JSON" in p for p in validate({**base, "JWT_KEYS": "{"}))
    assert not any(
        "JWT" in p for p in validate({**base, "JWT_KEYS": json.dumps([new_key_entry()])})
    )


def test_development_keyset_is_generated_once_and_private(tmp_path: Path) -> None:
    first = instance_keyset(tmp_path)
    assert instance_keyset(tmp_path) == first
    mode = stat.S_IMODE((tmp_path / "jwt_keys.json").stat().st_mode)
    assert mode == 0o600
    assert parse_keyset(first).active_kid == "dev-1"
    assert list(tmp_path.iterdir()) == [tmp_path / "jwt_keys.json"]


def test_cli_prints_a_usable_keyset(runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=["api", "new-key", "--kid", "2026-11"])
    assert result.exit_code == 0, result.output
    assert parse_keyset(result.stdout).active_kid == "2026-11"


def test_cli_new_key_keeps_the_secret_on_stdout_and_says_it_is_one(  # type: ignore[no-untyped-def]
    runner,
) -> None:
    """Redirected into the secret's file, standard output is the keyset and nothing else;
    on a terminal, the operator is told it is a private key (it was printed without a word,
    and its group had no help in ``flask --help``)."""
    result = runner.invoke(args=["api", "new-key"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
    parse_keyset(result.stdout)
    assert "BEGIN PRIVATE KEY" not in result.stderr
    assert "private key" in result.stderr and "secret" in result.stderr
    listing = runner.invoke(args=["--help"])
    assert re.search(r"^ +api +API signing keys\.$", listing.output, re.MULTILINE)


def test_keyset_set_in_the_environment_is_read(
    make_app, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """Flask JSON-decodes BASTION_* environment values; the keyset still reads as one."""
    monkeypatch.setenv("BASTION_JWT_KEYS", json.dumps([new_key_entry("from-env")]))
    app = make_app(READ_ENV=True)
    assert keyset_problem(app.config["JWT_KEYS"]) is None
    with app.app_context():
        from bastion.api import tokens

        assert tokens.keyset().active_kid == "from-env"
    problems = validate({
        "ENV_NAME": "production", "SQLALCHEMY_DATABASE_URI": "postgresql://x",
        "RATELIMIT_STORAGE_URI": "redis://", "JWT_KEYS": [{"kid": ""}],
    })
    assert any("non-empty 'kid'" in p for p in problems)  # a bad list is still refused


@pytest.mark.asvs("V13.3.1")
def test_the_first_production_key_can_be_made_where_the_app_refuses_to_start() -> None:
    """Production without keys refuses to start, so `flask ... api new-key` cannot run there;
    the refusal names `python -m bastion.api.keys`, which needs no app, and its output is a
    keyset production accepts."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["BASTION_ENV"] = "production"
    done = subprocess.run([sys.executable, "-m", "bastion.api.keys"], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stderr == ""
    keyset = parse_keyset(done.stdout)
    assert len(keyset.verifying_keys) == 1
    base = {
        "ENV_NAME": "production",
        "SQLALCHEMY_DATABASE_URI": "postgresql://x",
        "RATELIMIT_STORAGE_URI": "redis://",
    }
    problems = validate(base)
    assert any("python -m bastion.api.keys" in p for p in problems)
    assert not any("JWT" in p for p in validate({**base, "JWT_KEYS": done.stdout}))
