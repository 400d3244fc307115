"""A bio is rendered once per text, not on every profile view."""

from __future__ import annotations

import pytest
from flask import Flask

from bastion.content.rendering import ImageSizes, render_markdown
from bastion.extensions import db
from bastion.profiles import services
from tests.factories import UserFactory
from tests.support.roles import client_for


@pytest.mark.asvs("V15.2.2")
def test_bio_is_rendered_once_per_text_and_never_served_stale(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered: list[str] = []

    def counting(source: str, image_sizes: ImageSizes | None = None) -> str:
        rendered.append(source)
        return render_markdown(source, image_sizes)

    monkeypatch.setattr("bastion.profiles.services.render_markdown", counting)
    services._rendered_bio.cache_clear()
    user = UserFactory(username="ada", bio="**Engines** and [[links] " * 40)
    reader = client_for(app, UserFactory())  # signed in: no shared page cache
    pages = [reader.get("/u/ada").get_data(as_text=True) for _ in range(3)]
    assert all("<strong>Engines</strong>" in page for page in pages)
    assert len(rendered) == 1
    user.bio = "*Changed*"
    db.session.commit()
    assert "<em>Changed</em>" in reader.get("/u/ada").get_data(as_text=True)
    assert len(rendered) == 2
