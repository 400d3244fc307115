"""The one-time setup page."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from bastion.auth.forms import AccountSetupForm
from bastion.auth.services import AccountError
from bastion.extensions import limiter
from bastion.security.access import public
from bastion.setup import bp
from bastion.setup.services import create_first_admin, token_is_valid


@bp.route("/<token>", methods=["GET", "POST"])
@public
@limiter.limit("20 per hour")
def create_admin(token: str) -> ResponseReturnValue:
    if not token_is_valid(token):
        abort(404)
    form = AccountSetupForm()
    if form.validate_on_submit():
        try:
            user = create_first_admin(
                token, form.username.data or "", form.email.data or "", form.password.data or ""
            )
        except AccountError as exc:
            getattr(form, exc.field or "username").errors.append(str(exc))
        else:
            if user is None:
                abort(404)
            flash("Your admin account is ready. Sign in to continue.", "success")
            return redirect(url_for("auth.login"))
    return render_template("setup/create_admin.html", form=form), 200 if not form.errors else 422
