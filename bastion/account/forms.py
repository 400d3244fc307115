"""Forms of the account page."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, EqualTo, Length

from bastion.auth.forms import email_field, new_password_field, no_control_characters
from bastion.auth.services import MAX_PASSWORD

MAX_BIO = 1000


class ProfileForm(FlaskForm):
    display_name = StringField(
        "Display name", validators=[Length(max=80), no_control_characters],
        description="Shown instead of your username. Up to 80 characters.",
    )
    bio = TextAreaField(
        "About you", validators=[Length(max=MAX_BIO), no_control_characters],
        description=f"Plain text, up to {MAX_BIO} characters.",
    )


class EmailChangeForm(FlaskForm):
    email = email_field("New email address")


class PasswordChangeForm(FlaskForm):
    current = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=MAX_PASSWORD)]
    )
    password = new_password_field("New password")
    confirm = PasswordField(
        "Repeat new password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )


class EnableTwoFactorForm(FlaskForm):
    code = StringField(
        "Code from your app",
        validators=[DataRequired(), Length(max=16), no_control_characters],
        description="Enter the 6-digit code your authenticator app shows for Bastion.",
    )
