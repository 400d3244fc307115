"""``/tokens``: personal access tokens of the signed-in user (JWT sign-ins only)."""

from __future__ import annotations

from flask import abort, request

from bastion.api import bp, pats
from bastion.api.auth import ACCOUNT_SCOPE, current_principal, unauthorized
from bastion.api.schemas import PatCreate, PatCreated, PatList, PatOut
from bastion.api.signin import SignInError, check_credentials
from bastion.api.spec import check_preconditions, operation
from bastion.errors import problem
from bastion.models import ApiToken
from bastion.security.access import bearer_required


def pat_out(record: ApiToken) -> PatOut:
    return PatOut(
        id=record.id,
        name=record.name,
        hint=record.hint,
        scopes=record.scopes.split(),  # type: ignore[arg-type]
        created_at=record.created_at,
        expires_at=record.expires_at,
        last_used_at=record.last_used_at,
        revoked_at=record.revoked_at,
    )


@bp.get("/tokens")
@bearer_required
@operation(
    summary=f"Your live personal access tokens and those ended in the last "
    f"{pats.ENDED_LISTED_FOR.days} days (never the tokens themselves)",
    tag="tokens",
    scopes=(ACCOUNT_SCOPE,),
    response=PatList,
)
def list_tokens() -> PatList:
    return PatList(items=[pat_out(r) for r in pats.list_for(current_principal().user)])


@bp.post("/tokens")
@bearer_required
@operation(
    summary="Create a personal access token; needs your password (and otp) again",
    tag="tokens",
    scopes=(ACCOUNT_SCOPE,),
    body=PatCreate,
    response=PatCreated,
    status=201,
    location=("api.delete_token", "token_id"),
)
def create_token(body: PatCreate) -> PatCreated:
    principal = current_principal()
    user = principal.user
    # Before the password in the body is processed (RFC 9110 13.2.1): a failed condition
    # costs no password hash and counts no failed re-authentication.
    check_preconditions()  # the token list carries no ETag
    try:
        check_credentials(user.username, body.password, body.otp, request.remote_addr or "")
    except SignInError as exc:
        status = 429 if exc.status == 429 else 403
        detail = exc.detail if status == 429 else "Re-authentication failed: " + exc.detail
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        abort(problem(status, detail, headers=headers))
    try:
        created = pats.create(
            user, name=body.name, scopes=list(body.scopes), days=body.expires_in_days,
            still_signed_in=principal.still_signed_in,
        )
    except pats.SignedOutMeanwhileError as exc:
        unauthorized(str(exc))
        raise AssertionError("unreachable") from exc
    return PatCreated(**pat_out(created.record).model_dump(), token=created.secret)


@bp.delete("/tokens/<int:token_id>")
@bearer_required
@operation(summary="Revoke one of your tokens", tag="tokens", scopes=(ACCOUNT_SCOPE,), status=204)
def delete_token(token_id: int) -> None:
    record = pats.own_token(current_principal().user, token_id)
    if record is None:
        abort(404, description="There is no token of yours with that id.")
    check_preconditions()  # a token carries no ETag
    pats.end(record)
