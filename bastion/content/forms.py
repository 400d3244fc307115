"""Article and comment forms.

Limits and messages come from ``content.services`` (the one validation source the API's
schemas use too); the services re-check everything, so a form is a convenience for the
reader, never the control.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from bastion.content.services import BODY_MAX, COMMENT_MAX, TITLE_MAX, ContentError
from bastion.form_input import BastionForm, one_line_break

REQUIRED = "This field is required."
# Posting or saving an empty comment box: say what to do, not what the form lacks.
EMPTY_COMMENT = "The comment is empty: write something first."


def _too_long(limit: int) -> str:
    return f"Use at most {limit} characters."


class ArticleForm(BastionForm):  # type: ignore[misc]  # Flask-WTF ships no type hints
    title = StringField(
        "Title",
        validators=[DataRequired(REQUIRED), Length(max=TITLE_MAX, message=_too_long(TITLE_MAX))],
    )
    body = TextAreaField(
        "Body",
        filters=[one_line_break],
        validators=[DataRequired(REQUIRED), Length(max=BODY_MAX, message=_too_long(BODY_MAX))],
        description="Markdown: **bold**, *italic*, [links](https://example.org), lists, "
        "code and tables. HTML is not allowed.",
        render_kw={"rows": 18},
    )
    publish = BooleanField("Published (visible to everyone)")
    # Editing: the version the form was loaded from (content.revision). A save over one
    # someone else saved meanwhile is refused instead of silently undoing their change.
    # Empty on a new article, and in forms loaded before it existed (which save as before).
    revision = HiddenField()


class CommentForm(BastionForm):  # type: ignore[misc]  # Flask-WTF ships no type hints
    body = TextAreaField(
        "Comment",
        filters=[one_line_break],
        validators=[
            DataRequired(EMPTY_COMMENT),
            Length(max=COMMENT_MAX, message=_too_long(COMMENT_MAX)),
        ],
        description="Plain text; line breaks are kept.",
        render_kw={"rows": 4},
    )
    # Editing: the text the form was loaded from (content.comment_revision), as for articles:
    # an author's stale edit must not silently undo a moderator's change. Empty when posting.
    revision = HiddenField()


def add_service_error(form: FlaskForm, exc: ContentError) -> None:
    """Show a service's refusal next to the field it is about."""
    field = getattr(form, exc.field or "", None)
    if field is None:
        field = next(iter(f for f in form if f.name != "csrf_token"))
    field.errors = [*field.errors, str(exc)]
