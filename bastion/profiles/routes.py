"""Public profile pages."""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from bastion.content import services as content
from bastion.pagecache import cached_public_page
from bastion.profiles import bp
from bastion.profiles.services import bio_html, find_profile, initials_avatar
from bastion.security.access import public


@bp.get("/u/<username>")
@public
# Anonymous views get "no-cache" and an ETag (bastion.pagecache): without a Cache-Control a
# shared cache may keep a profile by its own default lifetime, still showing it after the
# account is disabled and its page hidden. Signed-in views stay "no-store".
@cached_public_page
def show_profile(username: str) -> ResponseReturnValue:
    user = find_profile(username)
    if user is None:
        abort(404, description="There is no one with that username.")
    page = request.args.get("page", 1, type=int)
    if username != user.username:
        # One address per profile (/u/Ada, /u/ADA and full-width letters are the same person):
        # links, bookmarks and caches then agree on it.
        return redirect(url_for("profiles.show_profile", username=user.username,
                                page=page if page != 1 else None), 301)
    articles = content.list_articles(current_user, author_id=user.id, page=page)
    return render_template(
        "profiles/show.html",
        user=user,
        bio_html=bio_html(user),
        avatar=initials_avatar(user),
        articles=articles,
    )
