"""factory_boy factories; one precomputed Argon2 hash keeps them fast."""

from __future__ import annotations

from typing import Any

import factory
from sqlalchemy import insert

from bastion.extensions import db
from bastion.models import Article, Comment, User, utcnow
from bastion.security.passwords import hash_password

PASSWORD = "correct horse battery staple 42"
_PASSWORD_HASH = hash_password(PASSWORD)
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # of factory users with ``two_factor``


class _Base(factory.alchemy.SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


class UserFactory(_Base):
    class Meta:
        model = User

    class Params:
        role_name = "viewer"
        # Roles in REQUIRE_2FA_ROLES (admin by default) must enrol before anything else; a
        # factory admin is enrolled so tests about other things are not sent to enrolment.
        # ``two_factor=False`` gives the un-enrolled admin the enrolment tests need.
        two_factor = factory.LazyAttribute(lambda o: o.role_name == "admin")

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.test")
    password_hash = _PASSWORD_HASH
    email_confirmed_at = factory.LazyFunction(utcnow)
    password_changed_at = factory.LazyFunction(utcnow)
    role = factory.LazyAttribute(lambda o: _role(o.role_name))
    totp_secret = factory.LazyAttribute(lambda o: _sealed(TOTP_SECRET) if o.two_factor else None)
    totp_enabled_at = factory.LazyAttribute(lambda o: utcnow() if o.two_factor else None)


def _sealed(secret: str) -> str:
    """The secret encrypted as the enrolment service stores it (key from the app's SECRET_KEY)."""
    from bastion.auth.twofactor import _fernet

    return _fernet().encrypt(secret.encode()).decode()


def _role(name: str):  # type: ignore[no-untyped-def]
    from bastion.auth.services import role_named

    return role_named(name)


class ArticleFactory(_Base):
    class Meta:
        model = Article

    author = factory.SubFactory(UserFactory, role_name="editor")
    title = factory.Sequence(lambda n: f"Article {n}")
    slug = factory.Sequence(lambda n: f"article-{n}")
    body_md = "Some *text*."
    body_html = "<p>Some <em>text</em>.</p>"
    summary = "Some text."
    status = "published"
    published_at = factory.LazyFunction(utcnow)


class OldArticleFactory(ArticleFactory):
    """An article in a database below revision 0017_article_search_words, for tests of
    earlier migrations: the model has ``search_words``, the table not yet, so the row is
    written without it (and read back without it: the column is deferred)."""

    class Meta:
        model = Article

    @classmethod
    def _create(cls, model_class: type[Article], *args: Any, **kwargs: Any) -> Article:
        row = {"author_id": kwargs.pop("author").id, **kwargs}
        result = db.session.execute(insert(Article.__table__).values(row))
        db.session.commit()
        return db.session.get_one(Article, result.inserted_primary_key[0])


class CommentFactory(_Base):
    class Meta:
        model = Comment

    article = factory.SubFactory(ArticleFactory)
    author = factory.SubFactory(UserFactory)
    body = "Nice article."
