"""Forms of the account page."""

from __future__ import annotations

from wtforms import HiddenField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, EqualTo, Length

from bastion.auth.forms import email_field, new_password_field, no_control_characters
from bastion.auth.services import MAX_PASSWORD
from bastion.form_input import BastionForm, one_line_break
from bastion.profiles.services import BIO_MAX, DISPLAY_NAME_MAX


class ProfileForm(BastionForm):
    """The rules live in ``profiles.services.clean_profile`` (shared with the API); the
    length validators here only add the browser's ``maxlength`` hint and an early message."""

    display_name = StringField(
        "Display name", validators=[Length(max=DISPLAY_NAME_MAX), no_control_characters],
        description=f"Shown instead of your username. Up to {DISPLAY_NAME_MAX} characters.",
    )
    bio = TextAreaField(
        "About you", filters=[one_line_break],
        validators=[Length(max=BIO_MAX), no_control_characters],
        description=f"Markdown, up to {BIO_MAX} characters; shown on your public profile.",
    )


class EmailChangeForm(BastionForm):
    email = email_field("New email address")


class PasswordChangeForm(BastionForm):
    current = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=MAX_PASSWORD)]
    )
    password = new_password_field("New password")
    confirm = PasswordField(
        "Repeat new password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )


class EnableTwoFactorForm(BastionForm):
    code = StringField(
        "Code from your app",
        validators=[DataRequired(), Length(max=16), no_control_characters],
        description="Enter the 6-digit code your authenticator app shows for Bastion.",
    )
    # The page a user sent here at sign-in was going to; offered once the codes are shown.
    next = HiddenField()


class SecondFactorForm(BastionForm):
    """Turning 2FA off or replacing the recovery codes asks for the factor itself."""

    code = StringField(
        "Code from your app or a recovery code",
        validators=[DataRequired(), Length(max=64), no_control_characters],
        description="Lost your device? An unused recovery code works here too.",
    )


class DeleteAccountForm(BastionForm):
    """The username typed again; that it is the account's is the deletion service's rule."""

    confirm = StringField(
        "Your username, to confirm",
        validators=[DataRequired(), Length(max=32), no_control_characters],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
