"""Admin forms: the role change (POST, CSRF) and the audit filters (GET, no state change)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from bastion.models import ROLE_NAMES


class RoleForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no type hints
    role = SelectField(
        "Role",
        choices=[SelectChoice(name, name.capitalize()) for name in ROLE_NAMES],
        validate_choice=True,
    )


class AuditFilterForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no type hints
    """Read-only filters in the query string; there is nothing to forge, so no CSRF token."""

    class Meta:
        csrf = False

    user = StringField("User (username or id)", validators=[Optional(), Length(max=64)])
    event = StringField(
        "Event",
        validators=[Optional(), Length(max=64)],
        description="Exact name, or a prefix ending in * such as login.*",
        render_kw={"list": "known-events"},
    )
    since = DateField("From (UTC)", validators=[Optional()], format="%Y-%m-%d")
    until = DateField("To (UTC)", validators=[Optional()], format="%Y-%m-%d")
