"""Sign in and out."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from bastion.auth import bp
from bastion.auth.forms import EmptyForm, LoginForm
from bastion.auth.services import authenticate, canonical_username, find_login_user
from bastion.auth.sessions import end_session, start_session
from bastion.extensions import limiter
from bastion.security import audit
from bastion.security.access import login_required, public
from bastion.security.redirects import safe_next_url

GENERIC_FAILURE = "That username or password is not right, or the account cannot sign in."


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit("10 per minute", methods=["POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(safe_next_url())
    form = LoginForm()
    if form.validate_on_submit():
        login_name = form.username.data or ""
        user = authenticate(login_name, form.password.data or "")
        if user is not None:
            start_session(user, remember=bool(form.remember.data))
            audit.record("login.success", actor_id=user.id, target_user_id=user.id)
            return redirect(safe_next_url())
        known = find_login_user(login_name)
        audit.record(
            "login.failure",
            target_user_id=known.id if known else None,
            details={"username": canonical_username(login_name)[:64]},
        )
        from bastion.observability import counters

        counters.increment("login_failures")
        flash(GENERIC_FAILURE, "error")
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    form = EmptyForm()
    if form.validate_on_submit():
        user_id = current_user.id
        end_session()
        audit.record("logout", actor_id=user_id, target_user_id=user_id)
        flash("You are signed out.", "info")
    return redirect(url_for("main.index"))
