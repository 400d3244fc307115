"""Sign in (password, then 2FA), sign out, re-authenticate, register, confirm, reset."""

from __future__ import annotations

import time
from typing import Any

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from bastion.auth import bp, pending, registration, throttle
from bastion.auth.enrolment import must_enrol
from bastion.auth.forms import (
    EmptyForm,
    LoginForm,
    ReauthForm,
    RegisterForm,
    ResetPasswordForm,
    ResetRequestForm,
    TwoFactorForm,
    forget_code,
)
from bastion.auth.login import (
    Result,
    Step,
    password_step,
    pending_mark,
    pending_reused,
    pending_still_valid,
    reauthenticate,
    second_step,
)
from bastion.auth.services import AccountError
from bastion.auth.sessions import (
    CLEAR_SITE_DATA,
    AccountGoneError,
    end_session,
    reauthenticated,
    start_session,
)
from bastion.extensions import csrf, db, limiter
from bastion.models import User
from bastion.security import audit
from bastion.security.access import login_required, public
from bastion.security.fetch_metadata import download_named, landing_page
from bastion.security.passwords import password_fingerprint
from bastion.security.redirects import is_safe_next, safe_next_url

GENERIC_FAILURE = (
    "That username or password is not right, or the account cannot sign in yet "
    "(new accounts must confirm their email address first)."
)
CODE_FAILURE = "That code is not right or was already used."
PENDING_KEY = "pending_2fa"


def _ip() -> str:
    return request.remote_addr or ""


def _throttled(form: Any, template: str, result: Result, **context: Any) -> ResponseReturnValue:
    forget_code(form)
    seconds = throttle.retry_after(result.wait)
    flash(f"Too many failed attempts. Wait {seconds} seconds, then try again.", "error")
    html = render_template(template, form=form, **context)
    return html, 429, {"Retry-After": str(seconds)}


def _field_error(form: Any, exc: AccountError, default: str) -> None:
    getattr(form, exc.field or default, getattr(form, default)).errors.append(str(exc))


def _onward(target: str | None, default: str = "main.index") -> str:
    """Where a typed password leads: ``target`` when a safe local path (the page offering
    it when it names a download: the user starts a download, never the password form),
    else the ``default`` page."""
    return landing_page(target) if target and is_safe_next(target) else url_for(default)


# Sign in -----------------------------------------------------------------------------
@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit("10 per minute", methods=["POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(_onward(safe_next_url()))
    form = LoginForm()
    if not form.validate_on_submit():
        if request.method == "GET":
            form.next.data = request.args.get("next", "")
        return render_template("auth/login.html", form=form)
    result = password_step(form.username.data or "", form.password.data or "", _ip())
    if result.step is Step.THROTTLED:
        return _throttled(form, "auth/login.html", result)
    if result.step is Step.FAILED or result.user is None:
        flash(GENERIC_FAILURE, "error")
        return render_template("auth/login.html", form=form)
    nxt = _onward(form.next.data) if is_safe_next(form.next.data) else ""
    if result.step is Step.NEEDS_2FA:
        # Not signed in: only a signed, short-lived marker names the user until the code.
        session.clear()
        session[PENDING_KEY] = {
            "uid": result.user.id,
            # The password checked now, not whatever is stored when the code comes.
            "pwd": password_fingerprint(result.user.password_changed_at),
            # And the account as it stood: ending every sign-in ends this one too.
            "stamp": pending_mark(result.user),
            "exp": time.time() + current_app.config["TWO_FACTOR_PENDING_SECONDS"],
            # Spent by the sign-in it finishes: a copy of this cookie cannot finish another.
            "nonce": pending.new_nonce(),
            "remember": bool(form.remember.data),
            "next": nxt,
        }
        return redirect(url_for("auth.two_factor"))
    try:
        start_session(result.user, remember=bool(form.remember.data))
    except AccountGoneError:  # deleted since the password was checked: as if never there
        flash(GENERIC_FAILURE, "error")
        return render_template("auth/login.html", form=form)
    if must_enrol(result.user):  # at once, not on the first page that needs it
        # The checked target goes along; the set-up page checks it again before use.
        return redirect(url_for("account.two_factor_setup", next=nxt or None))
    return redirect(nxt or url_for("main.index"))


def _pending_user() -> tuple[User, dict[str, Any]] | Step | None:
    """The user and marker of the half-finished sign-in; ``Step.SPENT`` when its marker
    finished a sign-in already; None when there is none (or no longer a valid one)."""
    marker = session.get(PENDING_KEY)
    if not isinstance(marker, dict) or not isinstance(marker.get("uid"), int):
        return None
    if float(marker.get("exp", 0)) < time.time():
        session.pop(PENDING_KEY, None)
        return None
    user = db.session.get(User, marker["uid"])
    if user is None or not pending_still_valid(user, marker.get("stamp")):
        session.pop(PENDING_KEY, None)  # the password is asked again, not a code
        return None
    nonce = marker.get("nonce")
    if nonce is None:  # made before markers had a nonce, and replayed by no one: no alarm
        session.pop(PENDING_KEY, None)
        return None
    if pending.spent(nonce):  # checked before the code, so none is wasted
        if request.method == "POST":
            pending_reused(user)
        return Step.SPENT
    return user, marker


def _password_first() -> ResponseReturnValue:
    session.pop(PENDING_KEY, None)
    flash("Sign in with your password first.", "info")
    return redirect(url_for("auth.login"))


def _marker_spent() -> ResponseReturnValue:
    """The marker finished a sign-in already: the password is asked again. The cookie is
    left as it is: this may be the browser that signed in, its second click sent before the
    first answer came back, and a cookie written now would replace the signed-in one."""
    return redirect(url_for("auth.login"))


def _signed_in_already() -> ResponseReturnValue:
    """The code form reached a signed-in browser: sent again by the one that just finished
    its sign-in (a double click, a resubmit, a second tab), it leads where that sign-in
    went. Nothing is checked, changed or started: this is only a redirect."""
    target = pending.finished_target(request.form.get("marker"))
    return redirect(_onward(target))


@bp.route("/2fa", methods=["GET", "POST"])
@public
@csrf.exempt  # checked below, unless the browser is signed in already (only a redirect)
@limiter.limit("10 per minute", methods=["POST"])
def two_factor() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return _signed_in_already()
    if current_app.config["WTF_CSRF_ENABLED"]:
        csrf.protect()
    half_done = _pending_user()
    if half_done is None:
        return _password_first()
    if isinstance(half_done, Step):  # Step.SPENT, the only step it answers
        return _marker_spent()
    user, marker = half_done
    form = TwoFactorForm()
    form.marker.data = pending.form_mark(marker.get("nonce"))
    if not form.validate_on_submit():
        return render_template("auth/two_factor.html", form=form)
    result = second_step(user, form.code.data or "", _ip(), marker.get("nonce"),
                         float(marker["exp"]))
    if result.step is Step.THROTTLED:
        return _throttled(form, "auth/two_factor.html", result)
    if result.step is Step.SPENT:  # another request finished this sign-in first
        return _marker_spent()
    if result.step is not Step.SIGNED_IN:
        # Refused because another request, the same double click, finished this marker
        # with this very code while it was checked: no message, no cookie written.
        if pending.spent(marker.get("nonce")):
            return _marker_spent()
        flash(CODE_FAILURE, "error")
        forget_code(form)
        return render_template("auth/two_factor.html", form=form)
    try:
        start_session(  # new session id
            user, remember=bool(marker.get("remember")), password=str(marker.get("pwd") or "")
        )
    except AccountGoneError:  # deleted since the code was checked: as if never there
        session.pop(PENDING_KEY, None)
        flash(GENERIC_FAILURE, "error")
        return redirect(url_for("auth.login"))
    nxt = _onward(str(marker.get("next") or ""))
    pending.remember_finished(marker.get("nonce"), nxt, float(marker["exp"]))
    return redirect(nxt)


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    form = EmptyForm()
    if form.validate_on_submit():
        user_id = current_user.id
        end_session()
        audit.record("logout", actor_id=user_id, target_user_id=user_id)
        flash("You are signed out.", "info")
        response = redirect(url_for("main.index"))
        response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
        return response
    return redirect(url_for("main.index"))


@bp.route("/reauth", methods=["GET", "POST"])
@login_required
@limiter.limit("10 per minute", methods=["POST"])
def reauth() -> ResponseReturnValue:
    form = ReauthForm()
    if request.method == "GET":  # a refused post keeps the target it was sent with
        form.next.data = request.args.get("next", "")
    # What the password is for, when it leads to a download: the page says so.
    found = download_named(form.next.data)
    purpose = found.purpose if found else None
    if not form.validate_on_submit():
        return render_template("auth/reauth.html", form=form, purpose=purpose)
    result = reauthenticate(current_user, form.password.data or "", form.code.data or "", _ip())
    if result.step is Step.THROTTLED:
        return _throttled(form, "auth/reauth.html", result, purpose=purpose)
    if result.step is not Step.SIGNED_IN:
        flash("That did not match. Enter your password (and code) again.", "error")
        forget_code(form)
        return render_template("auth/reauth.html", form=form, purpose=purpose)
    from bastion.account.routes import ENROLMENT_KEY

    # The mark of the 2FA key this browser was shown goes across to the new session: a
    # set-up page left open past the window sends its owner here, and a new key would stop
    # the codes of the app that just scanned the old one.
    shown_key = session.get(ENROLMENT_KEY)
    reauthenticated(current_user._get_current_object())
    if shown_key is not None:
        session[ENROLMENT_KEY] = shown_key
    return redirect(_onward(form.next.data, default="account.index"))


# Registration and confirmation -----------------------------------------------------------
CHECK_EMAIL = "Check your email: we sent a link to finish setting up the account."


@bp.route("/register", methods=["GET", "POST"])
@public
@limiter.limit("5 per minute; 30 per hour", methods=["POST"])
def register() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            registration.register(form.username.data or "", form.email.data or "",
                                  form.password.data or "", ip=_ip())
        except AccountError as exc:
            _field_error(form, exc, "username")
        else:
            flash(CHECK_EMAIL, "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/register.html", form=form), 200 if not form.errors else 422


@bp.route("/confirm/<token>", methods=["GET", "POST"])
@public
@limiter.limit("20 per minute")
def confirm(token: str) -> ResponseReturnValue:
    # Confirming changes state, so it is a POST; the emailed link opens a page with a button
    # (mail scanners that pre-fetch links cannot confirm for the user).
    if registration.confirmation_user(token) is None:
        return _bad_link()
    form = EmptyForm()
    if form.validate_on_submit():
        if registration.confirm(token) is None:
            return _bad_link()
        flash("Your email address is confirmed. You can sign in now.", "success")
        return redirect(url_for("auth.login"))
    return render_template("auth/confirm.html", form=form)


def _bad_link() -> ResponseReturnValue:
    html = render_template("auth/bad_link.html")
    return html, 404


# Password reset ------------------------------------------------------------------------
@bp.route("/reset", methods=["GET", "POST"])
@public
@limiter.limit("5 per minute; 20 per hour", methods=["POST"])
def reset_request() -> ResponseReturnValue:
    form = ResetRequestForm()
    if form.validate_on_submit():
        registration.request_reset(form.email.data or "", ip=_ip())
        flash("If an account uses that address, we sent it a link to reset the password. "
              f"The link works for {current_app.config['RESET_MINUTES']} minutes.", "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/reset_request.html", form=form), 200 if not form.errors else 422


@bp.route("/reset/<token>", methods=["GET", "POST"])
@public
@limiter.limit("10 per minute", methods=["POST"])
def reset_password(token: str) -> ResponseReturnValue:
    account = registration.reset_user(token)
    if account is None:
        return _bad_link()
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            user = registration.reset_password(token, form.password.data or "")
        except AccountError as exc:
            _field_error(form, exc, "password")
        else:
            if user is None:
                return _bad_link()
            if current_user.is_authenticated and current_user.id != user.id:
                # Opened in a browser signed in to another account, whose sessions live on.
                flash(f"The password of {user.username} is changed: that account is signed "
                      "out everywhere and its personal access tokens are revoked. You are "
                      f"still signed in as {current_user.username}, whose password stays as "
                      "it was.", "success")
                return redirect(url_for("main.index"))
            flash("Your password is changed. You are signed out everywhere and your personal "
                  "access tokens are revoked. Sign in with your new password.", "success")
            return redirect(url_for("auth.login"))
    return render_template(
        "auth/reset_password.html", form=form, username=account.username
    ), 200 if not form.errors else 422


@bp.record_once
def _register_access_checks(state: Any) -> None:
    from bastion.auth.enrolment import require_enrolment
    from bastion.auth.sessions import forget_cached_identity
    from bastion.security.access import add_access_check

    add_access_check(state.app, require_enrolment)
    state.app.before_request_funcs.setdefault(None, []).insert(0, forget_cached_identity)
