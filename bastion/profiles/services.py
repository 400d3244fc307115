"""Public profiles: lookup, the rules for display name and bio, and the initials avatar."""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import load_only

from bastion import pagecache
from bastion.auth.services import canonical_username, username_problem
from bastion.content.image_sizes import sizes_reader
from bastion.content.marks import (
    MAX_MARKS_IN_LINE,
    MAX_MARKS_IN_PROSE,
    longest_mark_run,
    too_many_marks,
)
from bastion.content.rendering import render_markdown
from bastion.content.services import INVISIBLE
from bastion.extensions import db
from bastion.models import User
from bastion.models.locks import lock_user
from bastion.security import audit

DISPLAY_NAME_MAX, BIO_MAX = 80, 2_000

# Display names: characters that draw nothing or break the line the name sits in (controls,
# bidi and zero-width formats, private-use, line/paragraph separators), and
# letters that render blank (Hangul fillers, the Braille blank) and make a name look empty.
# The API schema's pattern (bastion.api.schemas.DISPLAY_NAME) spells out the same set.
REFUSED_CATEGORIES = ("Cc", "Cf", "Co", "Zl", "Zp")
BLANK_LETTERS = "\u115f\u1160\u3164\uffa0\u2800"
# A name needs one character that draws something: combining marks, variation selectors
# and the like (U+034F, U+FE0F, U+17B4...) are allowed beside letters, but alone they made
# a name that looks empty, as the fillers above did. The same set as required article text.
VISIBLE_CHARACTER = f"[^{INVISIBLE}]"  # a constant: no user text reaches a pattern
_VISIBLE = re.compile(VISIBLE_CHARACTER)
NOT_PLAIN = "Use letters, digits, spaces and punctuation only."
# A name sits in bylines among other lines (bastion.content.marks says why).
MAX_MARKS_PER_LETTER = MAX_MARKS_IN_LINE
TOO_MANY_MARKS = too_many_marks(MAX_MARKS_PER_LETTER)
LOOKS_LIKE_STAFF = "That name could be taken for the site's staff. Choose one of your own."

# Letters of other scripts drawn like Latin ones (a subset of Unicode's confusables.txt
# chosen for common fonts), so "st\u0430ff" in part Cyrillic reads as "staff".
_LOOKALIKES = str.maketrans(
    "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0423\u0425\u0405"
    "\u0406\u0408\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0455\u0456\u0458\u04cf"
    "\u04bb\u0501\u051b\u051d"
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5"
    "\u03a7\u03b1\u03b9\u03ba\u03bd\u03bf\u03c1\u03c5\u03c7\u0251\u0261\u0131",
    "ABEKMHOPCTYXSIJaeopcyxsijlhdqw"
    "ABEZHIKMNOPTYXaikvopuxagi",
) | str.maketrans(
    # Cherokee, Lisu, Armenian, Coptic and Greek letters drawn like Latin ones, and Latin
    # small capitals (which decompose to nothing): "\u13aadmin" and "\u1d00\u1d05\u1d0d\u026a\u0274"
    # read as "Admin" as surely as a Cyrillic a does.
    "\u13a0\u13a1\u13a2\u13a5\u13a9\u13aa\u13ab\u13ac\u13b3\u13b7\u13bb\u13c0\u13c3\u13cf"
    "\u13d2\u13d5\u13d9\u13da\u13de\u13df\u13e2\u13e6\u13f4"
    "\ua4d0\ua4d1\ua4d3\ua4d4\ua4d6\ua4d7\ua4d9\ua4da\ua4dc\ua4dd\ua4df\ua4e0\ua4e1"
    "\ua4e2\ua4e3\ua4e6\ua4e7\ua4ea\ua4eb\ua4ec\ua4ee\ua4f0\ua4f2\ua4f3\ua4f4"
    "\u0585\u057d\u0570\u0578\u0566\u054d\u054f\u0555\u053c"
    "\u2c80\u2c82\u2c88\u2c8e\u2c92\u2c94\u2c98\u2c9a\u2c9e\u2c9f\u2ca2\u2ca3\u2ca4"
    "\u2ca5\u2ca6\u2ca8\u2cac\u03f2\u03f3\u03f9"
    "\u1d00\u0299\u1d04\u1d05\u1d07\ua730\u0262\u029c\u026a\u1d0a\u1d0b\u029f\u1d0d"
    "\u0274\u1d0f\u1d18\u0280\ua731\u1d1b\u1d1c\u1d20\u1d21\u028f\u1d22\u0269",
    "DRTiYAJEWMHGZbRSVSLCPKB"
    "BPDTGKJCZFMNLSRVHWXYAEIOU"
    "ouhnqUSOL"
    "ABEHIKMNOoPpCcTYXcjC"
    "abcdefghijklmnoprstuvwyzi",
) | {
    # Negative squared and circled capitals (U+1F170, U+1F150...) decompose to nothing,
    # unlike their outlined forms, which NFKD turns into Latin letters.
    **{0x1F170 + i: chr(ord("A") + i) for i in range(26)},
    **{0x1F150 + i: chr(ord("A") + i) for i in range(26)},
}
# Then letters and digits that pass for each other in most sans-serif fonts ("AdmIn",
# "adm1n" read as "admin").
_FOLDS = (("i", "l"), ("1", "l"), ("0", "o"), ("rn", "m"), ("vv", "w"))
_ASCII_ALNUM = frozenset(string.ascii_lowercase + string.digits)
_WORDS = re.compile(r"[\W_]+")


class ProfileError(ValueError):
    """Invalid profile data; the message is safe to show."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class InitialsAvatar:
    """What the template needs to draw an SVG avatar; no markup is built in Python."""

    initials: str
    hue: int


# What the profile page shows and ``is_public`` asks: never the password hash, TOTP secret,
# email or security stamp. Safe when the row is the viewer's own: an object already in the
# session keeps what it has (load_only never unloads), and one loaded here first is
# completed by the sign-in's query, which fills the columns an object in the session lacks.
# A column left out is still read on first use (one more statement), never wrong.
PROFILE_COLUMNS = (
    User.id,
    User.username,
    User.display_name,
    User.bio,
    User.avatar_id,
    User.role_id,
    User.email_confirmed_at,
    User.disabled_at,
    User.created_at,
)


def find_profile(username: str) -> User | None:
    """The active, confirmed user with that name.

    Disabled accounts have no public page, and neither have unconfirmed ones: such an
    account cannot sign in or publish, may have been started by someone else with the
    owner's address, and its page would tell probers a sign-up is pending (200) where a
    disabled or unknown name answers 404.
    """
    if username_problem(username):
        return None
    user = db.session.scalar(
        select(User)
        .options(load_only(*PROFILE_COLUMNS))
        .where(User.username == canonical_username(username))
    )
    return user if user is not None and is_public(user) else None


def is_public(user: User) -> bool:
    """Whether the user's profile (and so their photo) may be shown to anyone."""
    return user.is_active and user.email_confirmed_at is not None


def bio_html(user: User) -> str:
    """The bio as sanitised Markdown, like an article body (same allowlist)."""
    return _rendered_bio(user.bio) if user.bio.strip() else ""


@lru_cache(maxsize=256)
def _rendered_bio(bio: str) -> str:
    """Bios are rendered on every signed-in profile view, up to about 35 ms each for a hostile
    2,000 characters, and change rarely: each text is rendered once per worker. Keyed by
    the text itself, so an edited bio is never served stale (at most about 7 MB a worker)."""
    return render_markdown(bio, sizes_reader(db.session))


def initials_avatar(user: User) -> InitialsAvatar:
    words = [w for w in user.public_name.replace("_", " ").replace("-", " ").split() if w]
    letters = "".join(w[0] for w in words[:2]) or user.username[:1]
    # A stable colour per account so people are recognisable; not a security property.
    hue = int(hashlib.sha256(user.username.encode()).hexdigest()[:4], 16) % 360
    return InitialsAvatar(initials=letters.upper()[:2], hue=hue)


def _display_name_problem(name: str) -> str | None:
    """What makes ``name`` draw as something other than a plain line of text, if anything."""
    for char in name:
        if unicodedata.category(char) in REFUSED_CATEGORIES or char in BLANK_LETTERS:
            return NOT_PLAIN
    if longest_mark_run(name) > MAX_MARKS_PER_LETTER:
        return TOO_MANY_MARKS
    if name and not _VISIBLE.search(name):
        return NOT_PLAIN
    return None


def skeleton(text: str) -> str | None:
    """How ``text`` reads to someone comparing it with a staff word, or None when it cannot
    pass for one (it has letters or digits of a script no such word is written in).

    Compatibility forms, accents, case, spaces and punctuation are dropped, lookalike
    letters of other scripts become Latin, and look-alike letters and digits are folded.
    """
    # Again after case folding: a small Cherokee letter folds to the capital mapped above.
    text = unicodedata.normalize("NFKD", text).translate(_LOOKALIKES).casefold()
    text = text.translate(_LOOKALIKES).casefold()
    kept = []
    for char in unicodedata.normalize("NFKD", text):
        if char in _ASCII_ALNUM:
            kept.append(char)
        elif unicodedata.category(char)[0] in "LN":
            return None
    folded = "".join(kept)
    for old, new in _FOLDS:
        folded = folded.replace(old, new)
    return folded


# Names that would pass for the site itself or its staff, compared by skeleton.
_STAFF_WORDS = frozenset(
    skeleton(word) or word
    for word in ("admin", "administrator", "moderator", "staff", "bastion", "official",
                 "sysadmin", "superuser", "webmaster")
)


def _words(name: str) -> list[str]:
    """The name's words, a capital after a small letter starting one too: "AdminTeam" and
    "BastionSupport" read as "Admin Team" and "Bastion Support"."""
    words = []
    for part in _WORDS.split(name):
        start = 0
        for index in range(1, len(part)):
            if part[index].isupper() and part[index - 1].islower():
                words.append(part[start:index])
                start = index
        words.append(part[start:])
    return [word for word in words if word]


def staff_name_problem(user: User, display_name: str) -> str | None:
    """Refuse a display name that reads as the site or its staff ("Admin", "Bastion team",
    "St\u0430ff" with a Cyrillic a) unless the user is an admin. Bylines show the name with
    the author's @username, so another member's name cannot sign for them; a staff title in
    the name still could."""
    if user.role_name == "admin":
        return None
    whole = skeleton(display_name)
    if not whole:
        return None
    words = {skeleton(word) for word in _words(display_name)}
    if whole in _STAFF_WORDS or words & _STAFF_WORDS:
        return LOOKS_LIKE_STAFF
    return None


def _bio_control(bio: str) -> str | None:
    """The first control character a bio may not hold (all but line breaks and tabs).

    Here, not only in the account form: ``PATCH /api/v1/me`` calls this service directly,
    and a rule kept in the form let escape sequences and C1 controls onto public profiles.
    """
    return next((c for c in bio if unicodedata.category(c) == "Cc" and c not in "\n\t"), None)


def clean_profile(display_name: str, bio: str) -> tuple[str, str]:
    """Validate a profile edit; used by the account settings form and the API alike."""
    display_name = unicodedata.normalize("NFC", display_name or "").strip()
    # Line breaks as article bodies store them: a lone CR (old Macs, some APIs) is one too.
    bio = unicodedata.normalize("NFC", bio or "").replace("\r\n", "\n").replace("\r", "\n")
    for value, field in ((display_name, "display_name"), (bio, "bio")):
        if "\x00" in value:
            raise ProfileError("Must not contain NUL characters.", field)
    if (char := _bio_control(bio)) is not None:
        raise ProfileError(f"Must not contain control characters (U+{ord(char):04X}).", "bio")
    if problem := _display_name_problem(display_name):
        raise ProfileError(problem, "display_name")
    if len(display_name) > DISPLAY_NAME_MAX:
        raise ProfileError(f"Use at most {DISPLAY_NAME_MAX} characters.", "display_name")
    if len(bio) > BIO_MAX:
        raise ProfileError(f"Use at most {BIO_MAX} characters.", "bio")
    if longest_mark_run(bio) > MAX_MARKS_IN_PROSE:
        raise ProfileError(too_many_marks(MAX_MARKS_IN_PROSE), "bio")
    return display_name, bio


def update_profile(user: User, *, display_name: str, bio: str) -> User:
    """Change only the two public profile fields; nothing else can be set this way.

    The staff-name rule is judged when the name changes only, so a name kept from before
    the rule never blocks the owner from editing their bio.
    """
    display_name, bio = clean_profile(display_name, bio)
    # The role and name as committed now, under the user's lock, which a role change holds
    # while it reads the name it may drop (``bastion.admin.demotion``): judged on a copy
    # loaded before a demotion committed, a staff name was stored after it and stayed.
    lock_user(user.id)
    db.session.refresh(user, attribute_names=["role_id", "role", "display_name"])
    if display_name != user.display_name and (problem := staff_name_problem(user, display_name)):
        db.session.rollback()  # lets go of the lock
        raise ProfileError(problem, "display_name")
    user.display_name, user.bio = display_name, bio
    audit.record("profile.updated", actor_id=user.id, target_user_id=user.id, commit=False)
    db.session.commit()
    # This worker's copies of the profile and of pages with the user's bylines: the owner
    # who looks at once sees the new name (other workers' copies end with their seconds).
    pagecache.clear()
    return user
