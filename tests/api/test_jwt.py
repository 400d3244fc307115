"""JWT attack suite: every forged, stale or misused token is a 401 with problem+json."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from flask import Flask

from bastion.api import tokens
from bastion.api.keys import new_key_entry
from bastion.extensions import db
from bastion.models import User, utcnow
from tests.api.conftest import Api, forged_claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        sig,
    )


def _join(header: dict[str, Any], payload: dict[str, Any], sig: str) -> str:
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), sig])


def _claims(user: User, **override: Any) -> dict[str, Any]:
    return forged_claims(user.id, **override)


def _signed(app: Flask, claims: dict[str, Any], kid: str | None = None) -> str:
    ks = tokens.keyset()
    return jwt.encode(
        claims, ks.signing_key, algorithm="EdDSA", headers={"kid": kid or ks.active_kid}
    )


def _assert_401(api: Api, token: str) -> None:
    resp = api.call("GET", "/me", token)
    assert resp.status_code == 401, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.fixture
def viewer(make_user: Callable[..., User]) -> User:
    return make_user("viewer")


def test_a_well_formed_token_is_accepted(api: Api, viewer: User, app: Flask) -> None:
    # The forged tokens below differ from this one in one respect each.
    assert api.call("GET", "/me", _signed(app, _claims(viewer))).status_code == 200


@pytest.mark.asvs("V9.1.1", "V9.1.2")
def test_alg_none_is_refused(api: Api, viewer: User) -> None:
    token = _join(
        {"alg": "none", "typ": "JWT", "kid": tokens.keyset().active_kid}, _claims(viewer), ""
    )
    _assert_401(api, token)


@pytest.mark.asvs("V9.1.2")
def test_hs256_signed_with_the_public_key_is_refused(api: Api, viewer: User) -> None:
    ks = tokens.keyset()
    public_pem = ks.verifying_keys[ks.active_kid].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": ks.active_kid}
    import hashlib
    import hmac

    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(viewer)).encode())}"
    )
    sig = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    _assert_401(api, f"{signing_input}.{_b64(sig)}")


@pytest.mark.asvs("V9.1.1", "V9.1.2")
def test_rs256_with_an_attacker_key_is_refused(api: Api, viewer: User) -> None:
    key = generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        _claims(viewer), key, algorithm="RS256", headers={"kid": tokens.keyset().active_kid}
    )
    _assert_401(api, token)


@pytest.mark.asvs("V9.1.1")
def test_attacker_ed25519_key_with_our_kid_is_refused(api: Api, viewer: User) -> None:
    token = jwt.encode(
        _claims(viewer),
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": tokens.keyset().active_kid},
    )
    _assert_401(api, token)


@pytest.mark.asvs("V9.1.1")
def test_stripped_signature_is_refused(api: Api, viewer: User, app: Flask) -> None:
    header, payload, _sig = _parts(_signed(app, _claims(viewer)))
    _assert_401(api, _join(header, payload, ""))


@pytest.mark.asvs("V9.1.1")
def test_altered_signature_is_refused(api: Api, viewer: User, app: Flask) -> None:
    token = _signed(app, _claims(viewer))
    head, _, sig = token.rpartition(".")
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    _assert_401(api, f"{head}.{flipped}")


@pytest.mark.asvs("V9.1.1")
def test_edited_payload_is_refused(
    api: Api, viewer: User, app: Flask, make_user: Callable[..., User]
) -> None:
    other = make_user("editor")
    header, payload, sig = _parts(_signed(app, _claims(viewer)))
    payload["sub"] = str(other.id)
    _assert_401(api, _join(header, payload, sig))


@pytest.mark.parametrize(
    "override",
    [
        {"exp": "-5s"},
        {"nbf": "+120s"},
        {"iss": "someone-else"},
        {"aud": "another-api"},
        {"aud": ["bastion-api", "another-api"]},
        {"typ": "refresh"},
        {"typ": None},
        {"jti": None},
        {"exp": None},
        {"nbf": None},
        {"iat": None},
        {"iss": None},
        {"aud": None},
        {"sub": None},
        {"fam": None},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
@pytest.mark.asvs("V9.2.1", "V9.2.2", "V9.2.3")
def test_bad_or_missing_claims_are_refused(
    api: Api, viewer: User, app: Flask, override: dict[str, Any]
) -> None:
    # Times are offsets from now, resolved when the test runs (not at collection).
    resolved = {
        k: int(time.time()) + int(v[:-1]) if isinstance(v, str) and v.endswith("s") else v
        for k, v in override.items()
    }
    _assert_401(api, _signed(app, _claims(viewer, **resolved)))


@pytest.mark.asvs("V9.1.3")
def test_unknown_kid_is_refused(api: Api, viewer: User, app: Flask) -> None:
    _assert_401(api, _signed(app, _claims(viewer), kid="not-ours"))


@pytest.mark.asvs("V9.1.3")
@pytest.mark.parametrize("kid", ["ours", "theirs", None])
def test_keys_named_in_the_token_header_are_never_used(
    api: Api, viewer: User, kid: str | None
) -> None:
    """An attacker signs with a key of their own and points at it from the header (an
    embedded ``jwk``, a ``jku`` or ``x5u`` URL): only our configured keyset verifies."""
    attacker = Ed25519PrivateKey.generate()
    public_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key()))
    headers: dict[str, Any] = {
        "jwk": {**public_jwk, "kid": "theirs"},
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
    }
    if kid is not None:
        headers["kid"] = tokens.keyset().active_kid if kid == "ours" else "theirs"
    token = jwt.encode(_claims(viewer), attacker, algorithm="EdDSA", headers=headers)
    assert jwt.get_unverified_header(token)["jwk"]["x"] == public_jwk["x"]
    _assert_401(api, token)


@pytest.mark.asvs("V9.2.2")
def test_refresh_token_is_not_an_access_token(api: Api, viewer: User) -> None:
    pair = api.tokens_for(viewer)
    _assert_401(api, pair["refresh_token"])


@pytest.mark.asvs("V9.2.2")
def test_access_token_is_not_a_refresh_token(api: Api, viewer: User) -> None:
    pair = api.tokens_for(viewer)
    resp = api.call("POST", "/auth/refresh", json={"refresh_token": pair["access_token"]})
    assert resp.status_code == 401


@pytest.mark.asvs("V7.4.1")
def test_revoked_access_token_is_refused(api: Api, viewer: User) -> None:
    access = api.tokens_for(viewer)["access_token"]
    assert api.call("GET", "/me", access).status_code == 200
    assert api.call("POST", "/auth/revoke", json={"token": access}).status_code == 204
    _assert_401(api, access)


@pytest.mark.asvs("V7.4.2")
def test_token_of_a_disabled_user_is_refused(api: Api, viewer: User) -> None:
    access = api.tokens_for(viewer)["access_token"]
    viewer.disabled_at = utcnow()
    db.session.commit()
    _assert_401(api, access)


@pytest.mark.asvs("V7.4.3")
def test_tokens_issued_before_a_password_change_are_refused(api: Api, viewer: User) -> None:
    pair = api.tokens_for(viewer)
    viewer.password_changed_at = utcnow()
    db.session.commit()
    _assert_401(api, pair["access_token"])
    assert (
        api.call("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
        == 401
    )
    # A sign-in after the change works at once.
    assert api.call("GET", "/me", api.tokens_for(viewer)["access_token"]).status_code == 200


def test_access_tokens_last_fifteen_minutes(api: Api, viewer: User) -> None:
    pair = api.tokens_for(viewer)
    assert pair["expires_in"] == 900
    _h, payload, _s = _parts(pair["access_token"])
    assert payload["exp"] - int(payload["iat"]) == 900
    assert {"iss", "aud", "sub", "jti", "typ", "iat", "nbf", "exp"} <= set(payload)


@pytest.mark.asvs("V9.1.3")
def test_key_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(
    make_app: Callable[..., Flask],
) -> None:
    old = new_key_entry("old")
    app = make_app(JWT_KEYS=json.dumps([old]))
    from tests.factories import UserFactory

    with app.app_context():
        user = UserFactory()
        client = app.test_client()
        api = Api(client)
        old_access = api.tokens_for(user)["access_token"]
        # Rotate: a new active key first, the old one kept (public part is enough).
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        old_public = (
            load_pem_private_key(old["pem"].encode(), None)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        app.config["JWT_KEYS"] = json.dumps(
            [new_key_entry("new"), {"kid": "old", "pem": old_public}]
        )
        app.extensions.pop("bastion.jwt_keys", None)
        assert api.call("GET", "/me", old_access).status_code == 200
        new_access = api.tokens_for(user)["access_token"]
        assert jwt.get_unverified_header(new_access)["kid"] == "new"
        # Once the old key is dropped, its tokens stop working.
        app.config["JWT_KEYS"] = json.dumps([new_key_entry("newer")])
        app.extensions.pop("bastion.jwt_keys", None)
        assert api.call("GET", "/me", old_access).status_code == 401
        db.session.remove()


@pytest.mark.asvs("V9.2.1")
def test_expiry_is_checked_without_leeway(api: Api, viewer: User, app: Flask) -> None:
    claims = _claims(viewer, exp=int(time.time()) - 1, iat=int(time.time()) - 901)
    _assert_401(api, _signed(app, claims))
    assert timedelta(minutes=app.config["JWT_ACCESS_MINUTES"]) == timedelta(minutes=15)


# Arabic-Indic one, superscript two, fullwidth one: str.isdigit() accepts all three.
@pytest.mark.parametrize("sub", ["\u0661", "\u00b2", "\uff11"])
def test_revoking_a_token_names_no_owner_for_a_non_ascii_subject(
    api: Api, viewer: User, app: Flask, sub: str
) -> None:
    """Only ASCII digits name the owner in the audit record (``int()`` reads some of these
    as ids and fails on others)."""
    token = _signed(app, _claims(viewer, sub=sub))
    assert tokens.revoke_token(token) is None


@pytest.mark.asvs("V9.2.1")
@pytest.mark.parametrize(
    "override",
    [
        {"sub": "99999999999999999999"},  # beyond the id column
        {"sub": "0"},
        {"sub": "-1"},
        {"sub": " 1"},
        {"sub": "\u0661"},  # int() reads Arabic-Indic one as user 1
        {"exp": 1e300},  # no date holds it
        {"exp": "9999999999"},  # PyJWT takes a numeric string as a time
        {"iat": 1e300},
        {"nbf": -1e300},
    ],
    ids=lambda o: "-".join(f"{k}={v!r}" for k, v in o.items()),
)
def test_a_token_signed_with_our_key_but_impossible_claims_is_refused_not_a_500(
    api: Api, viewer: User, app: Flask, override: dict[str, Any]
) -> None:
    """Only a leaked or test key could sign these; they still get a 401 (and the revocation
    endpoint its usual 204), never a server error further on."""
    token = _signed(app, _claims(viewer, **override))
    _assert_401(api, token)
    assert api.call("POST", "/auth/revoke", json={"token": token}).status_code == 204
