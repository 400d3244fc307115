"""Account forms; each field checks only itself (cross-field rules live in services)."""

from __future__ import annotations

from typing import Any

from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, ValidationError

from bastion.auth.services import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    canonical_email,
    email_local_part_problem,
    password_problem,
    username_problem,
)
from bastion.form_input import BastionForm

PASSWORD_LENGTH = f"Use at least {MIN_PASSWORD} and at most {MAX_PASSWORD} characters."
USERNAME_LENGTH = "Use 3 to 32 characters."  # the hint's words, not WTForms' "Field must be..."
PASSWORD_HINT = (
    f"{MIN_PASSWORD} to {MAX_PASSWORD} characters, any characters you like. A passphrase of "
    "four or more unrelated words is strong and easy to remember. Common or breached "
    "passwords, and ones containing your username or email, are refused."
)


def no_control_characters(_form: Any, field: Any) -> None:
    """NUL and other control characters only ever come from tools, not people."""
    if isinstance(field.data, str) and any(ord(c) < 32 and c not in "\t\r\n" for c in field.data):
        raise ValidationError("This field contains characters that are not allowed.")


def not_common(_form: Any, field: Any) -> None:
    """The password rules that need nothing but the password (``password_problem``), so that
    a common password is named in the same round as a mistyped confirmation, not only once
    the confirmation matches. The service checks them again, with the rules that need the
    username and email."""
    if field.errors:  # too short or too long, named already
        return
    if isinstance(field.data, str) and (problem := password_problem(field.data)):
        raise ValidationError(problem)


def new_password_field(label: str = "Password") -> PasswordField:
    return PasswordField(
        label,
        validators=[
            DataRequired(),
            Length(min=MIN_PASSWORD, max=MAX_PASSWORD, message=PASSWORD_LENGTH),
            not_common,
        ],
        description=PASSWORD_HINT,
        render_kw={"data-password-hint": ""},
    )


def stored_email(value: str | None) -> str | None:
    """The address as it will be stored (``canonical_email``: NFKC, lower case, the domain
    in IDNA ASCII), so the rules judge that form: NFKC can make a valid address invalid or
    another one (U+FF20 becomes '@', U+2474 '(1)', a mail comment), and NFKC or the
    ``xn--`` form can lengthen it past the column's 254 characters."""
    return canonical_email(value) if isinstance(value, str) else value


def mailable_local_part(_form: Any, field: Any) -> None:
    """The part before the '@' within RFC 5321's 64 octets (``email_local_part_problem``)."""
    if isinstance(field.data, str) and (problem := email_local_part_problem(field.data)):
        raise ValidationError(problem)


def email_field(label: str = "Email", *, new_address: bool = True) -> EmailField:
    """An address, judged in its stored form. ``new_address=False`` for a form that only
    looks an account up (password reset): accounts started before the 64-octet rule on the
    local part (``mailable_local_part``) may hold a longer one and must still be found."""
    validators = [DataRequired(), no_control_characters, Length(max=254),
                  Email(check_deliverability=False, message="Enter a valid email address.")]
    if new_address:
        validators.append(mailable_local_part)
    return EmailField(label, filters=[stored_email], validators=validators)


def forget_code(form: Any) -> None:
    """Leave a refused form's code field empty rather than write the code back into the page.

    A code that was never checked (the password beside it was wrong, or the throttle
    refused the attempt) may be a valid, unused recovery code: a password in all but name,
    which the page would otherwise carry in its HTML. A checked one is spent or wrong, of
    no use in the field either.
    """
    if hasattr(form, "code"):
        form.code.data = ""


class LoginForm(BastionForm):
    username = StringField("Username or email",
                           validators=[DataRequired(), Length(max=254), no_control_characters])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    remember = BooleanField("Keep me signed in on this device")
    next = HiddenField()


def username_format(_form: Any, field: Any) -> None:
    """The service's own rule and words (``username_problem``), checked here too so that a
    badly formed username is named with the form's other errors, not a round later."""
    if field.errors:  # its length or characters are named already
        return
    if isinstance(field.data, str) and (problem := username_problem(field.data)):
        raise ValidationError(problem)


def username_field() -> StringField:
    """A new account's username, with the rule the hint states (``check_new_account``)."""
    return StringField(
        "Username",
        validators=[DataRequired(), Length(min=3, max=32, message=USERNAME_LENGTH),
                    no_control_characters, username_format],
        description="3 to 32 letters, digits, '-' or '_', starting and ending with a letter "
                    "or digit. Shown on your public profile.",
    )


class RegisterForm(BastionForm):
    username = username_field()
    email = email_field()
    password = new_password_field()
    confirm = PasswordField(
        "Repeat password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )


class TwoFactorForm(BastionForm):
    code = StringField(
        "Authentication code",
        validators=[DataRequired(), Length(max=64), no_control_characters],
        description="The 6-digit code from your authenticator app, or one of your recovery codes.",
    )
    # Names the sign-in marker the form was shown for (``pending.form_mark``): sent again
    # once that sign-in is done, the form leads where the sign-in went.
    marker = HiddenField()


class ReauthForm(BastionForm):
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    code = StringField(
        "Authentication code",
        validators=[Length(max=64), no_control_characters],
        description="Only when two-factor authentication is on.",
    )
    next = HiddenField()


class ResetRequestForm(BastionForm):
    email = email_field(new_address=False)


class ResetPasswordForm(BastionForm):
    password = new_password_field("New password")
    confirm = PasswordField(
        "Repeat new password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )


class AccountSetupForm(BastionForm):
    """The first admin's account, created from the one-time setup link. Its rules are any
    account's, and so are its hints: a password containing the username was refused here
    without a word beforehand."""

    username = username_field()
    email = email_field()
    password = new_password_field()
    # The setup link works once: a mistyped password would leave an admin account nobody
    # can sign in to (and, without mail, no way to reset it).
    confirm = PasswordField(
        "Repeat password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )


class EmptyForm(BastionForm):
    """A CSRF-protected form with no fields, for POST-only buttons (logout, revoke...)."""
