"""``/auth/token``, ``/auth/refresh``, ``/auth/revoke``: JWT sign-in, rotation, and the
revocation of any token (JWT or personal)."""

from __future__ import annotations

from flask import abort, current_app, request

from bastion.api import bp, pats, tokens
from bastion.api.schemas import RefreshRequest, RevokeRequest, TokenPairOut, TokenRequest
from bastion.api.signin import GENERIC_FAILURE, SignInError, sign_in
from bastion.api.spec import check_preconditions, operation
from bastion.errors import problem
from bastion.extensions import limiter
from bastion.security import audit
from bastion.security.access import public


def _token_limit() -> str:
    return str(current_app.config["API_TOKEN_RATE_LIMIT"])


# One budget per client for the three credential endpoints together.
_auth_limit = limiter.shared_limit(_token_limit, scope="api-auth")


def _pair(pair: tokens.TokenPair) -> TokenPairOut:
    return TokenPairOut(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@bp.post("/auth/token")
@public
@_auth_limit
@operation(
    summary="Sign in: exchange username, password (and otp) for an access and refresh token",
    tag="auth",
    scopes=None,
    body=TokenRequest,
    response=TokenPairOut,
    errors=(401, 403),
)
def issue_token(body: TokenRequest) -> TokenPairOut:
    check_preconditions()  # before the password is checked: it is the request's content
    try:
        user = sign_in(body.username, body.password, body.otp, request.remote_addr or "")
    except SignInError as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        abort(problem(exc.status, exc.detail, headers=headers, extra=exc.extra))
    try:
        return _pair(tokens.issue_pair(user))
    except tokens.TokenError:  # the account was deleted since its password was checked
        abort(problem(401, GENERIC_FAILURE))


@bp.post("/auth/refresh")
@public
@_auth_limit
@operation(
    summary="Rotate a refresh token; reusing an old one revokes its whole family",
    tag="auth",
    scopes=None,
    body=RefreshRequest,
    response=TokenPairOut,
    errors=(401,),
)
def refresh_token(body: RefreshRequest) -> TokenPairOut:
    check_preconditions()  # before the token is used up by its rotation
    try:
        _user, pair = tokens.rotate(body.refresh_token)
    except tokens.TokenError as exc:
        abort(problem(401, str(exc)))
    return _pair(pair)


@bp.post("/auth/revoke")
@public
@_auth_limit
@operation(
    summary=(
        "Revoke an access token, a refresh token and its family, or a personal access "
        "token (RFC 7009)"
    ),
    tag="auth",
    scopes=None,
    body=RevokeRequest,
    status=204,
    description=(
        "Holding a token is the authority to end it: send a JWT access or refresh token, or "
        "a personal access token (bst_...). The answer is 204 whether or not the token was "
        "valid, so it does not tell valid tokens from invalid ones. 'token_type_hint' "
        "(access_token or refresh_token, RFC 7009 2.1) is accepted and changes nothing."
    ),
)
def revoke_token(body: RevokeRequest) -> None:
    check_preconditions()  # whatever the token: the answer tells nothing about it
    if body.token.startswith(pats.PREFIX):
        pats.revoke_presented(body.token)  # audited by the service, like other revocations
        return
    owner = tokens.revoke_token(body.token)
    if owner is not None:
        audit.record("token.revoked", actor_id=owner, target_user_id=owner, details={"kind": "jwt"})
