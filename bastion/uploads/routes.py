"""Upload pages and the image server. Views validate, call the service and answer."""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.exceptions import RequestedRangeNotSatisfiable, RequestEntityTooLarge

from bastion.auth.forms import EmptyForm
from bastion.auth.sessions import current_record_live
from bastion.content.services import get_article
from bastion.errors import handle_http_exception
from bastion.extensions import limiter, talisman
from bastion.http_preconditions import answer_conditions
from bastion.models import User
from bastion.observability import counters
from bastion.security import audit, authz
from bastion.security.access import editor_required, login_required, public
from bastion.security.fetch_metadata import landing_page
from bastion.security.ratelimit_keys import signed_in_user
from bastion.security.redirects import is_safe_next, safe_next_url
from bastion.security.throttle_audit import first_this_minute
from bastion.uploads import bp, cleanup, commands, imaging, services, storage
from bastion.uploads.forms import ImageUploadForm

# Imported for what importing does: ORM hooks (files follow deleted rows) and the
# `flask uploads check` command.
HOOKS = (cleanup, commands)
log = logging.getLogger("bastion.uploads")
UPLOAD_ENDPOINTS = frozenset({"uploads.upload_avatar", "uploads.upload_article_image"})
# Room for the multipart envelope and the CSRF field around a file of the maximum size.
FORM_ALLOWANCE = 64 * 1024
# Served images are documents of their own: no script, no plugins, no fetches, no origin,
# and, like every page (V3.4.6), never framed: ``default-src`` does not cover framing.
SANDBOX_CSP = "sandbox; default-src 'none'; frame-ancestors 'none'"
VARIANT_SIZES = {str(s): s for s in imaging.AVATAR_SIZES[1:]}


def _upload_rate() -> str:
    return str(current_app.config["UPLOAD_RATE_LIMIT"])


def _next() -> str | None:
    """The posted ``next`` (the page that embeds the form) when it is a safe local path."""
    target = request.form.get("next")
    return target if target and is_safe_next(target) else None


def _back(default: str) -> str:
    """Where to go after a POST: the embedding page, else ``default``. A ``next`` naming a
    download (``/account/export``) leads to the page that offers it, not into the file: a
    form's answer is a same-origin navigation, so a hand-made ``next`` would otherwise have
    the download run unasked (``fetch_metadata.landing_page``)."""
    target = _next()
    return landing_page(target) if target else default


def _actor() -> User:
    return current_user._get_current_object()  # type: ignore[attr-defined,no-any-return]


@bp.url_value_preprocessor
def _allow_upload_bodies(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    """Raise the body limit on upload routes only, before anything reads the body.

    URL value preprocessors run before every ``before_request`` hook, including the CSRF
    check that parses the form, so the larger limit is in place in time and any other route
    keeps the global ``MAX_CONTENT_LENGTH``. Werkzeug refuses a larger declared body with
    413 without reading it, and spools file parts above 500 KB to disk, not memory.
    """
    if endpoint in UPLOAD_ENDPOINTS and request.method == "POST":
        request.max_content_length = current_app.config["MAX_UPLOAD_BYTES"] + FORM_ALLOWANCE


@bp.url_value_preprocessor
def _refuse_unreadable_form(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    """Answer an upload body that cannot be parsed as a form with what went wrong.

    Werkzeug drops a multipart body it cannot read (a file name that is not UTF-8, no
    boundary, a cut-off body) without a word; the CSRF check would then call the upload
    forged, audit a CSRF failure and tell the user to reload. Runs after the body limit
    above is raised, so reading the form here obeys it (413 stays 413).
    """
    if endpoint not in UPLOAD_ENDPOINTS or request.method != "POST":
        return
    if not current_user.is_authenticated:
        return  # the access policy answers first: an anonymous post goes to sign-in
    if request.mimetype != "multipart/form-data" or request.form or request.files:
        return
    audit.record("upload.rejected", actor_id=current_user.id, details={"reason": "unreadable_form"})
    counters.increment("upload_rejections", reason="unreadable_form")
    abort(
        400,
        description="The upload could not be read. Rename the file to a simple name "
        "(letters, digits, dots) and send it again from the upload page.",
    )


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> ResponseReturnValue:
    """Audit oversized uploads too (refused before the service ever sees them).

    A body declared within the limit was refused for its form instead (too many parts, or a
    text field over ``MAX_FORM_MEMORY_SIZE``): saying the file is too large would be wrong.
    """
    if request.endpoint in UPLOAD_ENDPOINTS:
        actor = current_user.id if current_user.is_authenticated else None
        declared, limit = request.content_length, request.max_content_length
        if declared is not None and limit is not None and declared <= limit:
            reason = "form_too_large"
            exc.description = (
                "The form has too many fields or a field that is too long. "
                "Send the image from the upload page's own form."
            )
        else:
            reason = "too_large"
            exc.description = f"The file is larger than {current_app.config['MAX_UPLOAD_MB']} MB."
        # Refused while the form is read, before any rate limit: a stranger's stream of
        # oversized posts stores one row a minute (each is still counted), as CSRF failures.
        if actor is not None or first_this_minute("bastion-upload-audit",
                                                  request.remote_addr or ""):
            audit.record(
                "upload.rejected",
                actor_id=actor,
                details={"reason": reason, "content_length": declared},
            )
        counters.increment("upload_rejections", reason=reason)
    return handle_http_exception(exc)


def _store_from_form(form: ImageUploadForm, **kwargs: Any) -> tuple[bool, int]:
    """Run the service on a submitted form: (stored?, status). Errors land on the field."""
    if not form.validate_on_submit():
        return False, 400 if form.is_submitted() else 200
    try:
        services.store_image(_actor(), form.image.data, still_signed_in=current_record_live,
                             **kwargs)
    except services.UploadError as exc:
        form.image.errors = [*form.image.errors, exc.message]
        return False, exc.status
    return True, 201


@bp.route("/account/avatar", methods=["GET", "POST"])
@login_required
@limiter.limit(_upload_rate, methods=["POST"], key_func=signed_in_user)
def upload_avatar() -> ResponseReturnValue:
    form = ImageUploadForm()
    stored, status = _store_from_form(form, kind="avatar")
    if stored:
        flash("Your profile photo is updated.", "success")
        return redirect(_back(url_for("uploads.upload_avatar")))
    # A refused upload keeps the page it came from, so the retry returns there too.
    return render_template("uploads/avatar.html", form=form, next=_next()), status


@bp.route("/articles/<int:article_id>/images", methods=["GET", "POST"])
@editor_required
@limiter.limit(_upload_rate, methods=["POST"], key_func=signed_in_user)
def upload_article_image(article_id: int) -> ResponseReturnValue:
    actor = _actor()
    # An attempt on the article, like its edit page: refused on a hidden draft, it is
    # audited though it answers the 404 of an id that does not exist.
    article = get_article(actor, article_id, attempt="add images to")
    if article is None:
        abort(404)
    authz.require(authz.can_edit_article(actor, article),
                  what=f"add images to article {article_id}")
    form = ImageUploadForm()
    stored, status = _store_from_form(form, kind="article", article=article)
    if status == 404:
        abort(404)  # the article was deleted while the image was processed
    if stored:
        flash("The image is uploaded. Copy its Markdown into the article.", "success")
        return redirect(_back(url_for("uploads.upload_article_image", article_id=article.id)))
    return render_template(
        "uploads/article_images.html",
        article=article,
        images=services.article_images(article),
        image_form=form,
        next=_next(),  # as for the avatar: the retry returns to the article's edit page
    ), status


@bp.post("/uploads/<upload_id>/delete")
@login_required
def delete_upload(upload_id: str) -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400)
    upload = services.get_upload(upload_id)
    if upload is None:
        abort(404)
    services.delete_upload(_actor(), upload, still_signed_in=current_record_live)
    flash("The image is deleted.", "success")
    return redirect(landing_page(safe_next_url("uploads.upload_avatar")))


def _plain(status: int, text: str) -> Response:
    """An error of the image server as plain text, not the site's HTML error page.

    That page would be shown under the image's sandbox policy, which blocks its
    stylesheet, its icon and its sign-out form, and every visit sent three CSP violation
    reports of its own into the security dashboard.
    """
    resp = Response(text, status=status, mimetype="text/plain")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _absent() -> Response:
    """A missing or hidden image: a plain-text 404."""
    return _plain(404, "There is no image at this address.\n")


def _outside(exc: RequestedRangeNotSatisfiable) -> Response:
    """A byte range the image does not have (a resumed download of a finished one): 416,
    with the ``Content-Range: bytes */<size>`` that says what may be asked for."""
    resp = _plain(416, "That byte range is not part of this image.\n")
    for name, value in exc.get_headers():
        if name.lower() == "content-range":
            resp.headers[name] = value
    return resp


@bp.get("/uploads/<upload_id>")
@public
@talisman(content_security_policy=SANDBOX_CSP, content_security_policy_nonce_in=[])  # type: ignore[untyped-decorator]
def serve_upload(upload_id: str) -> ResponseReturnValue:
    found = services.visible_upload(current_user, upload_id)
    size = request.args.get("size")
    if found is None:
        return _absent()
    upload, is_public = found
    name = upload.storage_name
    if size is not None:
        if size not in VARIANT_SIZES or upload.kind != "avatar":
            return _absent()
        name = storage.variant_name(name, VARIANT_SIZES[size])
    try:
        resp = send_file(
            storage.path_for(name),
            mimetype=upload.content_type,
            download_name=services.download_name(upload),
            etag=f"{upload.id}-{size or 'full'}",  # content never changes under an id
            conditional=False,  # answered below, preconditions before ranges
            max_age=0,  # not the app's default lifetime: the directives are set below
        )
    except FileNotFoundError:
        log.error("upload file missing", extra={"upload_id": upload.id})
        return _absent()
    try:
        resp = answer_conditions(resp, request.environ)
    except RequestedRangeNotSatisfiable as exc:
        return _outside(exc)
    if resp.status_code == 412:
        return resp  # plain text, no-store: not the image's caching
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.cache_control.max_age = None
    resp.headers.pop("Expires", None)
    if is_public:
        # Public only while its article is: shared caches may keep a copy but must revalidate
        # it on every use (a cheap 304 by ETag), so unpublishing or deleting the article
        # hides the image at once, not a max-age later.
        resp.cache_control.public = True
        resp.cache_control.no_cache = True
    else:
        resp.cache_control.private = True
        resp.cache_control.no_store = True
    return resp
