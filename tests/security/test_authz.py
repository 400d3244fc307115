"""The authorization rules as Flask-Principal needs: role needs plus object needs."""

from __future__ import annotations

import pytest
from flask import Flask
from flask_principal import RoleNeed, UserNeed

from bastion.models import utcnow
from bastion.security import authz
from tests.factories import ArticleFactory, CommentFactory, UserFactory


@pytest.mark.asvs("V8.1.1", "V8.2.1", "V8.2.2")
def test_needs_follow_role_rank_and_ownership(app: Flask) -> None:
    editor = UserFactory(role_name="editor")
    assert authz.role_needs(editor) == {UserNeed(editor.id), RoleNeed("viewer"), RoleNeed("editor")}
    own = ArticleFactory(author=editor)
    other = ArticleFactory()
    assert authz.object_needs(editor, own) == {
        authz.article_need(a, own.id) for a in ("read", "edit", "delete")
    }
    assert authz.object_needs(editor, other) == set()
    # A viewer who somehow authored an article (demoted editor) keeps only reading rights.
    demoted = UserFactory(role_name="viewer")
    kept = ArticleFactory(author=demoted, status="draft", published_at=None)
    assert authz.object_needs(demoted, kept) == {authz.article_need("read", kept.id)}
    assert authz.can_read_article(demoted, kept)
    assert not authz.can_edit_article(demoted, kept)


@pytest.mark.asvs("V8.2.2")
def test_predicates(app: Flask) -> None:
    admin = UserFactory(role_name="admin")
    editor = UserFactory(role_name="editor")
    viewer = UserFactory()
    disabled = UserFactory(role_name="admin", disabled_at=utcnow())
    draft = ArticleFactory(author=editor, status="draft", published_at=None)
    comment = CommentFactory(author=viewer)
    assert [authz.can_read_article(u, draft) for u in (admin, editor, viewer, disabled, None)] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert [authz.can_edit_article(u, draft) for u in (admin, editor, viewer, disabled)] == [
        True,
        True,
        False,
        False,
    ]
    assert not authz.can_comment(viewer, draft)
    assert authz.can_comment(viewer, comment.article)
    assert [authz.can_edit_comment(u, comment) for u in (admin, editor, viewer)] == [
        True,
        False,
        True,
    ]
    # Like editing: its author or an admin; editors do not moderate (SPEC role table).
    assert [authz.can_delete_comment(u, comment) for u in (admin, editor, viewer)] == [
        True,
        False,
        True,
    ]
    assert not authz.can_delete_comment(UserFactory(), comment)
    assert not authz.can_create_article(viewer)
    assert authz.can_create_article(editor)
