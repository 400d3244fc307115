"""Attacks on the API's authentication beyond the JWT suite (``test_jwt``): headers PyJWT
could honour, malformed, oversized and non-canonical tokens, credentials in the wrong slot,
and refresh tokens of a sign-in that has since ended. Each is a 401 (or the revocation
endpoint's 204), never a 200 and never a 500."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from bastion.admin.services import set_disabled
from bastion.api import tokens
from tests.api.conftest import Api, forged_claims
from tests.factories import UserFactory

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_signed(header: dict[str, Any] | str, payload: dict[str, Any] | str) -> str:
    """A token of exactly this header and payload JSON, signed with our key (PyJWT's
    encoder would refuse some of these headers)."""
    head = header if isinstance(header, str) else json.dumps(header)
    body = payload if isinstance(payload, str) else json.dumps(payload)
    signing_input = f"{_b64(head.encode())}.{_b64(body.encode())}"
    signature = tokens.keyset().signing_key.sign(signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


def _ours(**header: Any) -> dict[str, Any]:
    return {"alg": "EdDSA", "kid": tokens.keyset().active_kid, **header}


def _me(api: Api, token: str) -> int:
    return int(api.call("GET", "/me", token).status_code)


def _refresh(api: Api, token: str) -> int:
    return int(api.call("POST", "/auth/refresh", json={"refresh_token": token}).status_code)


def _revoke(api: Api, token: str) -> int:
    return int(api.call("POST", "/auth/revoke", json={"token": token}).status_code)


@pytest.fixture
def user_id(make_user: Callable[..., Any]) -> int:
    return int(make_user("viewer").id)


def test_the_forging_helper_makes_tokens_we_accept(api: Api, user_id: int) -> None:
    """So that every refusal below is the attack's doing, not the helper's."""
    assert _me(api, _raw_signed(_ours(), forged_claims(user_id))) == 200


@pytest.mark.asvs("V9.1.1")
@pytest.mark.parametrize("crit", [["exp"], ["x-ext"], ["b64"], "x-ext", [], [1]])
def test_a_critical_header_extension_is_refused(api: Api, user_id: int, crit: Any) -> None:
    """RFC 7515 4.1.11: a token naming an extension the verifier does not implement as
    critical must be refused, even when signed with our key."""
    assert _me(api, _raw_signed(_ours(crit=crit, **{"x-ext": 1}), forged_claims(user_id))) == 401


@pytest.mark.asvs("V9.1.3")
@pytest.mark.parametrize(
    "kid",
    ["../../../../etc/passwd", "/dev/zero", "k" * 3000, 1, ["dev-1"], {"kid": "dev-1"}, None, ""],
    ids=lambda k: repr(k)[:16],
)
def test_a_kid_naming_no_key_of_ours_is_refused(api: Api, user_id: int, kid: Any) -> None:
    """A ``kid`` is only ever a key of the configured keyset, never a path or a structure."""
    assert _me(api, _raw_signed(_ours(kid=kid), forged_claims(user_id))) == 401


@pytest.mark.asvs("V9.1.2")
def test_duplicate_header_keys_are_read_once_the_same_way(api: Api, user_id: int) -> None:
    """Bastion's own header check and PyJWT read the header with one parser (the last
    duplicate wins in both): an ``alg`` cannot be "none" to one and EdDSA to the other."""
    kid = tokens.keyset().active_kid
    none_last = f'{{"alg":"EdDSA","kid":"{kid}","alg":"none"}}'
    assert _me(api, _raw_signed(none_last, forged_claims(user_id))) == 401
    theirs_last = f'{{"alg":"EdDSA","kid":"{kid}","kid":"theirs"}}'
    assert _me(api, _raw_signed(theirs_last, forged_claims(user_id))) == 401


@pytest.mark.asvs("V9.2.2")
def test_a_duplicate_typ_in_the_payload_is_read_as_its_last(api: Api, user_id: int) -> None:
    payload = json.dumps(forged_claims(user_id))[:-1] + ', "typ": "refresh"}'
    assert _me(api, _raw_signed(_ours(), payload)) == 401


def _with_url_safe_characters(user_id: int) -> list[str]:
    """The segments of a token of ours whose header and payload encodings hold '-' or '_'
    (a filler claim grows until both do), so that the standard alphabet changes them."""
    for size in range(64):
        filler = "??~~" * 4 + "~" * size
        segments = _raw_signed(_ours(pad=filler), forged_claims(user_id, pad=filler)).split(".")
        if all(set(seg) & {"-", "_"} for seg in segments[:2]):
            return segments
    raise AssertionError("no filler gave both segments a '-' or '_'")


@pytest.mark.asvs("V9.1.1")
@pytest.mark.parametrize("part", [0, 1, 2])
def test_non_canonical_base64_is_refused(api: Api, user_id: int, part: int) -> None:
    """Another spelling of the same bytes is not the token we signed: ``+/`` for ``-_`` in
    the header or payload, or the signature's unused low bits set (64 bytes leave four)."""
    segments = _with_url_safe_characters(user_id)
    assert _me(api, ".".join(segments)) == 200
    segment = segments[part]
    if part < 2:
        segments[part] = segment.replace("-", "+").replace("_", "/")
    else:
        segments[part] = segment[:-1] + B64URL[B64URL.index(segment[-1]) ^ 1]
    assert segments[part] != segment
    forged = ".".join(segments)
    assert _me(api, forged) == 401
    assert _refresh(api, forged) == 401


def test_a_deeply_nested_header_is_a_401_not_a_500(api: Api) -> None:
    """JSON nesting past the parser's recursion limit, before any signature check."""
    header = b'{"a":' + b"[" * 1400 + b"]" * 1400 + b"}"
    token = f"{_b64(header)}.e30.AAAA"
    assert len(token) <= tokens.MAX_TOKEN_CHARS
    assert _me(api, token) == 401
    assert _refresh(api, token) == 401
    assert _revoke(api, token) == 204


@pytest.mark.parametrize("size", [tokens.MAX_TOKEN_CHARS + 1, 60_000])
def test_very_long_tokens_are_a_4xx(api: Api, size: int) -> None:
    token = "e" * size
    assert _me(api, token) in (401, 431)
    assert _me(api, "bst_" + token) in (401, 431)
    assert _refresh(api, token) in (400, 413, 422)
    assert _revoke(api, token) in (400, 413, 422)


@pytest.mark.parametrize(
    "token", ["\ud800", "e30.\ud800.e30", "bst_\udfff", "\x00", "e30.e\x00.e30", "bst_\x00"]
)
def test_unencodable_or_nul_tokens_in_a_body_are_a_4xx(api: Api, token: str) -> None:
    refreshed = api.call(
        "POST",
        "/auth/refresh",
        data=json.dumps({"refresh_token": token}),
        content_type="application/json",
    )
    assert refreshed.status_code in (400, 401, 422)
    revoked = api.call(
        "POST", "/auth/revoke", data=json.dumps({"token": token}), content_type="application/json"
    )
    assert revoked.status_code in (204, 400, 422)


@pytest.mark.parametrize("value", ["bst_\u00ff\u00fe", "e\u00ff.e30.e30"])
def test_latin1_bearer_tokens_are_a_401(api: Api, value: str) -> None:
    assert api.call("GET", "/me", headers={"Authorization": f"Bearer {value}"}).status_code == 401


@pytest.mark.asvs("V9.2.1")
@pytest.mark.parametrize(
    "override",
    [
        {"jti": "j" * 300},  # beyond the revocation table's key
        {"jti": "a\x00b"},  # PostgreSQL text holds no NUL
        {"fam": "f" * 300},
        {"fam": "a\x00b"},
        {"jti": ""},
        {"iat": float("nan")},
        {"exp": float("inf")},
        {"nbf": True},
        {"iat": "1"},
        {"iat": time.time() + 10 * 365 * 86400},  # would outlive every password change
    ],
    ids=lambda o: "-".join(f"{k}={str(v)[:8]!r}" for k, v in o.items()),
)
def test_ids_and_times_no_token_of_ours_has_are_refused_not_a_500(
    api: Api, user_id: int, override: dict[str, Any]
) -> None:
    """Only a leaked or test key could sign these; every endpoint still answers as for any
    other invalid token."""
    access = _raw_signed(_ours(), forged_claims(user_id, **override))
    assert _me(api, access) == 401
    assert _revoke(api, access) == 204
    refresh = _raw_signed(
        _ours(), forged_claims(user_id, aud="bastion-api:refresh", typ="refresh", **override)
    )
    assert _refresh(api, refresh) == 401
    assert _revoke(api, refresh) == 204


@pytest.mark.asvs("V9.2.2")
def test_personal_and_jwt_tokens_only_work_in_their_own_slot(api: Api, user_id: int) -> None:
    from bastion.extensions import db
    from bastion.models import User

    user = db.session.get(User, user_id)
    assert user is not None
    pat = api.pat_for(user, ["articles:read"])
    access = api.access_for(user)
    assert _refresh(api, pat) == 401
    assert _me(api, "bst_" + access) == 401
    assert _revoke(api, "bst_" + access) == 204
    assert _me(api, access) == 200  # the prefixed copy revoked nothing
    assert _me(api, pat[len("bst_") :]) == 401
    assert _me(api, pat) == 200


@pytest.mark.asvs("V7.4.2")
def test_a_refresh_token_of_a_disabled_account_stays_dead_once_it_is_enabled(
    api: Api, make_user: Callable[..., Any]
) -> None:
    admin, user = make_user("admin"), UserFactory()
    pair = api.tokens_for(user)
    set_disabled(admin, user, True)
    assert _refresh(api, pair["refresh_token"]) == 401
    set_disabled(admin, user, False)
    assert _refresh(api, pair["refresh_token"]) == 401
    assert _me(api, pair["access_token"]) == 401
    assert _me(api, api.tokens_for(user)["access_token"]) == 200


@pytest.mark.asvs("V7.4.1")
def test_replaying_a_refresh_token_two_rotations_late_ends_the_newest_pair(
    api: Api, user_id: int
) -> None:
    from bastion.extensions import db
    from bastion.models import User

    user = db.session.get(User, user_id)
    assert user is not None
    first = api.tokens_for(user)
    second = api.call("POST", "/auth/refresh", json={"refresh_token": first["refresh_token"]})
    third = api.call(
        "POST", "/auth/refresh", json={"refresh_token": second.get_json()["refresh_token"]}
    ).get_json()
    assert _me(api, third["access_token"]) == 200
    assert _refresh(api, first["refresh_token"]) == 401
    assert _me(api, third["access_token"]) == 401
    assert _refresh(api, third["refresh_token"]) == 401
