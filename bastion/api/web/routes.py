"""``/api/docs`` and the token settings: ``/account/tokens`` (list, create, revoke)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from bastion.api import pats
from bastion.api.openapi import docs_view, document
from bastion.api.web import bp
from bastion.api.web.forms import TokenForm
from bastion.auth.forms import EmptyForm
from bastion.auth.sessions import current_record_live
from bastion.extensions import limiter
from bastion.models import ApiToken, User
from bastion.security.access import login_required, public
from bastion.security.freshness import fresh_required

# What ``account/_tokens.html`` shows (and ``pats.is_active`` asks): not the token hash,
# the owner or the creation time.
LISTED_TOKEN_COLUMNS = (
    ApiToken.id,
    ApiToken.name,
    ApiToken.hint,
    ApiToken.scopes,
    ApiToken.expires_at,
    ApiToken.last_used_at,
    ApiToken.revoked_at,
)


def listed_tokens(user: User) -> list[ApiToken]:
    """The tokens ``pats.list_for`` lists, with only the ``LISTED_TOKEN_COLUMNS``."""
    return pats.list_for(user, columns=LISTED_TOKEN_COLUMNS)


def tokens_context(user: User, form: TokenForm | None = None) -> dict[str, Any]:
    """What ``account/_tokens.html`` needs; the account page passes it to include the panel."""
    return {
        "tokens": listed_tokens(user),
        "token_form": form or TokenForm(),
        "token_revoke_form": EmptyForm(),
        "token_is_active": pats.is_active,
        "token_ended_days": pats.ENDED_LISTED_FOR.days,
    }


@bp.get("/api/docs")
@public
def docs() -> ResponseReturnValue:
    """Rendered on the server from the live document: no scripts, no third-party assets."""
    doc = document()
    return render_template("api/docs.html", info=doc["info"], sections=docs_view(doc))


@bp.get("/account/tokens")
@login_required
def tokens() -> ResponseReturnValue:
    return render_template("api/tokens.html", **tokens_context(current_user))


@bp.post("/account/tokens")
@login_required
@fresh_required
@limiter.limit("20 per hour")
def create_token() -> ResponseReturnValue:
    form = TokenForm()
    if form.validate_on_submit():
        try:
            created = pats.create(
                current_user,
                name=form.name.data or "",
                scopes=form.scopes.data or [],
                days=form.days.data,
                still_signed_in=current_record_live,
            )
        except pats.SignedOutMeanwhileError as exc:
            flash(str(exc), "error")
            return redirect(url_for("auth.login"))
        except pats.TokenRequestError as exc:
            form.form_errors.append(str(exc))
        else:
            # Rendered, never flashed: the flash would put the secret in the session cookie.
            return render_template("api/token_created.html", token=created)
    return render_template("api/tokens.html", **tokens_context(current_user, form)), 422


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
@fresh_required
def revoke_token(token_id: int) -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    if not pats.revoke(current_user, token_id):
        abort(404, description="There is no token of yours with that id.")
    flash("The token is revoked; anything using it stops working now.", "success")
    return redirect(url_for("api_web.tokens"))
