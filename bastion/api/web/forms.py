"""Form for creating a personal access token on the account page."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectMultipleField, StringField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange

from bastion.api.pats import SCOPES

SCOPE_HELP = {
    "articles:read": "Read articles and comments",
    "articles:write": "Write, edit and delete your articles",
    "comments:write": "Comment, and delete your comments",
    "admin": "Use your admin rights on other people's content",
}


class CheckboxesField(SelectMultipleField):  # type: ignore[misc]
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class TokenForm(FlaskForm):  # type: ignore[misc]
    name = StringField(
        "Name",
        validators=[DataRequired(), Length(max=80)],
        description="What will use it, e.g. 'CI'.",
    )
    scopes = CheckboxesField(
        "Scopes",
        choices=[SelectChoice(s, f"{s} — {SCOPE_HELP[s]}") for s in SCOPES],
        validators=[DataRequired(message="Choose at least one scope.")],
    )
    days = IntegerField(
        "Expires after (days)",
        default=30,
        validators=[DataRequired(), NumberRange(min=1, max=365)],
        description="1 to 365 days.",
    )
