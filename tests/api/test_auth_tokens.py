"""Sign-in, refresh rotation with reuse detection, revocation; same rules as the web login."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import AuditEvent, RefreshToken, User
from bastion.observability import counters
from bastion.observability.logging import JSONFormatter
from tests.api.conftest import Api, otp_for
from tests.factories import PASSWORD


def _events(name: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


@pytest.mark.asvs("V6.3.1", "V16.3.1", "V16.5.1")
def test_wrong_password_and_unknown_user_get_the_same_answer(
    api: Api, make_user: Callable[..., User]
) -> None:
    user = make_user()
    wrong = api.call("POST", "/auth/token", json={"username": user.username, "password": "x" * 20})
    unknown = api.call("POST", "/auth/token", json={"username": "nobody", "password": "x" * 20})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json()["detail"] == unknown.get_json()["detail"]
    assert len(_events("login.failure")) == 2


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_failed_sign_ins_are_throttled_with_retry_after(
    api: Api, make_user: Callable[..., User]
) -> None:
    user = make_user()
    for _ in range(5):
        resp = api.call(
            "POST", "/auth/token", json={"username": user.username, "password": "x" * 20}
        )
        assert resp.status_code == 401
    # Even the right password now waits: guessing cannot continue.
    resp = api.call("POST", "/auth/token", json={"username": user.username, "password": PASSWORD})
    assert resp.status_code == 429
    assert resp.mimetype == "application/problem+json"
    assert int(resp.headers["Retry-After"]) > 0
    assert _events("login.throttled")


@pytest.mark.asvs("V16.3.1")
def test_a_throttled_api_sign_in_is_counted_once(
    api: Api, make_user: Callable[..., User]
) -> None:
    seen: list[str] = []
    counters.add_sink(lambda name, labels: seen.append(name))
    user = make_user()
    for _ in range(5):
        api.call("POST", "/auth/token", json={"username": user.username, "password": "x" * 20})
    seen.clear()
    resp = api.call("POST", "/auth/token", json={"username": user.username, "password": PASSWORD})
    assert resp.status_code == 429
    assert seen.count("login_throttled") == 1


@pytest.mark.asvs("V2.4.1")
def test_token_endpoint_is_rate_limited_per_client(make_app: Callable[..., Flask]) -> None:
    seen: list[str] = []
    counters.add_sink(lambda name, labels: seen.append(name))
    app = make_app(API_TOKEN_RATE_LIMIT="2 per minute")
    api = Api(app.test_client())
    body = {"username": "nobody", "password": "x" * 20}
    statuses = [api.call("POST", "/auth/token", json=body).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert seen.count("login_throttled") == 1  # the dashboards see API sign-in limits too
    last = api.call("POST", "/auth/refresh", json={"refresh_token": "x"})
    assert last.status_code == 429  # the sign-in endpoints share one budget per client
    assert last.mimetype == "application/problem+json"
    assert int(last.headers["Retry-After"]) > 0


@pytest.mark.asvs("V6.3.3", "V6.5.1")
def test_two_factor_is_enforced_and_codes_cannot_be_replayed(
    api: Api, make_user: Callable[..., User]
) -> None:
    admin = make_user("admin")  # admins have TOTP in these tests (and the role requires it)
    no_otp = api.call(
        "POST", "/auth/token", json={"username": admin.username, "password": PASSWORD}
    )
    assert no_otp.status_code == 401
    assert no_otp.get_json()["otp_required"] is True
    bad = api.call(
        "POST",
        "/auth/token",
        json={"username": admin.username, "password": PASSWORD, "otp": "000000"},
    )
    assert bad.status_code == 401
    code = otp_for(admin)
    ok = api.call(
        "POST", "/auth/token", json={"username": admin.username, "password": PASSWORD, "otp": code}
    )
    assert ok.status_code == 200
    replay = api.call(
        "POST", "/auth/token", json={"username": admin.username, "password": PASSWORD, "otp": code}
    )
    assert replay.status_code == 401
    assert _events("login.2fa_failure")


@pytest.mark.asvs("V6.5.1")
def test_a_recovery_code_signs_in_once(api: Api, make_user: Callable[..., User]) -> None:
    admin = make_user("admin")
    code = admin._test_recovery_codes[0]
    body = {"username": admin.username, "password": PASSWORD, "otp": code}
    assert api.call("POST", "/auth/token", json=body).status_code == 200
    again = api.call("POST", "/auth/token", json=body)
    assert again.status_code == 401
    assert "one-time code" in again.get_json()["detail"]


@pytest.mark.asvs("V11.3.2")
def test_the_api_reads_the_encrypted_secret_the_account_page_enrolled(
    api: Api, make_user: Callable[..., User]
) -> None:
    admin = make_user("admin")
    assert admin.totp_secret != admin._test_totp_secret  # stored encrypted, not as base32
    assert api.tokens_for(admin, otp=otp_for(admin))["access_token"]


@pytest.mark.asvs("V6.3.1")
def test_web_and_api_failures_share_one_throttle(
    api: Api, make_user: Callable[..., User]
) -> None:
    from tests.support.auth import csrf_token

    user = make_user()
    for _ in range(5):
        token = csrf_token(api.client, "/auth/login")
        api.client.post(
            "/auth/login",
            data={"username": user.username, "password": "x" * 20, "csrf_token": token},
        )
    seen: list[str] = []
    counters.add_sink(lambda name, labels: seen.append(name))
    token = csrf_token(api.client, "/auth/login")
    web = api.client.post(
        "/auth/login", data={"username": user.username, "password": PASSWORD, "csrf_token": token}
    )
    assert web.status_code == 429
    assert seen.count("login_throttled") == 1  # counted once, by the metrics hook
    api.client._cookies.clear()  # type: ignore[attr-defined]
    resp = api.call("POST", "/auth/token", json={"username": user.username, "password": PASSWORD})
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1


@pytest.mark.asvs("V6.3.3")
def test_roles_that_require_2fa_cannot_sign_in_without_it(
    api: Api, make_user: Callable[..., User]
) -> None:
    from tests.factories import UserFactory

    admin = UserFactory(role_name="admin", two_factor=False)  # no TOTP enrolled
    resp = api.call("POST", "/auth/token", json={"username": admin.username, "password": PASSWORD})
    assert resp.status_code == 403


def test_successful_sign_in_is_audited(api: Api, make_user: Callable[..., User]) -> None:
    user = make_user()
    api.tokens_for(user)
    (event,) = _events("login.success")
    assert event.target_user_id == user.id
    assert event.details["channel"] == "api"


@pytest.mark.asvs("V16.2.5", "V6.3.4")
def test_text_naming_no_account_is_kept_only_as_a_digest_on_the_api_too(
    api: Api, make_user: Callable[..., User], caplog: pytest.LogCaptureFixture
) -> None:
    """People (and scripts with swapped arguments) send the password as the username. The
    site keeps such text only as a keyed digest; the API kept it as typed, in the audit
    trail an admin reads and exports and in the log, for failures and throttled attempts
    alike."""
    user = make_user()
    typed = "Tr0ub4dor&3-horse-staple"
    caplog.set_level(logging.INFO, logger="bastion")
    for _ in range(6):  # five failures, then the name's counter makes it wait
        api.call("POST", "/auth/token", json={"username": typed, "password": PASSWORD})
    api.call("POST", "/auth/token", json={"username": user.username, "password": "x" * 20})

    *unknown, known = _events("login.failure")
    (throttled,) = _events("login.throttled")
    for event in (*unknown, throttled):
        assert typed.lower() not in str(event.details).lower()
        assert event.details["channel"] == "api"
        assert len(event.details["unknown_login"]) == 16
    logged = "\n".join(JSONFormatter().format(record) for record in caplog.records)
    assert "login.failure" in logged and typed.lower() not in logged.lower()
    # Still grouped as on the site: one digest per name; a known account by its username.
    assert len({str(e.details) for e in unknown}) == 1
    assert unknown[0].details["unknown_login"] == throttled.details["unknown_login"]
    assert known.details == {"username": user.username, "channel": "api"}


@pytest.mark.asvs("V7.4.1", "V9.1.1")
def test_refresh_rotates_and_reuse_revokes_the_whole_family(
    api: Api, make_user: Callable[..., User]
) -> None:
    seen: list[str] = []
    counters.add_sink(lambda name, labels: seen.append(name))
    user = make_user()
    first = api.tokens_for(user)
    second = api.call("POST", "/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    second = second.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert api.call("GET", "/me", second["access_token"]).status_code == 200

    # The old refresh token is presented again: a thief (or the victim) replays it.
    reuse = api.call("POST", "/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    assert "token_reuse_detected" in seen
    assert _events("token.refresh_reuse")
    # Everything issued in that family is dead: the newest refresh token and access tokens.
    assert (
        api.call(
            "POST", "/auth/refresh", json={"refresh_token": second["refresh_token"]}
        ).status_code
        == 401
    )
    assert api.call("GET", "/me", second["access_token"]).status_code == 401
    assert api.call("GET", "/me", first["access_token"]).status_code == 401
    rows = db.session.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id)).all()
    assert rows
    assert all(r.revoked_at is not None for r in rows)
    # Another login (another family) is unaffected.
    assert api.call("GET", "/me", api.tokens_for(user)["access_token"]).status_code == 200


@pytest.mark.asvs("V7.4.1")
def test_revoking_a_refresh_token_ends_its_family(api: Api, make_user: Callable[..., User]) -> None:
    user = make_user()
    pair = api.tokens_for(user)
    assert (
        api.call("POST", "/auth/revoke", json={"token": pair["refresh_token"]}).status_code == 204
    )
    assert (
        api.call("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
        == 401
    )
    assert api.call("GET", "/me", pair["access_token"]).status_code == 401
    assert _events("token.revoked")


def test_revoking_garbage_is_accepted_silently(api: Api) -> None:
    # RFC 7009: the answer does not tell valid tokens from invalid ones.
    assert api.call("POST", "/auth/revoke", json={"token": "not-a-token"}).status_code == 204


@pytest.mark.asvs("V7.4.1")
def test_revoking_a_personal_access_token_ends_it(
    api: Api, make_user: Callable[..., User]
) -> None:
    # RFC 7009: whoever holds a token may end it, a personal one included.
    user = make_user("editor")
    pat = api.pat_for(user, ["articles:read"])
    assert api.call("GET", "/me", pat).status_code == 200
    assert api.call("POST", "/auth/revoke", json={"token": pat}).status_code == 204
    assert api.call("GET", "/me", pat).status_code == 401
    (event,) = _events("token.revoked")
    assert (event.actor_id, event.target_user_id) == (user.id, user.id)
    assert "token_id" in event.details
    # Again, or a token of the same shape that does not exist: the same answer, no event.
    assert api.call("POST", "/auth/revoke", json={"token": pat}).status_code == 204
    unknown = "bst_" + "A" * 43
    assert api.call("POST", "/auth/revoke", json={"token": unknown}).status_code == 204
    assert len(_events("token.revoked")) == 1


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("kind", ["access", "refresh", "personal"])
@pytest.mark.parametrize("hint", ["access_token", "refresh_token"])
def test_revocation_takes_the_rfc_7009_hint_and_looks_past_a_wrong_one(
    kind: str, hint: str, api: Api, make_user: Callable[..., User]
) -> None:
    """RFC 7009 2.1: a client may send ``token_type_hint``; the server may ignore it and
    must search the other types when it is wrong. A 422 left such a client's token alive."""
    user = make_user("editor")
    pair = api.tokens_for(user)
    token = {"access": pair["access_token"], "refresh": pair["refresh_token"],
             "personal": api.pat_for(user, ["articles:read"])}[kind]
    resp = api.call("POST", "/auth/revoke", json={"token": token, "token_type_hint": hint})
    assert resp.status_code == 204, resp.get_json()
    if kind == "refresh":
        again = api.call("POST", "/auth/refresh", json={"refresh_token": token})
        assert again.status_code == 401
    else:
        assert api.call("GET", "/me", token).status_code == 401


@pytest.mark.parametrize("hint", ["id_token", "ACCESS_TOKEN", "", 1, ["access_token"]])
def test_revocation_refuses_a_hint_the_rfc_does_not_define(
    hint: object, api: Api, make_user: Callable[..., User]
) -> None:
    access = api.tokens_for(make_user())["access_token"]
    resp = api.call("POST", "/auth/revoke", json={"token": access, "token_type_hint": hint})
    assert resp.status_code == 422
    problem = resp.get_json()
    assert problem["detail"] == "Some fields are missing or not valid."
    assert [e["loc"] for e in problem["errors"]] == [["token_type_hint"]]
    assert api.call("GET", "/me", access).status_code == 200  # nothing was revoked


def test_the_document_lists_the_revocation_hint(api: Api) -> None:
    doc = api.call("GET", "/openapi.json").get_json()
    ref = doc["paths"]["/api/v1/auth/revoke"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["$ref"]
    spec = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"]["token_type_hint"]
    values = {v for option in spec["anyOf"] for v in option.get("enum", [option.get("const")])}
    assert values == {"access_token", "refresh_token", None}
    assert "hint" in spec["description"]


@pytest.mark.redis
@pytest.mark.asvs("V7.4.1")
def test_revocation_is_shared_through_redis(make_app: Callable[..., Flask], redis_url: str) -> None:
    import os
    from datetime import timedelta

    from bastion.models import utcnow
    from tests.factories import UserFactory

    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    # The limiter and the sign-in throttle keep their counters in this Redis too: under the
    # default prefix they were shared with every other run (a 429 after ten sign-ins a minute).
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "RATELIMIT_KEY_PREFIX": prefix}
    one = make_app(**shared)
    two = make_app(**shared)
    # Two instances, each with its own database: only Redis connects them. The same user
    # in both, down to when the password was set (the tokens' ``pwd`` claim names it).
    password_set = utcnow() - timedelta(days=1)
    for app in (one, two):
        with app.app_context():
            UserFactory(username="shared", password_changed_at=password_set)
            db.session.remove()
    with one.app_context():
        user = db.session.scalar(select(User).where(User.username == "shared"))
        assert user is not None
        access = Api(one.test_client()).tokens_for(user)["access_token"]
        db.session.remove()
    with two.app_context():
        api_two = Api(two.test_client())
        assert api_two.call("GET", "/me", access).status_code == 200
    with one.app_context():
        assert (
            Api(one.test_client()).call("POST", "/auth/revoke", json={"token": access}).status_code
            == 204
        )
        db.session.remove()
    with two.app_context():
        resp = api_two.call("GET", "/me", access)
        assert resp.status_code == 401
        assert "revoked" in resp.get_json()["detail"]
        db.session.remove()


@pytest.mark.asvs("V7.4.2", "V7.4.5")
def test_revoke_all_for_user_ends_every_family(api: Api, make_user: Callable[..., User]) -> None:
    """What "sign out everywhere", password change and disabling call for the API."""
    from bastion.api.tokens import revoke_all_for_user

    user, other = make_user(), make_user()
    pairs = [api.tokens_for(user), api.tokens_for(user)]
    bystander = api.tokens_for(other)
    revoke_all_for_user(user.id)
    for pair in pairs:
        assert api.call("GET", "/me", pair["access_token"]).status_code == 401
        refresh = api.call("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refresh.status_code == 401
    assert api.call("GET", "/me", bystander["access_token"]).status_code == 200


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize("typed", ["ida@bücher.example", "IDA@XN--BCHER-KVA.EXAMPLE"])
def test_an_api_sign_in_by_email_accepts_every_spelling_of_an_idn_domain(
    api: Api, make_user: Callable[..., User], typed: str
) -> None:
    make_user(email="ida@xn--bcher-kva.example")
    resp = api.call("POST", "/auth/token", json={"username": typed, "password": PASSWORD})
    assert resp.status_code == 200, resp.get_json()
    me = api.call("GET", "/me", resp.get_json()["access_token"])
    assert me.get_json()["email"] == "ida@xn--bcher-kva.example"  # as stored


@pytest.mark.asvs("V2.2.1")
def test_an_api_sign_in_with_an_invalid_idn_domain_is_the_generic_401(
    api: Api, make_user: Callable[..., User]
) -> None:
    make_user(email="ida@xn--bcher-kva.example")
    resp = api.call("POST", "/auth/token",
                    json={"username": "ida@xn--zz.example", "password": PASSWORD})
    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
