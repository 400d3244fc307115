"""Account forms; each field checks only itself (cross-field rules live in services)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, Length

from bastion.auth.services import MAX_PASSWORD, MIN_PASSWORD

PASSWORD_LENGTH = f"Use at least {MIN_PASSWORD} and at most {MAX_PASSWORD} characters."


class LoginForm(FlaskForm):
    username = StringField("Username or email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    remember = BooleanField("Keep me signed in on this device")
    next = HiddenField()


class AccountSetupForm(FlaskForm):
    """The first admin's account, created from the one-time setup link."""

    username = StringField("Username", validators=[DataRequired(), Length(min=3, max=32)])
    email = EmailField(
        "Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)]
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(min=MIN_PASSWORD, max=MAX_PASSWORD, message=PASSWORD_LENGTH)],
        description=f"{MIN_PASSWORD} to {MAX_PASSWORD} characters. A passphrase works well.",
    )


class EmptyForm(FlaskForm):
    """A CSRF-protected form with no fields, for POST-only buttons (logout, revoke...)."""
