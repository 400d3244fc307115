"""Sign in and out."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import or_, select

from bastion.auth import bp
from bastion.auth.forms import EmptyForm, LoginForm
from bastion.auth.services import canonical_username, normalise_password
from bastion.auth.sessions import end_session, start_session
from bastion.extensions import db, limiter
from bastion.models import User
from bastion.security import audit
from bastion.security.access import login_required, public
from bastion.security.passwords import hash_password, needs_rehash, verify_password
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
        login_name = canonical_username(form.username.data or "")
        password = normalise_password(form.password.data or "")
        user = db.session.scalar(
            select(User).where(or_(User.username == login_name, User.email == login_name))
        )
        ok = verify_password(user.password_hash if user else None, password)
        if ok and user is not None and user.is_active and user.email_confirmed_at is not None:
            if needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            start_session(user, remember=bool(form.remember.data))
            audit.record("login.success", actor_id=user.id, target_user_id=user.id)
            return redirect(safe_next_url())
        audit.record(
            "login.failure",
            target_user_id=user.id if user else None,
            details={"username": login_name[:64]},
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
