"""Account rules shared by the site, the API and the command line."""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager

import email_validator
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from bastion.extensions import db
from bastion.models import ROLE_NAMES, RetiredUsername, Role, User, utcnow
from bastion.models.locks import lock_user
from bastion.security.passwords import hash_password

USERNAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{1,30})[a-z0-9]$")
MAX_EMAIL = 254  # the column; RFC 5321's limit on a forward path
MAX_EMAIL_LOCAL = 64  # RFC 5321 4.5.3.1.1: octets before the '@' (UTF-8 with SMTPUTF8)
MIN_PASSWORD, MAX_PASSWORD = 12, 128
USERNAME_TAKEN = "That username is taken."
# For admins and the command line only: registration answers a taken address as a free one.
EMAIL_TAKEN = "An account with that email address already exists."
ENCODED_WORD = ('The address cannot contain "=?": mail software decodes it into a '
                "different address.")
# Words an attacker tries first against this site (ASVS V6.1.2, documented in
# docs/authentication.md); the username and the email's local part are added per user.
CONTEXT_WORDS = ("bastion",)


class AccountError(ValueError):
    """A rule was broken; the message is safe to show to the user."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def canonical_username(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw).strip().lower()


def canonical_email(raw: str) -> str:
    """The one stored form of an address: NFKC, trimmed, lower case, with the domain in IDNA
    ASCII (``xn--``; UTS #46, as email-validator computes ``ascii_domain``), so that
    ``user@bücher.example`` and ``user@XN--BCHER-KVA.example`` are one address
    (docs/security.md, "Email addresses").

    Never fails: an address email-validator refuses keeps its domain as typed, in lower
    case. The forms refuse such an address, so it is never stored in a new account.
    """
    return _email_forms(raw)[1]


def email_spellings(raw: str) -> tuple[str, ...]:
    """Every stored spelling that names the mailbox of ``raw``, the one to prefer first: as
    typed (lower case), canonical, with the domain in Unicode.

    All but the canonical one are held only by accounts that migration 0010 left as they
    were, because another account held the address in another spelling.
    """
    typed, canonical, unicode = _email_forms(raw)
    if "\x00" in typed:  # PostgreSQL refuses NUL in text; no address holds one anyway
        return ()
    return tuple(dict.fromkeys((typed, canonical, unicode)))


def _email_forms(raw: str) -> tuple[str, str, str]:
    """``raw`` as typed (NFKC, trimmed, lower case), canonical, and with a Unicode domain."""
    typed = unicodedata.normalize("NFKC", raw).strip().lower()
    local, at, _domain = typed.rpartition("@")
    if not at or len(typed) > MAX_EMAIL:  # too long to be stored: not worth the IDNA work
        return typed, typed, typed
    try:
        # Syntax only, and no rule on where mail can go: those are the validators' to apply,
        # and the canonical form of an address must not depend on them.
        found = email_validator.validate_email(
            typed, check_deliverability=False, globally_deliverable=False
        )
    except email_validator.EmailNotValidError:
        return typed, typed, typed
    return typed, f"{local}@{found.ascii_domain}", f"{local}@{found.domain}"


def email_local_part_problem(address: str) -> str | None:
    """Why the part of ``address`` before its last '@' cannot be mailed as it is stored.

    RFC 5321 limits it to 64 octets; email-validator counts characters, and only in its
    strict mode, so its default let a longer one be stored: the account's confirmation,
    reset and notice mail could then be refused by the relay, and the owner never knows
    why no message comes. An address not yet in the stored form should be made canonical
    (``canonical_email``) first, as the forms do.

    An RFC 2047 encoded word (``=?utf-8?q?victim?=``) is refused too: email-validator takes
    it as ordinary characters, but mail software (Python's own header parser among it)
    decodes it, so the account's mail went to ``victim@...``, another account's mailbox.
    """
    local = address.rpartition("@")[0]
    if "=?" in local:
        return ENCODED_WORD
    octets = len(local.encode("utf-8", "surrogatepass"))
    if octets <= MAX_EMAIL_LOCAL:
        return None
    wider = " (an accented or non-Latin letter counts as 2 to 4)" if not local.isascii() else ""
    return (f"The part before the @ is too long: mail servers accept at most "
            f"{MAX_EMAIL_LOCAL} characters there{wider}.")


def normalise_password(raw: str) -> str:
    """NFKC once, before any check, so equivalent Unicode spellings are one password."""
    return unicodedata.normalize("NFKC", raw)


def username_problem(raw: str) -> str | None:
    name = canonical_username(raw)
    if not USERNAME_RE.match(name):
        return ("Use 3 to 32 letters, digits, '-' or '_', starting and ending with a letter "
                "or digit.")
    return None


def password_problem(password: str, *, username: str = "", email: str = "") -> str | None:
    """Length and context rules; no composition rules (NIST SP 800-63B, ASVS V6.2)."""
    pw = normalise_password(password)
    if "\x00" in pw:
        return "Passwords cannot contain a NUL character."
    if len(pw) < MIN_PASSWORD:
        return f"Use at least {MIN_PASSWORD} characters."
    if len(pw) > MAX_PASSWORD:
        return f"Use at most {MAX_PASSWORD} characters."
    lowered = pw.casefold()
    for context in (canonical_username(username), canonical_email(email).split("@")[0]):
        if len(context) >= 3 and context.casefold() in lowered:
            return "Your password must not contain your username or email address."
    if any(word in lowered for word in CONTEXT_WORDS):
        return "Your password must not contain the name of this site."
    from bastion.security import breached

    if breached.is_common(pw):
        return "This password is too common or has appeared in a data breach. Choose another."
    return None


def username_taken(username: str) -> bool:
    """Whether an account holds ``username`` (in its canonical form) or held it and was
    deleted: a retired name is never given out again (``bastion.admin.deletion``), and is
    refused with the same message, as its profile was public anyway."""
    name = canonical_username(username)
    held = select(User.id).where(User.username == name).exists()
    retired = select(RetiredUsername.username).where(RetiredUsername.username == name).exists()
    return bool(db.session.scalar(select(or_(held, retired))))


def email_taken(email: str, *, by_other_than: int | None = None) -> bool:
    """Whether an account (other than ``by_other_than``, when given) holds ``email``, in
    any of its spellings."""
    stmt = select(func.count()).select_from(User).where(User.email.in_(email_spellings(email)))
    if by_other_than is not None:
        stmt = stmt.where(User.id != by_other_than)
    return (db.session.scalar(stmt) or 0) > 0


def role_named(name: str) -> Role:
    if name not in ROLE_NAMES:
        raise AccountError(f"Unknown role {name!r}.", "role")
    role = db.session.scalar(select(Role).where(Role.name == name))
    if role is None:  # roles are seeded by the first migration; tests create tables directly
        ensure_roles()
        role = db.session.scalar(select(Role).where(Role.name == name))
    assert role is not None
    return role


def ensure_roles() -> None:
    existing = set(db.session.scalars(select(Role.name)))
    for name in ROLE_NAMES:
        if name not in existing:
            db.session.add(Role(name=name, description=f"{name.title()} role"))
    db.session.flush()


def check_new_account(username: str, email: str, password: str) -> None:
    """Every rule a new account must meet but a unique email; raises AccountError.

    Registration runs these before it looks at the email, so a taken address cannot be told
    from a free one by which input errors come back.
    """
    if problem := username_problem(username):
        raise AccountError(problem, "username")
    if problem := password_problem(password, username=username, email=email):
        raise AccountError(problem, "password")
    if username_taken(username):
        raise AccountError(USERNAME_TAKEN, "username")


def create_user(
    username: str,
    email: str,
    password: str,
    *,
    role: str = "viewer",
    confirmed: bool = False,
    commit: bool = True,
) -> User:
    """Validate and create an account; raises AccountError with a user-facing message."""
    check_new_account(username, email, password)
    if email_taken(email):
        # Registration answers the same way whether or not this happens (see auth routes);
        # this message is for admins and the command line only.
        raise AccountError(EMAIL_TAKEN, "email")
    now = utcnow()
    user = User(
        username=canonical_username(username),
        email=canonical_email(email),
        password_hash=hash_password(normalise_password(password)),
        role=role_named(role),
        email_confirmed_at=now if confirmed else None,
        password_changed_at=now,
    )
    db.session.add(user)
    if commit:
        with refusing_duplicates(username, email):
            db.session.commit()
    return user


@contextmanager
def refusing_duplicates(username: str, email: str) -> Iterator[None]:
    """Commit a new account inside this: when the unique index refuses it (a sign-up raced
    past the checks of ``create_user``), roll back and raise the refusal it would have got a
    moment later, not a 500. Any other IntegrityError propagates."""
    try:
        yield
    except IntegrityError:
        db.session.rollback()
        if (refusal := duplicate_account_error(username, email)) is not None:
            raise refusal from None
        raise


def duplicate_account_error(username: str, email: str) -> AccountError | None:
    """What to tell a caller whose new account the unique index refused (the caller has
    rolled back): the address or the username was taken since ``create_user`` checked.
    None when neither is, so the IntegrityError was something else and should propagate."""
    if email_taken(email):
        return AccountError(EMAIL_TAKEN, "email")
    if username_taken(username):
        return AccountError(USERNAME_TAKEN, "username")
    return None


def admin_exists() -> bool:
    return (db.session.scalar(
        select(func.count())
        .select_from(User)
        .join(Role)
        .where(Role.name == "admin", User.disabled_at.is_(None))
    ) or 0) > 0


def find_user_by_email(email: str) -> User | None:
    """The account holding ``email`` in any spelling (``email_spellings``, the first held)."""
    spellings = email_spellings(email)
    if not spellings:
        return None
    users = db.session.scalars(select(User).where(User.email.in_(spellings))).all()
    return min(users, key=lambda user: spellings.index(user.email), default=None)


def find_login_user(login: str) -> User | None:
    """The account named by ``login``: a username, or an email address in any spelling."""
    name = canonical_username(login)
    if "\x00" in name:  # PostgreSQL refuses NUL in text; no account can have one anyway
        return None
    if "@" in name:  # never in a username (USERNAME_RE)
        return find_user_by_email(login)
    return db.session.scalar(select(User).where(User.username == name))


def authenticate(login: str, password: str) -> User | None:
    """The user if the password is right and the account may sign in; else None.

    Unknown user, wrong password, unconfirmed and disabled accounts all cost one password
    verification and give the same None, so neither message nor timing tells them apart.
    Hashes in an old format or with old parameters are upgraded on success.
    """
    from bastion.security.passwords import hash_password as rehash
    from bastion.security.passwords import is_legacy_hash, needs_rehash, verify_password

    typed, password = password, normalise_password(password)
    user = find_login_user(login)
    stored = user.password_hash if user else None
    ok = verify_password(stored, password)
    if not ok and typed != password and is_legacy_hash(stored):
        # Flask-Bcrypt hashed the password as typed, before passwords were normalised: a
        # "µ" or a no-break space in it would otherwise lock the account out for good.
        # Upgraded below to Argon2 of the normalised form, so this runs once per account.
        ok = verify_password(stored, typed)
    if not ok or user is None or not user.is_active or user.email_confirmed_at is None:
        return None
    if stored is not None and needs_rehash(stored):
        replace_password_hash(user, stored, rehash(password), renew=False)
        # Committed either way, never rolled back: that would expire ``user``, and what a
        # sign-in hands on (the fingerprint of the password checked) must stay as checked.
        db.session.commit()
    return user


def new_password_hash(user: User, password: str) -> str:
    """Validate a new password for ``user`` and hash it, storing nothing; raises AccountError.

    Apart from ``set_password`` so that a caller can spend the (slow) hashing before it
    claims a row, not while holding the row's lock.
    """
    if problem := password_problem(password, username=user.username, email=user.email):
        raise AccountError(problem, "password")
    return hash_password(normalise_password(password))


def replace_password_hash(
    user: User, checked_hash: str, password_hash: str, *, renew: bool = True
) -> bool:
    """Store ``password_hash`` (from ``new_password_hash``) in the caller's transaction, if
    the account still holds ``checked_hash``, the hash a password was just checked against;
    False, storing nothing, when another hash was stored since.

    Under the user's row lock, held until the caller commits: a request that checked the
    old password, and stored its hash after a reset or another change had committed, put
    the old password back (a sign-in upgrading the hash) or its own over the owner's new
    one (a change by whoever knew the old password). ``renew=False`` for that upgrade: the
    same password hashed again, so neither its time of change nor the stamp moves.
    """
    lock_user(user.id)
    current = db.session.scalar(select(User.password_hash).where(User.id == user.id))
    if current != checked_hash:
        return False
    if renew:
        store_password_hash(user, password_hash)
    else:
        user.password_hash = password_hash
    return True


def store_password_hash(user: User, password_hash: str) -> None:
    """Set a hash made by ``new_password_hash``; a new stamp, so every emailed link ends."""
    user.password_hash = password_hash
    user.password_changed_at = utcnow()
    user.security_stamp = secrets.token_hex(16)


def set_password(user: User, password: str, *, commit: bool = False) -> None:
    """Validate and store a new password; the caller ends sessions and audits."""
    store_password_hash(user, new_password_hash(user, password))
    if commit:
        db.session.commit()
