"""Admin area: users, the audit trail and the security dashboard.

Every change needs a recent re-authentication (``fresh_required``) and is audited by the
service that makes it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import (
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user

from bastion.admin import audit_log, audit_names, bp, dashboard, deletion
from bastion.admin import services as admin
from bastion.admin.forms import (
    AuditFilterForm,
    DeleteUserForm,
    RoleForm,
    TwoFactorResetForm,
    UserActionForm,
)
from bastion.auth.sessions import current_record_live
from bastion.extensions import limiter
from bastion.models import User
from bastion.security import audit, authz
from bastion.security.access import admin_required
from bastion.security.fetch_metadata import download, export_ran, refuse_unless_requested
from bastion.security.freshness import fresh_required

bp.add_app_template_filter(audit_log.details_text, "audit_details")
bp.add_app_template_filter(audit_log.address_breaks, "address_breaks")


def _target(user_id: int) -> User:
    user = admin.get_user(user_id)
    if user is None:
        abort(404, description="There is no user with that id.")
    return user


def _place() -> dict[str, Any]:
    """The users list's search and page an action came from (its query string), so the
    admin comes back to the row they acted on, not to the first page of everyone."""
    page = request.args.get("page", 1, type=int)
    return {"q": request.args.get("q") or None, "page": page if page > 1 else None}


def _back() -> ResponseReturnValue:
    return redirect(url_for("admin.users", **_place()))


@bp.get("")
@admin_required
def home() -> ResponseReturnValue:
    """``/admin`` itself: the area opens on its users list (it was a 404)."""
    return redirect(url_for("admin.users"))


@bp.get("/users")
@admin_required
def users() -> ResponseReturnValue:
    query = request.args.get("q", "", type=str)
    results = admin.search_users(query, page=request.args.get("page", 1, type=int))
    return render_template(
        "admin/users.html",
        results=results,
        query=query,
        role_form=RoleForm(),
        action_form=UserActionForm(),
        place=_place(),
    )


STALE_FORM = "This form is out of date; reload the users list and try again."
CONFIRM_OWN_DEMOTION = (
    "You would lose the powers of your role at once. To change your own role, tick "
    "\u201cYes, change my own role\u201d next to it and choose Change again."
)


def _apply(action: str, user_id: int) -> ResponseReturnValue:
    """Run one admin action from a posted form, turning refusals into a flash message.

    Each service asks again, under its lock, whether this browser is still signed in
    (``current_record_live``): another admin may have ended the session meanwhile. The form
    names the account by username too: an id that now belongs to someone else (SQLite
    reuses a deleted account's) is a 409 that changes nothing."""
    user = _target(user_id)
    form = RoleForm() if action == "role" else UserActionForm()
    if not form.validate_on_submit():
        abort(422, description=STALE_FORM)
    named = form.username.data or ""
    try:
        if action == "role":
            before, wanted = user.role_name, form.role.data or ""
            if (user.id == current_user.id and admin.is_demotion(before, wanted)
                    and not form.confirm_self.data):
                flash(CONFIRM_OWN_DEMOTION, "error")
                return _back()
            admin.set_role(current_user, user, wanted, still_signed_in=current_record_live,
                           named=named)
            promoted = admin.is_promotion(before, user.role_name)
            note = f" {admin.PROMOTION_SIGNS_OUT}" if promoted else ""
            flash(f"{admin.role_changed_text(user.username, user.role_name)}{note}", "success")
        elif action in ("disable", "enable"):
            admin.set_disabled(current_user, user, action == "disable",
                               still_signed_in=current_record_live, named=named)
            flash(f"{user.username} is {action}d.", "success")
        else:
            ended = admin.sign_out_everywhere(current_user, user,
                                              still_signed_in=current_record_live, named=named)
            flash(f"{user.username} is signed out everywhere ({_plural(ended, 'session')} ended, "
                  "personal access tokens revoked).", "success")
    except admin.TargetChangedError as exc:
        abort(409, description=str(exc))
    except admin.AdminError as exc:
        flash(str(exc), "error")
    return _back()


@bp.post("/users/<int:user_id>/role")
@admin_required
@fresh_required
@limiter.limit("60 per minute")
def change_role(user_id: int) -> ResponseReturnValue:
    return _apply("role", user_id)


@bp.post("/users/<int:user_id>/disable")
@admin_required
@fresh_required
@limiter.limit("60 per minute")
def disable_user(user_id: int) -> ResponseReturnValue:
    return _apply("disable", user_id)


@bp.post("/users/<int:user_id>/enable")
@admin_required
@fresh_required
@limiter.limit("60 per minute")
def enable_user(user_id: int) -> ResponseReturnValue:
    return _apply("enable", user_id)


@bp.post("/users/<int:user_id>/sign-out")
@admin_required
@fresh_required
@limiter.limit("60 per minute")
def sign_out_user(user_id: int) -> ResponseReturnValue:
    return _apply("sign-out", user_id)


@bp.route("/users/<int:user_id>/2fa-reset", methods=["GET", "POST"])
@admin_required
@fresh_required
@limiter.limit("10 per minute", methods=["POST"])
def reset_two_factor(user_id: int) -> ResponseReturnValue:
    user = _target(user_id)
    if problem := admin.two_factor_reset_refusal(current_user, user):
        flash(problem, "error")
        return _back()
    form = TwoFactorResetForm()
    if form.validate_on_submit():
        try:
            done = admin.reset_two_factor(current_user, user, confirmation=form.confirm.data or "",
                                          reason=form.reason.data or "",
                                          still_signed_in=current_record_live)
        except admin.UserGoneError as exc:  # deleted by another admin since the page loaded
            abort(404, description=str(exc))
        except admin.AdminError as exc:
            getattr(form, exc.field or "confirm").errors.append(str(exc))
        else:
            flash(f"Two-factor authentication of {user.username} is reset "
                  f"({_plural(done.sessions_ended, 'session')} ended, "
                  f"{_plural(done.tokens_revoked, 'API token')} revoked); they set it up again "
                  "after signing in.", "success")
            return _back()
    return render_template("admin/reset_two_factor.html", form=form, user=user, place=_place()), (
        422 if form.errors else 200
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _deleted_message(done: deletion.Deletion) -> str:
    went = done.summary
    message = (f"The account {done.username} is deleted, with {_plural(went.articles, 'article')}, "
               f"{_plural(went.comments, 'comment')} and {_plural(went.images, 'image')}.")
    if went.images_kept:
        message += (f" {_plural(went.images_kept, 'image')} in other people's articles "
                    "stay with those articles, now their authors'.")
    return message


@bp.route("/users/<int:user_id>/delete", methods=["GET", "POST"])
@admin_required
@fresh_required
@limiter.limit("10 per minute", methods=["POST"])
def delete_user(user_id: int) -> ResponseReturnValue:
    user = _target(user_id)
    form = DeleteUserForm()
    refusal = deletion.deletion_refusal(current_user, user)
    if refusal is None and form.validate_on_submit():
        try:
            done = deletion.delete_user(current_user, user, confirmation=form.confirm.data or "",
                                        still_signed_in=current_record_live)
        except admin.UserGoneError as exc:
            abort(404, description=str(exc))
        except admin.AdminError as exc:
            if exc.field:
                form.confirm.errors.append(str(exc))
            else:
                refusal = str(exc)
        else:
            flash(_deleted_message(done), "success")
            return _back()
    if request.method == "POST" and refusal == deletion.SELF_DELETION:
        # The users list offers no Delete on the admin's own row: a request made by hand.
        authz.record_denial(hide=False, what=f"delete user {user.id}")
    status = 422 if form.errors else 403 if refusal and request.method == "POST" else 200
    return render_template(
        "admin/delete_user.html",
        form=form,
        user=user,
        refusal=refusal,
        summary=deletion.deletion_summary(user),
        place=_place(),
    ), status


BAD_FILTERS = (
    "Check the filters: dates are YYYY-MM-DD, the first not after the last, "
    "and texts at most 64 characters."
)
INVERTED = "This date is before the From date, so no event can match. Swap them?"


def _audit_filter() -> tuple[AuditFilterForm, audit_log.AuditFilter | None]:
    """The form and its filters, or None for filters it refuses (its fields say why).

    Swapped dates are refused as ``flask audit export`` refuses them: answered with an
    empty page, or an empty download audited as an export, they read as "nothing happened".
    """
    form = AuditFilterForm(formdata=request.args)
    if request.args and not form.validate():
        return form, None
    filters = audit_log.AuditFilter(
        user=form.user.data or "",
        event=form.event.data or "",
        since=form.since.data,
        until=form.until.data,
    )
    if audit_log.is_inverted(filters):
        form.until.errors = [*form.until.errors, INVERTED]
        return form, None
    return form, filters


@bp.get("/audit")
@admin_required
def audit_events() -> ResponseReturnValue:
    form, filters = _audit_filter()
    if filters is None:
        # Refused on the form itself, each message by its field, for the admin to correct.
        flash(BAD_FILTERS, "error")
        return render_template(
            "admin/audit.html", form=form, results=None, events=audit_log.known_events()
        ), 400
    # Resolved once, for the query and for the note: a second match_user would search the
    # trail's user.deleted rows again.
    who = audit_log.match_user(filters.user)
    results = audit_log.query_events(
        filters, page=request.args.get("page", 1, type=int), who=who
    )
    return render_template(
        "admin/audit.html", form=form, results=results, events=audit_log.known_events(),
        people=audit_names.actors_and_targets(results.items), count_max=audit_log.COUNT_MAX,
        user_note=None if who.named else _unknown_user_note(filters.user),
    )


def _unknown_user_note(user: str) -> str:
    """What the page says by the User field when it names no account, present or deleted:
    its empty result would otherwise read as an account without events, a typo as "nothing
    happened". Invisible characters are shown as escapes (``audit_log.readable``), so the
    name reads as what was typed; the template escapes the HTML."""
    user = user.strip()
    as_id = " or has that id" if audit_log.as_user_id(user) is not None else ""
    return (
        f"No account, present or deleted, was ever named \u201c{audit_log.readable(user)}"
        f"\u201d{as_id}, so no events match. Check the spelling?"
    )


def _refuse_unless_requested_download() -> None:
    """403 (audited) for an export the admin did not ask for, e.g. an image in a page."""
    refuse_unless_requested(
        "audit.export_refused",
        "The audit export starts only from its link. Open the audit log and choose Export CSV.",
    )


def _audit_offered(query: str) -> str:
    """The audit log with the export's filters: where a password typed on the way to the
    export leads (``fetch_metadata.landing_page``)."""
    page = url_for("admin.audit_events")
    return f"{page}?{query}" if query else page


@bp.get("/audit.csv")
@admin_required
@download("export the audit log", _audit_offered)
# Only exports that ran count (export_ran): not a refused image request, not a HEAD.
@limiter.limit("10 per minute", deduct_when=export_ran)
def export_audit() -> ResponseReturnValue:
    _refuse_unless_requested_download()
    _, filters = _audit_filter()
    if filters is None:
        abort(400, description=BAD_FILTERS)
    name = f"bastion-audit-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv"
    if request.method == "HEAD":  # nothing is sent, so nothing was exported
        return Response(
            mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )
    audit.record("audit.exported", details={k: str(v) for k, v in vars(filters).items() if v})
    return Response(
        stream_with_context(audit_log.export_csv(filters)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.get("/security")
@admin_required
def security() -> ResponseReturnValue:
    window = request.args.get("window", dashboard.DEFAULT_WINDOW)
    if window not in dashboard.WINDOWS:
        window = dashboard.DEFAULT_WINDOW
    charts = dashboard.security_charts(window)
    return render_template(
        "admin/security.html", charts=charts, window=window, windows=list(dashboard.WINDOWS)
    )
