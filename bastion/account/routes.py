"""The account page: profile, email, password, 2FA, sessions, exporting and deleting the
account."""

from __future__ import annotations

from typing import Any

from flask import (
    Response,
    abort,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user

from bastion.account import bp, export, services
from bastion.account.forms import (
    DeleteAccountForm,
    EmailChangeForm,
    EnableTwoFactorForm,
    PasswordChangeForm,
    ProfileForm,
    SecondFactorForm,
)
from bastion.admin import deletion
from bastion.admin.services import AdminError, UserGoneError
from bastion.api.web.routes import tokens_context
from bastion.auth import enrolment, recovery_keys, throttle, twofactor
from bastion.auth.devices import device_label
from bastion.auth.forms import EmptyForm, forget_code
from bastion.auth.login import Step, confirm_second_factor
from bastion.auth.services import AccountError
from bastion.auth.sessions import (
    CLEAR_SITE_DATA,
    current_record,
    current_record_live,
    end_session,
    list_sessions,
    revoke_all,
    revoke_session,
    start_session,
)
from bastion.extensions import limiter
from bastion.models import utcnow
from bastion.profiles import services as profiles
from bastion.security import audit
from bastion.security.access import for_own_scripts, login_required, public
from bastion.security.fetch_metadata import download, export_ran, refuse_unless_requested
from bastion.security.freshness import fresh_required, is_fresh
from bastion.security.ratelimit_keys import signed_in_user
from bastion.security.redirects import is_safe_next

# The session list names each device ("Firefox on Windows"), the raw header kept in a title.
bp.add_app_template_filter(device_label, "device_label")


def _page(status: int = 200, **forms: Any) -> ResponseReturnValue:
    user = current_user
    record = g.get("session_record")
    context = {
        "profile_form": ProfileForm(formdata=None, obj=user),
        "email_form": EmailChangeForm(formdata=None),
        "password_form": PasswordChangeForm(formdata=None),
        "second_factor_form": SecondFactorForm(formdata=None),
        "empty_form": EmptyForm(),
        "sessions": list_sessions(user.id),
        "current_session_id": record.id if record else None,
        "recovery": recovery_keys.status(user.id) if user.has_2fa else None,
        "fresh": is_fresh(),
        "export_ready": False,
        # The API tokens section (account/_tokens.html) lives with the API package.
        **tokens_context(user),
    }
    context.update(forms)
    return render_template("account/index.html", **context), status


@bp.get("")
@login_required
def index() -> ResponseReturnValue:
    # Back from re-authenticating for the export (``export_data``): its section says what next.
    return _page(export_ready=request.args.get("export") == "ready" and is_fresh())


@bp.get("/session-check")
@login_required
@for_own_scripts
def session_check() -> ResponseReturnValue:
    """204 while the session lives, for ``history-guard.js`` before it shows a page Back
    restored (the access policy answers 401 otherwise, 403 to another site).

    Not the account page: rendering it cost its queries and took the flash message waiting
    for the next page ("Your profile is saved.") with it.
    """
    return Response(status=204, headers={"Cache-Control": "no-store"})


@bp.post("/profile")
@login_required
def update_profile() -> ResponseReturnValue:
    form = ProfileForm()
    if not form.validate_on_submit():
        return _page(422, profile_form=form)
    try:
        profiles.update_profile(
            current_user, display_name=form.display_name.data or "", bio=form.bio.data or ""
        )
    except profiles.ProfileError as exc:
        getattr(form, exc.field or "bio").errors.append(str(exc))
        return _page(422, profile_form=form)
    flash("Your profile is saved.", "success")
    return redirect(url_for("account.index"))


@bp.post("/email")
@login_required
@fresh_required
@limiter.limit("5 per hour")
@limiter.limit("5 per hour", key_func=signed_in_user)  # an account's addresses are many
def change_email() -> ResponseReturnValue:
    form = EmailChangeForm()
    if form.validate_on_submit():
        try:
            services.request_email_change(current_user, form.email.data or "",
                                          ip=request.remote_addr or "")
        except AccountError as exc:
            form.email.errors.append(str(exc))
        else:
            flash("We sent a confirmation link to the new address. Your email changes once you "
                  "follow it.", "info")
            return redirect(url_for("account.index"))
    return _page(422, email_form=form)


@bp.route("/email/<token>", methods=["GET", "POST"])
@public
@limiter.limit("20 per minute")
def confirm_email(token: str) -> ResponseReturnValue:
    target = services.email_change_target(token)
    if target is None:
        return render_template("auth/bad_link.html"), 404
    form = EmptyForm()
    if form.validate_on_submit():
        try:
            user = services.confirm_email_change(token)
        except AccountError as exc:
            flash(str(exc), "error")
            return redirect(url_for("main.index"))
        if user is None:  # used or ended since the check above
            return render_template("auth/bad_link.html"), 404
        if current_user.is_authenticated and current_user.id != user.id:
            # The link was opened in a browser signed in to another account: that one's
            # page would say "changed" of an address that is not its own.
            flash("That account's email address is changed. You are still signed in as "
                  f"{current_user.username}, whose address stays as it was.", "success")
            return redirect(url_for("main.index"))
        flash("Your email address is changed.", "success")
        return redirect(url_for("account.index"))
    # The page names the account: a link mailed unasked to someone else's address says whose.
    return render_template("account/confirm_email.html", form=form, account=target[0],
                           new_email=target[1])


@bp.post("/password")
@login_required
@fresh_required
@limiter.limit("10 per hour")
def change_password() -> ResponseReturnValue:
    form = PasswordChangeForm()
    if form.validate_on_submit():
        record = g.get("session_record")
        try:
            services.change_password(current_user, form.current.data or "",
                                     form.password.data or "", ip=request.remote_addr or "")
        except services.TooManyPasswordGuessesError as exc:
            return _wait_page(exc.wait, form.current, "Too many wrong attempts",
                              password_form=form)
        except AccountError as exc:
            getattr(form, exc.field or "password").errors.append(str(exc))
        else:
            # Every session ended, this one too. The browser that chose the password stays
            # signed in under a new session id, so a copy of its old cookie is worthless;
            # the new id keeps the old one's end and re-authentication time.
            start_session(current_user._get_current_object(), continues=record)
            flash("Your password is changed. Other devices were signed out and your personal access tokens revoked.", "success")
            return redirect(url_for("account.index"))
    return _page(422, password_form=form)


ENROLMENT_KEY = "totp_enrolment"


def _enrolment_secret() -> str | None:
    """The secret this session enrols: one that was shown to another session is replaced,
    so nobody who once held a session can leave a secret they know for the owner to enrol.
    None when 2FA was turned on meanwhile (``twofactor.pending_secret``)."""
    if twofactor.is_shown_secret(current_user, session.get(ENROLMENT_KEY)):
        return twofactor.pending_secret(current_user)
    secret = twofactor.pending_secret(current_user, renew=True)
    if secret is not None:
        session[ENROLMENT_KEY] = twofactor.enrolment_mark(secret)
    return secret


def _enrolment_next(form: EnableTwoFactorForm) -> str:
    """The page to offer after enrolment: the link's ``next`` on GET, the form's on POST.

    Checked on every request that carries it, and cleared on the form when unsafe, so the
    page never hands on a target it did not check itself."""
    raw = form.next.data if request.method == "POST" else request.args.get("next")
    form.next.data = raw if raw and is_safe_next(raw) else ""
    return str(form.next.data)


@bp.route("/2fa", methods=["GET", "POST"])
@login_required
@fresh_required
@limiter.limit("20 per minute", methods=["POST"])
def two_factor_setup() -> ResponseReturnValue:
    if current_user.has_2fa:
        flash("Two-factor authentication is already on.", "info")
        return redirect(url_for("account.index"))
    form = EnableTwoFactorForm()
    nxt = _enrolment_next(form)
    if form.validate_on_submit():
        shown = twofactor.is_shown_secret(current_user, session.get(ENROLMENT_KEY))
        record = current_record() if shown else None
        codes = twofactor.enable(current_user, form.code.data or "",
                                 keep_session_id=record.id if record else None) if shown else None
        if codes is not None:
            session.pop(ENROLMENT_KEY, None)
            return render_template(
                "account/recovery_codes.html",
                codes=codes,
                enabled=True,
                others_ended=enrolment.is_required(current_user),
                next_url=nxt or None,
            )
        form.code.errors.append("That code is not right. Check the time on your device and "
                                "enter the newest code.")
    secret = _enrolment_secret()
    if secret is None:  # turned on by another request since this one began
        flash("Two-factor authentication is already on.", "info")
        return redirect(url_for("account.index"))
    uri = twofactor.provisioning_uri(current_user, secret)
    status = 422 if form.errors else 200
    return render_template("account/two_factor_setup.html", form=form, secret=secret,
                           qr_svg=twofactor.qr_svg(uri), uri=uri), status


def _wait_page(wait: float, field: Any, why: str, **forms: Any) -> ResponseReturnValue:
    """The account page with a throttled form: 429, and how long to wait on the field."""
    seconds = throttle.retry_after(wait)
    field.errors.append(f"{why}. Wait {seconds} seconds, then try again.")
    response = make_response(_page(429, **forms))
    response.headers["Retry-After"] = str(seconds)
    return response


def _second_factor_refusal() -> ResponseReturnValue | None:
    """None when the posted code is right; otherwise the account page saying why."""
    form = SecondFactorForm()
    if not form.validate_on_submit():
        return _page(422, second_factor_form=form)
    result = confirm_second_factor(current_user, form.code.data or "", request.remote_addr or "")
    if result.step is Step.SIGNED_IN:
        return None
    forget_code(form)  # a throttled attempt's code was never checked: maybe a live one
    if result.step is Step.THROTTLED:
        return _wait_page(result.wait, form.code, "Too many wrong codes",
                          second_factor_form=form)
    form.code.errors.append("That code is not right. Enter the newest code from your app, "
                            "or an unused recovery code.")
    return _page(422, second_factor_form=form)


@bp.post("/2fa/disable")
@login_required
@fresh_required
@limiter.limit("10 per minute")
def two_factor_disable() -> ResponseReturnValue:
    if not current_user.has_2fa:
        return redirect(url_for("account.index"))
    if (refusal := _second_factor_refusal()) is not None:
        return refusal
    twofactor.disable(current_user)
    # After a change of factor, the user is offered to end every other sign-in (V7.4.3).
    flash("Two-factor authentication is off. If a device was lost or someone else may know "
          "your codes, use \u201cSign out everywhere\u201d below, under Where you are signed in.",
          "info")
    return redirect(url_for("account.index"))


@bp.post("/2fa/recovery-codes")
@login_required
@fresh_required
@limiter.limit("10 per minute")
def regenerate_recovery_codes() -> ResponseReturnValue:
    if not current_user.has_2fa:
        return redirect(url_for("account.index"))
    if (refusal := _second_factor_refusal()) is not None:
        return refusal
    codes = twofactor.regenerate(current_user)
    return render_template("account/recovery_codes.html", codes=codes, enabled=False)


def _signed_out() -> ResponseReturnValue:
    """This browser's session just ended here: to sign-in, dropping what it kept (as logout)."""
    response = redirect(url_for("auth.login"))
    response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
    return response


@bp.post("/sessions/<int:session_id>/revoke")
@login_required
@fresh_required
def revoke(session_id: int) -> ResponseReturnValue:
    if EmptyForm().validate_on_submit():
        record = g.get("session_record")
        if revoke_session(current_user.id, session_id):
            audit.record("session.revoked", target_user_id=current_user.id,
                         details={"session_id": session_id})
            flash("That session is signed out.", "info")
            if record is not None and record.id == session_id:
                end_session()
                return _signed_out()
        else:
            flash("That session was not found; it may have ended already.", "error")
    return redirect(url_for("account.index"))


@bp.post("/sessions/revoke-all")
@login_required
@fresh_required
def revoke_all_sessions() -> ResponseReturnValue:
    if EmptyForm().validate_on_submit():
        user_id = current_user.id
        count = revoke_all(user_id)
        audit.record("session.revoked_all", actor_id=user_id, target_user_id=user_id,
                     details={"count": count})
        end_session()
        flash("You are signed out everywhere, including here, and your personal access tokens are revoked.", "info")
        return _signed_out()
    return redirect(url_for("account.index"))


def _export_offered(_query: str) -> str:
    """Where a password typed on the way to the export leads: the section that offers it."""
    return url_for("account.index", export="ready", _anchor="your-data")


@bp.get("/export")
@login_required
@fresh_required
@download("download your data", _export_offered)
# Only exports that ran count (export_ran): not a refused fetch, not a HEAD.
@limiter.limit("5 per hour", deduct_when=export_ran)
@limiter.limit("5 per hour", deduct_when=export_ran, key_func=signed_in_user)
def export_data() -> ResponseReturnValue:
    """The signed-in user's own data as a JSON download: no id in the URL, so only theirs.

    A GET that writes (``account.exported``), so that it works as a download link; like the
    audit export it runs only for a request the user made (``refuse_unless_requested``).
    """
    refuse_unless_requested(
        "account.export_refused",
        "The export starts only from its link. Open your account page and choose Download "
        "your data.",
        target_user_id=current_user.id,
    )
    user = current_user._get_current_object()
    name = f"bastion-{user.username}-{utcnow():%Y-%m-%d}.json"
    headers = {"Content-Disposition": f'attachment; filename="{name}"',
               "Cache-Control": "no-store"}
    if request.method != "GET":  # a HEAD is sent nothing, so nothing is exported (or audited)
        return Response(b"", mimetype="application/json", headers=headers)
    # Streamed (the document may be gigabytes); the request context lives until it is sent.
    document = export.open_export(user)
    response = Response(stream_with_context(iter(document)), mimetype="application/json",
                        headers=headers)
    response.call_on_close(document.close)  # also when the client left before the first byte
    return response


@bp.route("/delete", methods=["GET", "POST"])
@login_required
@fresh_required
@limiter.limit("10 per hour", methods=["POST"])
def delete_account() -> ResponseReturnValue:
    """The signed-in user deletes their own account: no id in the URL, so only their own."""
    user = current_user._get_current_object()
    form = DeleteAccountForm()
    refusal = deletion.own_deletion_refusal(user)
    if refusal is None and form.validate_on_submit():
        try:
            done = deletion.delete_own_account(user, confirmation=form.confirm.data or "",
                                               still_signed_in=current_record_live)
        except UserGoneError as exc:  # deleted by an admin since the page loaded
            abort(404, description=str(exc))
        except AdminError as exc:
            if exc.field:
                form.confirm.errors.append(str(exc))
            else:
                refusal = str(exc)
        else:
            end_session()  # its row went with the account; this empties the cookie
            services.notify_deleted(done)  # committed: the address hears of it
            flash("Your account is deleted.", "success")
            response = redirect(url_for("main.index"))
            response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
            return response
    status = 422 if form.errors else 403 if refusal and request.method == "POST" else 200
    return render_template(
        "account/delete.html", form=form, refusal=refusal,
        summary=deletion.deletion_summary(user),
    ), status
