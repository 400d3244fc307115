"""Admin forms: role change, the row actions, 2FA reset and deletion (POST, CSRF), audit
filters (GET)."""

from __future__ import annotations

from wtforms import BooleanField, DateField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from bastion.admin.services import REASON_MAX, REASON_MIN
from bastion.auth.forms import no_control_characters
from bastion.form_input import BastionForm, one_line_break
from bastion.models import ROLE_NAMES


class UserActionForm(BastionForm):  # type: ignore[misc]  # Flask-WTF ships no type hints
    """A row's action (disable, enable, sign out everywhere): the account is named by its
    username as the page showed it, besides the id in the URL.

    On SQLite a deleted account's id can be given to the next one registered, so a page
    left open would otherwise act on someone else; a name that no longer matches is refused
    (``services.TargetChangedError``).
    """

    username = HiddenField(validators=[DataRequired(), Length(max=32)])


class RoleForm(UserActionForm):
    role = SelectField(
        "Role",
        choices=[SelectChoice(name, name.capitalize()) for name in ROLE_NAMES],
        # The service refuses a value that is no role, and audits it (no page offers one).
        validate_choice=False,
    )
    # Shown on the admin's own row only: giving up one's own admin role is asked twice.
    confirm_self = BooleanField("Yes, change my own role")


class TwoFactorResetForm(BastionForm):  # type: ignore[misc]  # Flask-WTF ships no type hints
    """Each field checks itself; that ``confirm`` names the user is the service's rule."""

    confirm = StringField(
        "Username, to confirm",
        validators=[DataRequired(), Length(max=32), no_control_characters],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
    reason = TextAreaField(
        "How you verified this person",
        filters=[one_line_break],
        validators=[
            DataRequired(),
            Length(
                min=REASON_MIN,
                max=REASON_MAX,
                message=f"Say how you verified the person, in {REASON_MIN} to {REASON_MAX} "
                "characters.",
            ),
            no_control_characters,
        ],
        description=(
            "For example: video call, face matched to the ID photo on file. Stored in the "
            "audit log and sent to the user; do not write document numbers."
        ),
        render_kw={"rows": 3},
    )


class DeleteUserForm(BastionForm):  # type: ignore[misc]  # Flask-WTF ships no type hints
    """The username typed again; that it names the user is the service's rule."""

    confirm = StringField(
        "Username, to confirm",
        validators=[DataRequired(), Length(max=32), no_control_characters],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )


class AuditFilterForm(BastionForm):  # type: ignore[misc]  # Flask-WTF ships no type hints
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
