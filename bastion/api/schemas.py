"""Request and response models (pydantic 2); the OpenAPI document is generated from them.

Input models forbid unknown fields and never contain read-only ones (``id``, ``role``,
``author``...), so sending those is a 422, not a silent no-op or a mass assignment. Output
models list exactly what a client may see: no password/token hashes, no TOTP secrets, and
email addresses only in ``Me`` (the caller's own).
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from bastion.content.search import MAX_TERMS
from bastion.content.services import INVISIBLE, QUERY_MAX
from bastion.profiles.services import BIO_MAX, DISPLAY_NAME_MAX, NOT_PLAIN

if TYPE_CHECKING:
    from bastion.content.services import Page

# The scopes of bastion.api.pats.SCOPES, as a type (a test keeps the two the same).
Scope = Literal["articles:read", "articles:write", "comments:write", "admin"]
Otp = Annotated[str, StringConstraints(min_length=6, max_length=32)]
# Text the site stores: no NUL characters, and required text must have something visible.
NO_NUL = r"^[^\x00]*$"
VISIBLE = r"^[^\x00]*[^\x00\s][^\x00]*$"


# What bastion.content.services._clean_text refuses, spelled out for the document: control
# characters but tab and line breaks, and in titles the bidi embedding/override/isolate
# controls too (U+202A-U+202E, U+2066-U+2069); and at least one character that draws
# something (outside the service's INVISIBLE class).
_BODY_OK = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_TITLE_OK = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
TEXT = rf"^{_BODY_OK}*[^{INVISIBLE}]{_BODY_OK}*$"
TITLE = rf"^{_TITLE_OK}*[^{INVISIBLE}]{_TITLE_OK}*$"
Title = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=TITLE)]
ArticleBody = Annotated[str, StringConstraints(min_length=1, max_length=100_000, pattern=TEXT)]
CommentBody = Annotated[str, StringConstraints(min_length=1, max_length=5000, pattern=TEXT)]
# One line, as bastion.api.pats.create checks it: no control characters at all (a tab or
# line break too) and no bidi controls, which could make the account page's list read
# another name than the one stored.
_NAME_OK = r"[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
ONE_LINE = rf"^{_NAME_OK}*[^{INVISIBLE}]{_NAME_OK}*$"
TokenName = Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=ONE_LINE)]


def _no_chars_of(categories: tuple[str, ...], extra: str = "") -> str:
    """A pattern refusing every character of the given Unicode categories, and ``extra``.

    JSON Schema regexes have no portable ``\\p{...}``, so the class is spelled out from
    ``unicodedata`` (the same tables the profile service checks with).
    """
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)) in categories or chr(code) in extra:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))

    def char(code: int) -> str:  # BMP as \uXXXX; astral ones literally (no common escape)
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    parts = (char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)
    return f"^[^{''.join(parts)}]*$"


# The profile service refuses control, format, surrogate, private-use and line-breaking
# characters and letters that draw nothing in display names (REFUSED_CATEGORIES and
# BLANK_LETTERS); the schema documents the same rule, and the lengths come from the same
# module, so the documented limits are the enforced ones.
# The refused set is written out because computing it scans all 1.1M code points (half a
# second at every start-up); tests/api/test_schemas_unicode.py recomputes it with this
# Python's tables.
_NAME_REFUSED = (
    "\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-"
    "\\u0891\\u08e2\\u115f-\\u1160\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064"
    "\\u2066-\\u206f\\u2800\\u3164\\ue000-\\uf8ff\\ufeff\\uffa0\\ufff9-\\ufffb\U000110bd"
    "\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f\U000f0000-\U000ffffd\U00100000-\U0010fffd"
)
# Only spaces (stored as no name: the username shows), or one character that draws
# something (not INVISIBLE, as in required article text) among allowed ones.
DISPLAY_NAME = (
    rf"^(?:[^{_NAME_REFUSED}\S]*"
    rf"|[^{_NAME_REFUSED}]*[^{_NAME_REFUSED}{INVISIBLE}][^{_NAME_REFUSED}]*)$"
)
DisplayName = Annotated[str, StringConstraints(max_length=DISPLAY_NAME_MAX, pattern=DISPLAY_NAME)]
# Bios: no control characters but line breaks and tabs (profiles.services.clean_profile).
BIO = rf"^{_BODY_OK}*$"
Bio = Annotated[str, StringConstraints(max_length=BIO_MAX, pattern=BIO)]

# What each pattern asks for, in the services' words: pydantic's own message quotes the
# pattern itself (for a title, 400 characters of escapes), which tells a client nothing.
# A test checks that every pattern in the OpenAPI document is here.
PATTERN_MESSAGES: dict[str, str] = {
    NO_NUL: "Must not contain NUL characters.",
    VISIBLE: "Write something visible, without NUL characters.",
    TITLE: "Write something visible, without control characters or bidirectional text "
    "controls (U+202A to U+202E, U+2066 to U+2069).",
    TEXT: "Write something visible, without control characters other than line breaks and tabs.",
    BIO: "Must not contain control characters other than line breaks and tabs.",
    DISPLAY_NAME: NOT_PLAIN,
    ONE_LINE: "Write one line of visible text, without control characters or bidirectional "
    "text controls (U+202A to U+202E, U+2066 to U+2069).",
}


def _whole_number(value: Any) -> Any:
    """JSON Schema counts 30.0 as an integer; accept it, but not "30" or 30.5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Field before the validator: the other order leaves "ge" out of the JSON Schema. The
# longest allowed expiry is a setting (PAT_MAX_DAYS), so ``bastion.api.pats.create`` checks
# it, and the OpenAPI document fills in the configured value (``bastion.api.openapi``).
Days = Annotated[int, Field(ge=1), BeforeValidator(_whole_number)]


# Query integers of more digits are not converted (``api.routes.page_cost`` reads them alike).
QUERY_INT_DIGITS = 9


def _query_int(value: Any) -> Any:
    """Query integers are plain decimal digits: not "1.0", " 1", "+1" or "1_000".

    A longer number is past the bound of every field that reads one, and reads as such, so
    that the bound's own message refuses it (``page=99999999999999999999`` is "less than or
    equal to 10000", as ``page=10001`` is): "written with digits only" was not true of it.
    """
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise ValueError("must be a whole number written with digits only")
        if len(value) <= QUERY_INT_DIGITS:
            return int(value)
        if len(value.lstrip("0")) > QUERY_INT_DIGITS:
            return 10**QUERY_INT_DIGITS
        raise ValueError(f"must be written with at most {QUERY_INT_DIGITS} digits")
    return value


def _query_bool(value: Any) -> Any:
    """Only "true" and "false", as the document says; not "1", "yes" or "on"."""
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError("must be 'true' or 'false'")
        return value == "true"
    return value


class Input(BaseModel):
    """Strict: JSON types must match exactly ("1" is not 1) and unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ------------------------------------------------------------------------------ auth ---
class TokenRequest(Input):
    username: Annotated[str, StringConstraints(min_length=1, max_length=254, pattern=NO_NUL)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    otp: Otp | None = Field(
        default=None, description="TOTP code or recovery code; required when 2FA is on."
    )


class RefreshRequest(Input):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class RevokeRequest(Input):
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    # RFC 7009 2.1: a hint the server may ignore, and must look past when it is wrong. Every
    # kind of token is looked for whatever it says; it is read only so that clients that
    # send it, as the RFC lets them, are not refused.
    token_type_hint: Literal["access_token", "refresh_token"] | None = Field(
        default=None,
        description="What kind of token 'token' is (RFC 7009): a hint only, as the token is "
        "found whatever its kind, a personal access token too. Omitted or null: no hint.",
    )


class TokenPairOut(Output):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name
    expires_in: int = Field(description="Seconds until the access token expires.")


# ----------------------------------------------------------------------------- users ---
class AuthorOut(Output):
    id: int
    username: str
    display_name: str


class MeOut(Output):
    id: int
    username: str
    email: str | None = Field(
        description="Shown only to a sign-in's token (account scope); null for a personal "
        "access token."
    )
    display_name: str
    bio: str
    role: Literal["viewer", "editor", "admin"]
    has_2fa: bool
    created_at: datetime
    scopes: list[str] = Field(description="What the presented token may do.")


# What null means in a PATCH body: the same as leaving the field out (a test holds every
# PATCH body field that accepts null to saying so).
UNCHANGED = "Omitted or null: left unchanged."


class MeUpdate(Input):
    display_name: DisplayName | None = Field(
        default=None,
        description=f"Shown instead of the username; spaces only: none. {UNCHANGED}",
    )
    bio: Bio | None = Field(default=None, description=f'"" empties it. {UNCHANGED}')


# -------------------------------------------------------------------------- articles ---
class ArticleOut(Output):
    id: int
    title: str
    slug: str
    summary: str
    body: str = Field(description="Markdown source.")
    body_html: str = Field(description="Rendered and sanitised HTML.")
    status: Literal["draft", "published"]
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    author: AuthorOut


class ArticleCreate(Input):
    title: Title
    body: ArticleBody
    publish: bool = False


class ArticleUpdate(Input):
    title: Title | None = Field(default=None, description=UNCHANGED)
    body: ArticleBody | None = Field(default=None, description=f"Markdown. {UNCHANGED}")
    publish: bool | None = Field(
        default=None,
        description=f"true: publish (a draft is dated now); false: back to a draft. {UNCHANGED}",
    )


# Articles on a page of the API's list when the caller does not say.
LIST_PER_PAGE = 20


class ListQuery(BaseModel):
    """Query strings are text, so these are parsed leniently but bounded."""

    model_config = ConfigDict(extra="forbid")

    page: Annotated[int, Field(ge=1, le=10_000), BeforeValidator(_query_int)] = 1
    per_page: Annotated[
        int,
        Field(
            ge=1,
            le=100,
            description="Articles per page. Each started 20 count as one call against the "
            "API rate limit (100: five), as articles carry their whole text.",
        ),
        BeforeValidator(_query_int),
    ] = LIST_PER_PAGE
    q: Annotated[
        str,
        StringConstraints(max_length=QUERY_MAX, pattern=NO_NUL),
        Field(
            description="Words to find in titles and bodies: each must begin a word of the "
            "article (a one-character word must be a whole word); punctuation is never an "
            "operator. Case, full-width letters and ligatures do not matter: both sides are "
            'compared in NFKC with full case folding ("STRASSE" finds "Straße"). '
            f"The first {MAX_TERMS} different words are searched."
        ),
    ] = ""
    mine: Annotated[bool, BeforeValidator(_query_bool)] = Field(
        default=False, description="Only my own articles, drafts included."
    )


class PageMeta(Output):
    page: int
    per_page: int
    total: int
    pages: int

    @classmethod
    def of(cls, page: Page, item: Callable[[Any], BaseModel]) -> Self:
        """A list answer from a service's ``Page``, each row turned into its output model."""
        # Subclasses declare ``items``; output models are accepted as they are, not copied.
        return cls.model_validate(
            {
                "items": [item(row) for row in page.items],
                "page": page.page,
                "per_page": page.per_page,
                "total": page.total,
                "pages": page.pages,
            }
        )


class ArticleList(PageMeta):
    items: list[ArticleOut]


# -------------------------------------------------------------------------- comments ---
class CommentOut(Output):
    id: int
    article_id: int
    body: str
    created_at: datetime
    edited_at: datetime | None = Field(
        description="When the author or a moderator last changed the text; null if never."
    )
    author: AuthorOut


class CommentCreate(Input):
    body: CommentBody


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: Annotated[int, Field(ge=1, le=10_000), BeforeValidator(_query_int)] = 1
    per_page: Annotated[int, Field(ge=1, le=100), BeforeValidator(_query_int)] = 50


class CommentList(PageMeta):
    items: list[CommentOut]


# ---------------------------------------------------------------- personal tokens ---
class PatCreate(Input):
    name: TokenName
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(get_args(Scope)))]
    expires_in_days: Days | None = Field(
        default=None,
        description="Days until the token expires, at most PAT_MAX_DAYS; omitted or null: "
        "PAT_DEFAULT_DAYS.",
    )
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="Your current password: creating a token needs re-authentication."
    )
    otp: Otp | None = Field(
        default=None, description="TOTP code or recovery code; required when 2FA is on."
    )


class PatOut(Output):
    id: int
    name: str
    hint: str = Field(description="The first characters of the token, to recognise it.")
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class PatCreated(PatOut):
    token: str = Field(description="The token itself; shown this once and never again.")


class PatList(Output):
    items: list[PatOut]


# ---------------------------------------------------------------------------- errors ---
class FieldError(Output):
    loc: list[str | int]
    msg: str
    type: str


class Problem(Output):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None
    errors: list[FieldError] | None = None
    otp_required: bool | None = Field(
        default=None,
        description="Set on POST /auth/token when the password was right and the account "
        "uses two-factor authentication: send the request again with 'otp'.",
    )
