"""Password rules, token entropy, token purposes and the crypto behind them (V6, V7, V9, V11)."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask
from flask.testing import FlaskClient

from bastion.auth import services
from bastion.config import BaseConfig
from bastion.extensions import db
from bastion.models import User, utcnow
from bastion.security.tokens import new_token, token_hash
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import outbox, sign_in, user  # noqa: F401 - fixtures
from tests.support.accounts import Outbox, post_form

ROOT = Path(__file__).resolve().parents[2]
BREACHED = "1qaz2wsx3edc4rfv"  # 16 characters, in bastion/data/common-passwords.txt.gz


# V6.2.5 ------------------------------------------------------------------------------
@pytest.mark.asvs("V6.2.5")
@pytest.mark.parametrize("password", [
    "purple elephants dance quietly",  # all lower case, letters and spaces
    "SHOUTINGWORDSONLYHERE",           # all upper case
    "839201746583920174",              # digits only
    "ünïcödé wörds ånd måre",          # any Unicode
])
def test_no_composition_rules(app: Flask, password: str) -> None:
    assert services.password_problem(password) is None


# V6.2.8 ------------------------------------------------------------------------------
@pytest.mark.asvs("V6.2.8")
def test_password_is_checked_exactly_as_typed(app: Flask) -> None:
    typed = "  Spaced Passphrase With Capitals  "
    u = services.create_user("exact", "exact@example.org", typed, confirmed=True)
    assert services.authenticate("exact", typed) == u
    for variant in (typed.strip(), typed.lower(), typed.upper(), typed[:-1], typed + " "):
        assert services.authenticate("exact", variant) is None, repr(variant)


@pytest.mark.asvs("V6.2.8", "V6.2.9")
def test_long_passwords_are_never_truncated(app: Flask) -> None:
    longest = "a quiet river " * 9 + "ends"  # 130 characters
    longest = longest[: services.MAX_PASSWORD]
    u = services.create_user("longpw", "longpw@example.org", longest, confirmed=True)
    assert services.authenticate("longpw", longest) == u
    assert services.authenticate("longpw", longest[:-1]) is None
    assert services.authenticate("longpw", longest[:72]) is None
    # One character more is refused with a message, not silently cut.
    assert "at most" in (services.password_problem(longest + "x") or "")


# V6.2.10 -----------------------------------------------------------------------------
@pytest.mark.asvs("V6.2.10")
def test_no_password_expiry_exists(client: FlaskClient, app: Flask) -> None:
    names = [k for k in dir(BaseConfig) if k.isupper()]
    assert not [k for k in names if "PASSWORD" in k and re.search("EXPIR|MAX_AGE|ROTAT|DAYS", k)]
    UserFactory(username="oldpw", email="oldpw@example.org",
                password_changed_at=utcnow() - timedelta(days=5 * 365))
    resp = sign_in(client, "oldpw")
    assert resp.status_code == 302
    assert "password" not in resp.headers["Location"]
    assert client.get("/account").status_code == 200


# V6.2.12 -----------------------------------------------------------------------------
@pytest.mark.asvs("V6.2.12")
def test_breached_password_refused_at_registration(client: FlaskClient, app: Flask) -> None:
    resp = post_form(client, "/auth/register", {"username": "newbie", "email": "newbie@example.org",
                                                "password": BREACHED, "confirm": BREACHED})
    assert 400 <= resp.status_code < 500
    assert "breach" in resp.get_data(as_text=True)
    assert db.session.query(User).count() == 0


@pytest.mark.asvs("V6.2.12")
def test_breached_password_refused_at_password_change(client: FlaskClient, user: User) -> None:  # noqa: F811
    sign_in(client, "alice")
    before = user.password_hash
    resp = post_form(client, "/account", {"current": PASSWORD, "password": BREACHED,
                                          "confirm": BREACHED}, action="/account/password")
    assert resp.status_code == 422
    assert "breach" in resp.get_data(as_text=True)
    db.session.refresh(user)
    assert user.password_hash == before


@pytest.mark.asvs("V6.2.12")
def test_breached_password_refused_at_reset(
    client: FlaskClient, user: User, outbox: Outbox  # noqa: F811
) -> None:
    post_form(client, "/auth/reset", {"email": "alice@example.org"})
    link = outbox.link("alice@example.org", "/auth/reset/")
    before = user.password_hash
    resp = post_form(client, link, {"password": BREACHED, "confirm": BREACHED})
    assert resp.status_code != 302  # the form again, with the reason; nobody is signed in
    assert "breach" in resp.get_data(as_text=True)
    db.session.refresh(user)
    assert user.password_hash == before


# V6.5.4 ------------------------------------------------------------------------------
@pytest.mark.asvs("V6.5.4", "V6.5.3")
def test_recovery_codes_carry_at_least_20_bits(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.auth import twofactor

    asked: list[int] = []
    real = secrets.token_bytes

    def counting(n: int) -> bytes:
        asked.append(n)
        return real(n)

    monkeypatch.setattr(twofactor.secrets, "token_bytes", counting)
    codes = {twofactor._new_code() for _ in range(500)}
    assert len(codes) == 500
    bits = min(asked) * 8
    assert bits >= 20 and bits == 120
    # The shown code holds all of those bits: 24 base32 symbols, 5 bits each.
    symbols = {len(twofactor._normalise_code(c)) for c in codes}
    assert symbols == {24} and 24 * math.log2(32) >= bits


# V6.5.3 ------------------------------------------------------------------------------
@pytest.mark.asvs("V6.5.3")
def test_totp_seeds_and_recovery_codes_do_not_follow_a_seeded_prng(
    app: Flask, user: User  # noqa: F811
) -> None:
    """An attacker who can seed or replay ``random`` (the Mersenne Twister) gets nothing:
    the same seed before two enrolments still gives two unrelated secrets and codes."""
    import random

    from bastion.auth import twofactor

    drawn = []
    for _ in range(2):
        random.seed(1234)
        secret = twofactor.pending_secret(user, renew=True)
        random.seed(1234)
        code = twofactor._new_code()
        drawn.append((secret, code))
    (secret_a, code_a), (secret_b, code_b) = drawn
    assert secret_a and secret_b and secret_a != secret_b
    assert code_a != code_b
    assert len(base64.b32decode(secret_a)) * 8 >= 160  # RFC 4226's recommended seed length


# V7.2.3 ------------------------------------------------------------------------------
def _bits_of_urlsafe(token: str) -> int:
    return len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8


@pytest.mark.asvs("V7.2.3", "V7.2.2")
def test_session_ids_are_256_bit_csprng_values(client: FlaskClient, user: User, app: Flask) -> None:  # noqa: F811
    sids = set()
    for _ in range(3):
        client._cookies.clear()  # type: ignore[attr-defined]
        sign_in(client, "alice")
        cookie = client.get_cookie("__Host-session")
        assert cookie is not None
        data: dict[str, Any] = app.session_interface.get_signing_serializer(app).loads(cookie.value)  # type: ignore[attr-defined]
        sids.add(data["sid"])
    assert len(sids) == 3
    assert all(_bits_of_urlsafe(s) >= 128 for s in sids)
    many = {new_token(32) for _ in range(5000)}
    assert len(many) == 5000
    # The generators draw from the secrets module (the OS CSPRNG), never from random.
    for module in ("security/tokens.py", "api/tokens.py", "auth/twofactor.py"):
        source = (ROOT / "bastion" / module).read_text(encoding="utf-8")
        assert "secrets." in source and "import random" not in source, module


@pytest.mark.asvs("V7.2.3")
def test_refresh_jti_and_personal_tokens_have_128_bits_or_more(client: FlaskClient, app: Flask) -> None:
    from bastion.api import pats

    u = UserFactory(username="tok", role_name="editor")
    client._cookies.clear()  # type: ignore[attr-defined]
    jtis = set()
    for _ in range(3):
        body = client.post("/api/v1/auth/token", json={"username": "tok", "password": PASSWORD}).get_json()
        claims = jwt.decode(body["refresh_token"], options={"verify_signature": False})
        jtis.add(claims["jti"])
    assert len(jtis) == 3 and all(len(bytes.fromhex(j)) * 8 >= 128 for j in jtis)
    created = pats.create(u, name="ci", scopes=["articles:read"])
    secret = created.secret
    assert secret.startswith("bst_") and _bits_of_urlsafe(secret[4:]) >= 128


# V9.2.4 ------------------------------------------------------------------------------
@pytest.mark.asvs("V9.2.4")
@pytest.mark.parametrize(("made_for", "read_as"), [
    ("confirm", "reset"), ("reset", "confirm"), ("email_change", "reset"), ("reset", "email_change"),
])
def test_a_link_for_one_purpose_is_refused_for_another(
    app: Flask, user: User, made_for: str, read_as: str  # noqa: F811
) -> None:
    from bastion.auth import links

    with app.test_request_context():
        token = links.make_token(made_for, user, new="x@example.org")
        assert links.read_token(made_for, token, 3600) is not None
        assert links.read_token(read_as, token, 3600) is None


@pytest.mark.asvs("V9.2.4")
def test_jwt_audience_and_type_are_checked(client: FlaskClient, app: Flask) -> None:
    from bastion.api.tokens import keyset

    UserFactory(username="aud", role_name="viewer")
    client._cookies.clear()  # type: ignore[attr-defined]
    pair = client.post("/api/v1/auth/token", json={"username": "aud", "password": PASSWORD}).get_json()
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert claims["aud"] == app.config["JWT_AUDIENCE"] and claims["typ"] == "access"
    # A refresh token is no access token, and vice versa.
    auth = {"Authorization": f"Bearer {pair['refresh_token']}"}
    assert client.get("/api/v1/me", headers=auth).status_code == 401
    swapped = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]})
    assert swapped.status_code in (400, 401)
    # The same key signing for another audience does not get in.
    ks = keyset()
    foreign = jwt.encode({**claims, "aud": "another-service"}, ks.signing_key, algorithm="EdDSA",
                         headers={"kid": ks.active_kid})
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {foreign}"}).status_code == 401


# V11.3.3 -----------------------------------------------------------------------------
@pytest.mark.asvs("V11.3.3")
def test_tampered_totp_ciphertext_is_refused(app: Flask, user: User) -> None:  # noqa: F811
    from bastion.auth import twofactor

    secret = twofactor.pending_secret(user)
    assert twofactor._secret_of(user) == secret
    raw = bytearray(base64.urlsafe_b64decode(user.totp_secret))
    raw[30] ^= 0x01  # one bit inside the AES-CBC ciphertext
    user.totp_secret = base64.urlsafe_b64encode(bytes(raw)).decode()
    db.session.commit()
    assert twofactor._secret_of(user) is None
    assert twofactor.verify_totp(user, "123456") is False


# V11.4.3 -----------------------------------------------------------------------------
@pytest.mark.asvs("V11.4.3")
def test_token_hashes_are_sha256_and_no_weak_hash_is_used() -> None:
    token = new_token()
    assert token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert len(token_hash(token)) * 4 == 256
    weak = re.compile(r"\b(md5|sha1|sha224)\b|MD5\(|SHA1\(", re.I)
    for base in ("bastion", "flask_deploy_check"):
        for path in (ROOT / base).rglob("*.py"):
            assert not weak.search(path.read_text(encoding="utf-8")), path


# V11.6.1 -----------------------------------------------------------------------------
def _pem(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.asvs("V11.6.1", "V9.1.2")
@pytest.mark.parametrize("make", [
    lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 - the weak key under test
    lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    lambda: _pem(ec.generate_private_key(ec.SECP256R1())),
    lambda: "a-shared-hmac-secret-for-HS256",
], ids=["rsa1024", "rsa2048", "p256", "hs-secret"])
def test_keyset_loader_accepts_only_ed25519(make: Any) -> None:
    import json

    from bastion.api.keys import KeysetError, new_key_entry, parse_keyset

    with pytest.raises(KeysetError):
        parse_keyset(json.dumps([{"kid": "k1", "pem": make()}]))
    good = parse_keyset(json.dumps([new_key_entry("k1")]))
    assert good.active_kid == "k1"
