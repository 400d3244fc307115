"""Deleting an account: what it owns goes in one transaction; the audit trail stays.

What goes with the user row: their sessions, refresh tokens, personal access tokens and
second factor (TOTP secret, recovery codes); their articles, each with every comment on
it (other people's too: a comment answers its article and means nothing without it);
their comments on other people's articles; and their images (``bastion.uploads.cleanup``:
the photo, the images of their articles, images attached to no article; the files are
removed once the deletion commits). What stays: images they put into someone else's
article, handed over to its author in the same transaction (``upload.handed_over``), and
the audit trail, whose rows name users by id with no foreign key. The deletion itself is
audited as ``user.deleted`` with the username and the counts; of the email address only
its domain, as ``email.changed`` keeps it.

The username is retired for good, in the same transaction (``retired_usernames``, so a
deletion rolled back retires nothing): registration, the first admin's setup and
``create-admin`` refuse it as a taken one (``bastion.auth.services.username_taken``, in
its canonical form), so no one else is ever shown at the account's ``/u/<name>``, in old
links and mentions, or under its name in the audit trail. The name is kept, as the
``user.deleted`` event keeps it. Accounts never confirmed are not retired, whether a
sign-up, ``users purge-unconfirmed`` or an admin deletes them: they never had a public
page, and an admin deleting one that squats a name frees the name. The event says which it
was (``confirmed``), so the trail tells a name freed on purpose from one that should be
retired.

The previous release, while it still serves after migration 0018, deletes accounts without
retiring their names and writes the event without ``confirmed``. ``retire_missed_usernames``
(``flask --app bastion users retire-deleted``) retires those names afterwards, by the
migration's rule: a name whose last ``user.deleted`` event has no ``confirmed`` flag, that
no account holds and that is not retired yet. A name whose last event has the flag was
decided by that deletion: retired then, or left free (never confirmed, or given back by an
operator since), and the command leaves it so.

Every sign-in ends at the commit: the session rows are gone (a cookie naming one is a
visitor's), the refresh families are revoked in the revocation store, which outlives the
rows (their access tokens are refused at once, even on SQLite, which may give a later
account the same id), personal tokens are gone, and the user's state stamp
(``bastion.api.user_states``) is replaced as for any deleted user.

The database cascades from ``users`` to every row that references it (ON DELETE CASCADE,
enforced on SQLite too: ``bastion.models.sqlite``); only the images are handled in code,
for their files.

Holders delete their own account with ``delete_own_account`` (``/account/delete``): the
same deletion and rules, audited with themselves as actor and ``self: true``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, ScalarSelect, Select, and_, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import InstrumentedAttribute

from bastion import pagecache
from bastion.admin.services import (
    USER_GONE,
    AdminError,
    UserGoneError,
    audit_actor_id,
    clean_reason,
    count_other_active_admins,
    event_details,
    guard_last_admin,
    lock_admins,
    refuse_former_admin,
    still_active_admin,
)
from bastion.auth.services import canonical_username
from bastion.auth.sessions import revoke_all
from bastion.extensions import db
from bastion.models import (
    Article,
    AuditEvent,
    Comment,
    RetiredUsername,
    Upload,
    User,
    utcnow,
)
from bastion.models.locks import lock_articles_of, lock_user
from bastion.security import audit

SELF_DELETION = (
    "You cannot delete your own account from here. To delete it, use \u201cDelete account\u201d "
    "on your account page, which asks for your password again."
)
OWN_LAST_ADMIN = (
    "You are the last active admin, so your account cannot be deleted: the site would have "
    "no one left to run it. Make another account an admin first."
)
SIGNED_OUT_MEANWHILE = "You were signed out while the account was being deleted; nothing was deleted."


@dataclass(frozen=True)
class DeletionSummary:
    """What deleting an account takes along, and the images that stay behind."""

    articles: int
    comments: int  # the comments they wrote, on any article
    comments_by_others: int  # other people's comments on their articles, gone with them
    images: int  # their photo, their articles' images (whoever put them in), loose images
    images_kept: int  # images they put into other people's articles: handed over

    def counts(self) -> dict[str, int]:
        """The counts by name, for the audit event's details."""
        return asdict(self)


@dataclass(frozen=True)
class Deletion:
    """A deletion done: who it was, what went with them, how many sessions ended."""

    username: str
    summary: DeletionSummary
    sessions_ended: int
    email: str  # as read under the locks: where a notice of the deletion can go


def _owned_articles(user_id: int) -> Select[int]:
    return select(Article.id).where(Article.author_id == user_id)


def _count(model: type[Comment] | type[Upload] | type[Article],
           condition: ColumnElement[bool]) -> ScalarSelect[int]:
    return select(func.count()).select_from(model).where(condition).scalar_subquery()


def deletion_summary(user: User) -> DeletionSummary:
    """Count what deleting ``user`` would take along (the rules of ``uploads.cleanup``).

    One statement, each count a subquery of it: one round trip for the confirmation page,
    and five counts of one snapshot where the database gives a statement one (PostgreSQL).
    """
    owned = _owned_articles(user.id)
    counts = db.session.execute(select(
        _count(Article, Article.author_id == user.id).label("articles"),
        _count(Comment, Comment.author_id == user.id).label("comments"),
        _count(
            Comment, and_(Comment.article_id.in_(owned), Comment.author_id != user.id)
        ).label("comments_by_others"),
        _count(Upload, or_(
            Upload.article_id.in_(owned),
            and_(Upload.owner_id == user.id, Upload.article_id.is_(None)),
        )).label("images"),
        _count(Upload, and_(
            Upload.owner_id == user.id,
            Upload.article_id.is_not(None),
            Upload.article_id.not_in(owned),
        )).label("images_kept"),
    )).one()
    return DeletionSummary(**{name: int(value or 0) for name, value in counts._mapping.items()})


def deletion_refusal(actor: User | None, user: User) -> str | None:
    """Why ``user`` cannot be deleted (by ``actor``) as things stand, or None.

    For the page; ``delete_user`` decides again under the locks.
    """
    if actor is not None and actor.id == user.id:
        return SELF_DELETION
    if _last_active_admin(user):
        return f"{user.username} is the last active admin and cannot be deleted."
    return None


def own_deletion_refusal(user: User) -> str | None:
    """Why ``user`` cannot delete their own account as things stand, or None (for the page;
    ``delete_own_account`` decides again under the locks)."""
    return OWN_LAST_ADMIN if _last_active_admin(user) else None


def _last_active_admin(user: User) -> bool:
    return user.is_admin and user.is_active and count_other_active_admins(user) == 0


def _check_under_locks(actor: User | None, user: User, confirmation: str,
                       still_signed_in: Callable[[], bool] | None = None) -> None:
    """Take the admins' and the user's locks (then their articles', the order every change
    to content keeps: ``lock_articles_of``), read ``user`` again and apply every rule;
    on a refusal, roll back (releasing the locks) and raise. ``actor`` is ``user`` when the
    holder deletes their own account: then no admin role is asked for. Either way the
    actor's sign-in (``still_signed_in``) must have lasted: disabling, a password change
    or "sign out everywhere" end it under the same lock."""
    lock_admins()  # role changes, disabling and deletions of admins: one at a time
    lock_user(user.id)  # the user's uploads, tokens and sign-ins wait for the outcome
    # Then their articles, as every change to content takes the article after the actor:
    # one an admin deletes meanwhile is gone first, and not counted in the summary.
    lock_articles_of([user.id])
    own = actor is not None and actor.id == user.id
    try:
        if db.session.scalar(select(User.id).where(User.id == user.id)) is None:
            raise UserGoneError(USER_GONE)
        db.session.refresh(user)
        if still_signed_in is not None and not still_signed_in():
            raise AdminError(SIGNED_OUT_MEANWHILE)
        if actor is not None and not own and not still_active_admin(actor.id):
            refuse_former_admin(f"delete user {user.id}")
        if canonical_username(confirmation) != user.username:
            raise AdminError(f"Type the username {user.username} to confirm.", "confirm")
        if own and _last_active_admin(user):  # the admins' lock is held: this decides
            raise AdminError(OWN_LAST_ADMIN)
        guard_last_admin(user, "deleted")
    except AdminError:
        db.session.rollback()
        raise


def delete_user(actor: User | None, user: User, *, confirmation: str,
                still_signed_in: Callable[[], bool] | None = None) -> Deletion:
    """Delete ``user`` and everything that is theirs (see the module), audited.

    ``confirmation`` is the username, typed again. Refused (AdminError) for the actor's own
    account, for the last active admin, for an actor who is no longer an active admin or
    whose sign-in ended meanwhile (``still_signed_in``, re-read under the locks), and
    (UserGoneError) when the account is already gone. The public pages this worker keeps
    are dropped after the commit, as an article's deletion drops them.
    """
    if actor is not None and actor.id == user.id:
        raise AdminError(SELF_DELETION)
    _check_under_locks(actor, user, confirmation, still_signed_in)
    return _delete_checked(user, actor_id=audit_actor_id(actor), extra=event_details(actor, {}))


def delete_own_account(user: User, *, confirmation: str,
                       still_signed_in: Callable[[], bool] | None = None) -> Deletion:
    """The holder deletes their own account: the deletion above, audited as
    ``user.deleted`` with the user as both actor and target and ``self: true``.

    Refused (AdminError) for the last active admin, for a confirmation that is not the
    username, and when ``still_signed_in`` (the caller's own sign-in, re-checked under the
    user's lock) says the sign-in ended meanwhile; UserGoneError when the account is gone.
    """
    _check_under_locks(user, user, confirmation, still_signed_in)
    return _delete_checked(user, actor_id=user.id, extra={"self": True})


def _retire_username(username: str) -> None:
    """Keep ``username`` from every later account (``retired_usernames``).

    No account should hold a retired name; should one anyway (a row written by SQL), its
    row is kept as it is rather than failing the deletion.
    """
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.execute(
        insert(RetiredUsername)
        .values(username=username, retired_at=utcnow())
        .on_conflict_do_nothing(index_elements=[RetiredUsername.username])
    )


RETIRED_NAME_MAX = 32  # the column's length (retired_usernames, users): longer is no username
RELEASED_EVENT = "users.username_released"
RETIRE_BATCH = 500  # names per statement: within SQLite's bound on a statement's parameters


def missed_usernames() -> dict[str, datetime]:
    """The names a deletion left free that should be retired (see the module), each with
    the time of its last deletion, as the migration dates them.

    The rule of migration 0018's back-fill (which keeps its own frozen copy), but for the
    names whose last ``user.deleted`` event says ``confirmed``: that deletion decided them.
    """
    last: dict[str, tuple[datetime, bool]] = {}
    rows = db.session.execute(
        select(AuditEvent.event, AuditEvent.created_at, AuditEvent.details)
        .where(AuditEvent.event.in_(("user.deleted", RELEASED_EVENT)))
        .order_by(AuditEvent.created_at, AuditEvent.id)
    )
    for event, created_at, details in rows:
        name = details.get("username") if isinstance(details, dict) else None
        # Stored canonical by the deletion; anything else is no username of this site.
        if isinstance(name, str) and 0 < len(name) <= RETIRED_NAME_MAX:
            # A name an operator gave back since was decided by them.
            last[name] = (created_at, event == RELEASED_EVENT or "confirmed" in details)
    missed = {name: at for name, (at, decided) in last.items() if not decided}
    taken = _present(User.username, missed) | _present(RetiredUsername.username, missed)
    return {name: at for name, at in missed.items() if name not in taken}


def _present(column: InstrumentedAttribute[str], names: Collection[str]) -> set[str]:
    """Which of ``names`` ``column`` holds, asked in batches."""
    ordered = sorted(names)
    found: set[str] = set()
    for start in range(0, len(ordered), RETIRE_BATCH):
        batch = ordered[start : start + RETIRE_BATCH]
        found.update(db.session.scalars(select(column).where(column.in_(batch))))
    return found


def retire_missed_usernames(*, details: Mapping[str, object]) -> list[str]:
    """Retire the names ``missed_usernames`` gives, in one transaction; the names retired,
    sorted. Audited as ``users.usernames_retired`` when there are any; run again, it
    retires none and audits nothing.

    A name retired meanwhile (a second run at once) is passed over, not counted. One an
    account registers between the reading and the commit keeps its holder, as a retired
    name held by SQL does for ``_retire_username``: it is retired anyway, as it would be
    when that account is deleted.
    """
    missed = missed_usernames()
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    names = sorted(missed)
    retired: list[str] = []
    for start in range(0, len(names), RETIRE_BATCH):
        batch = names[start : start + RETIRE_BATCH]
        retired.extend(
            db.session.scalars(
                insert(RetiredUsername)
                .values([{"username": name, "retired_at": missed[name]} for name in batch])
                .on_conflict_do_nothing(index_elements=[RetiredUsername.username])
                .returning(RetiredUsername.username)
            )
        )
    retired.sort()
    if retired:
        audit.record(
            "users.usernames_retired",
            details={**details, "count": len(retired), "usernames": retired},
            commit=False,
        )
    db.session.commit()
    return retired


def release_username(username: str, *, reason: str, details: Mapping[str, object]) -> str | None:
    """Give a retired username back, so the next account may register it: for the rare
    case an operator must (an account deleted by mistake whose holder returns, a name
    claimed by its rightful owner). The canonical name, or None when it was not retired.

    A name ``retire_missed_usernames`` has yet to retire is given back too (it would have
    retired it afterwards). Refused (AdminError) while an account holds the name: no other
    could register it, whatever the operator was told.

    Audited as ``RELEASED_EVENT`` with ``reason`` (``clean_reason``); ``retire_missed_usernames``
    then leaves the name free, as a deletion's own decision.
    """
    reason = clean_reason(reason, ask="Say why the name is given back")
    name = canonical_username(username)
    if _present(User.username, (name,)):
        db.session.rollback()
        raise AdminError(f"An account holds {name!r}: no other can register it while it does; "
                         "nothing changed.", "username")
    released = db.session.scalar(
        delete(RetiredUsername)
        .where(RetiredUsername.username == name)
        .returning(RetiredUsername.username)
    )
    if released is None and name not in missed_usernames():
        db.session.rollback()
        return None
    audit.record(RELEASED_EVENT, details={**details, "username": name, "reason": reason},
                 commit=False)
    db.session.commit()
    return name


def _delete_checked(user: User, *, actor_id: int | None,
                    extra: Mapping[str, object]) -> Deletion:
    """Delete ``user`` (every rule passed under the locks held), audit and commit."""
    user_id, username = user.id, user.username
    address = user.email
    domain = address.rpartition("@")[2]
    summary = deletion_summary(user)
    ended = revoke_all(user_id, commit=False)  # revocations outlive the rows deleted below
    confirmed = user.email_confirmed_at is not None  # read under the lock
    if confirmed:  # never confirmed: no page, and the name is left free
        _retire_username(username)  # in this transaction: a deletion rolled back retires nothing
    db.session.delete(user)
    # The uploads hook hands over and removes images before the row goes; the database
    # takes the rest along with it.
    db.session.flush()
    audit.record(
        "user.deleted",
        actor_id=actor_id,
        target_user_id=user_id,
        details={
            "username": username, "email_domain": domain, **summary.counts(),
            "sessions_ended": ended, "confirmed": confirmed, **extra,
        },
        commit=False,
    )
    db.session.commit()
    pagecache.clear()  # their articles and profile, as this worker rendered them
    return Deletion(username=username, summary=summary, sessions_ended=ended, email=address)
