"""Form for creating a personal access token on the account page."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_login import current_user
from wtforms import IntegerField, SelectMultipleField, StringField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange

from bastion.api.pats import SCOPES, role_scopes
from bastion.form_input import BastionForm

SCOPE_HELP = {
    "articles:read": "Read articles and comments",
    "articles:write": "Write, edit and delete your articles",
    "comments:write": "Comment, and delete your comments",
    "admin": "Use your admin rights on other people's content",
}


class CheckboxesField(SelectMultipleField):  # type: ignore[misc]
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class TokenForm(BastionForm):  # type: ignore[misc]
    name = StringField(
        "Name",
        validators=[DataRequired(), Length(max=80)],
        description="What will use it, e.g. “CI”.",
    )
    scopes = CheckboxesField(
        "Scopes",
        choices=[SelectChoice(s, f"{s} — {SCOPE_HELP[s]}") for s in SCOPES],
        validators=[DataRequired(message="Choose at least one scope.")],
        # pats.create judges the choice (shared with the API) and says why in words.
        validate_choice=False,
    )
    # The bounds are settings: the default comes from PAT_DEFAULT_DAYS, and PAT_MAX_DAYS is
    # enforced by ``pats.create`` (shared with the API) and shown here per request.
    days = IntegerField(
        "Expires after (days)",
        default=lambda: current_app.config["PAT_DEFAULT_DAYS"],
        validators=[DataRequired(), NumberRange(min=1)],
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        longest = current_app.config["PAT_MAX_DAYS"]
        self.days.description = f"1 to {longest} days."
        self.days.render_kw = {"max": longest}
        # Only the scopes the user's role holds are offered (pats.create refuses the rest).
        held = role_scopes(current_user) if current_user.is_authenticated else set()
        self.scopes.choices = [c for c in self.scopes.choices if c.value in held]
