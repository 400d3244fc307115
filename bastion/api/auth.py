"""Bearer authentication for the API: a JWT access token or a personal access token.

Only the ``Authorization: Bearer`` header counts. The session cookie is ignored inside the
API (``current_user`` is reset to anonymous before each API view), so a cross-site request
that carries the cookie but no token is a 401; that is why the API needs no CSRF token and
accepts none in its place.
"""

from __future__ import annotations

from typing import Any

from flask import abort, g, request
from flask_login import AnonymousUserMixin

from bastion.api import pats, revocation, tokens
from bastion.api.user_states import ENROL_2FA_DETAIL, lacks_required_2fa
from bastion.errors import problem
from bastion.extensions import db
from bastion.models import User
from bastion.security import ratelimit_storage

# A JWT access token stands for an interactive sign-in: it carries every scope the role
# allows, plus "account": managing the profile and personal tokens, which a personal
# token itself may never do.
ACCOUNT_SCOPE = "account"


class ApiPrincipal:
    """Who an API request acts for, and with which scopes.

    Authentication establishes the id and the scopes; the User row itself is read only
    when a view needs it (``user``), so a read such as the published list never touches
    the database for the caller.
    """

    __slots__ = (
        "_user", "kind", "lacks_2fa", "pat_id", "revocation_keys", "scopes", "user_id"
    )

    def __init__(
        self,
        user_id: int,
        scopes: frozenset[str],
        kind: str,
        user: User | None = None,
        *,
        lacks_2fa: bool = False,
        revocation_keys: tuple[str, ...] = (),
        pat_id: int | None = None,
    ) -> None:
        self.user_id = user_id
        self.scopes = scopes
        self.kind = kind  # "jwt" | "pat"
        self._user = user
        # The role requires 2FA and the user has none (promoted, or turned it off, after
        # the sign-in or the token's creation): every call is refused until they enrol.
        self.lacks_2fa = lacks_2fa
        # What would revoke the access token (its id and its family), for checks that
        # must be made again later in the request (``still_signed_in``); a personal
        # token's row instead (``pat_id``).
        self.revocation_keys = revocation_keys
        self.pat_id = pat_id

    def still_signed_in(self) -> bool:
        """Whether the token is still unrevoked now, asked again (not the answer from the
        start of the request), for a check made under the user's lock."""
        if self.pat_id is not None:
            return pats.still_live(self.pat_id)
        return not revocation.any_revoked(*self.revocation_keys)

    @property
    def user(self) -> User:
        if self._user is None:
            user = db.session.get(User, self.user_id)
            if user is None or not user.is_active:  # changed since authentication
                unauthorized("The token is not valid.")
                raise AssertionError("unreachable")
            self._user = user
        return self._user


class ApiActor:
    """Flask-Login's ``current_user`` inside the API.

    Logs and audit records only need the id, which authentication already has; anything
    else is read from the User row (``ApiPrincipal.user``) on first use.
    """

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, principal: ApiPrincipal) -> None:
        self.id = principal.user_id
        self._principal = principal

    def get_id(self) -> str:
        return str(self.id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._principal.user, name)


class BearerError(Exception):
    def __init__(self, detail: str, error: str = "invalid_token") -> None:
        super().__init__(detail)
        self.detail = detail
        self.error = error


def forget_cookie_identity() -> None:
    """before_request: the API never acts for the cookie's user."""
    ctx_g = g._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not two
    ctx_g._login_user = AnonymousUserMixin()  # Flask-Login's per-request user slot
    ctx_g.pop("api_principal", None)


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip() or " " in value.strip():
        raise BearerError("Use 'Authorization: Bearer <token>'.", "invalid_request")
    return value.strip()


def offer_state_read() -> None:
    """before_request, ahead of Flask-Limiter: an API call whose bearer token this worker
    has verified before gets its revocation and user-state read sent to Redis together
    with the rate-limit hit, one round trip instead of two (``ratelimit_storage``). Only
    the read moves; every check still happens in the view."""
    req = request._get_current_object()  # type: ignore[attr-defined]
    if req.blueprint != "api" or not ratelimit_storage.enabled():
        return
    header = req.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return
    keys = tokens.state_keys_if_known(value.strip())
    if keys is not None:
        ratelimit_storage.offer(keys)


def authenticate() -> ApiPrincipal | None:
    """The principal for the request's bearer token; None without one; BearerError if bad."""
    token = _bearer_token()
    if token is None:
        return None
    if token.startswith(pats.PREFIX):
        found = pats.authenticate(token)
        if found is None:
            raise BearerError("The token is not valid, has expired or was revoked.")
        user, scopes, pat_id = found
        lacks = lacks_required_2fa(user.role_name, user.has_2fa)
        return ApiPrincipal(user.id, scopes, "pat", user, lacks_2fa=lacks, pat_id=pat_id)
    try:
        state, claims = tokens.verify_access(token)
    except tokens.TokenError as exc:
        raise BearerError(str(exc)) from exc
    # Part of the cached user state: the check costs no read beyond the state's own.
    scopes = pats.scopes_of_role(state.role_name) | {ACCOUNT_SCOPE}
    return ApiPrincipal(
        state.id, scopes, "jwt", lacks_2fa=state.lacks_required_2fa,
        revocation_keys=tokens.own_revocation_keys(claims),
    )


def unauthorized(detail: str, error: str = "invalid_token") -> None:
    challenge = 'Bearer realm="bastion"'
    if error:
        challenge += f', error="{error}"'
    abort(problem(401, detail, headers={"WWW-Authenticate": challenge}))


def require_scopes(scopes: tuple[str, ...]) -> ApiPrincipal:
    """Authenticate the request and check it may use ``scopes``; aborts 401/403 otherwise.

    A user whose role requires 2FA and who has none is refused (403) whatever the scopes,
    as the token endpoint refuses them a sign-in and the web sends them to enrolment.
    """
    try:
        principal = authenticate()
    except BearerError as exc:
        unauthorized(exc.detail, exc.error)
        raise AssertionError("unreachable") from exc
    if principal is None:
        unauthorized("This endpoint needs an 'Authorization: Bearer <token>' header.", "")
        raise AssertionError("unreachable")
    ctx_g = g._get_current_object()  # type: ignore[attr-defined]
    ctx_g.api_principal = principal
    ctx_g._login_user = ApiActor(principal)  # so audit records and logs name the actor
    if principal.lacks_2fa:
        from bastion.security import audit

        audit.record(
            "authz.denied", details={"endpoint": request.endpoint, "reason": "2fa_required"}
        )
        abort(problem(403, ENROL_2FA_DETAIL))
    missing = [s for s in scopes if s not in principal.scopes]
    if missing:
        from bastion.security import audit

        audit.record("authz.denied", details={"endpoint": request.endpoint, "scopes": missing})
        abort(problem(403, f"This token lacks the scope(s): {', '.join(missing)}."))
    return principal


def current_principal() -> ApiPrincipal:
    principal: ApiPrincipal = g.api_principal
    return principal


def may_act_on_others() -> bool:
    """Acting on other people's content (editing or deleting it as an admin) needs the ``admin`` scope.

    Roles still decide whether it is allowed at all (``bastion.security.authz``); the scope
    only lets a narrow token opt out of powers its owner has.
    """
    return "admin" in current_principal().scopes
