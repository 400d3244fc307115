"""Realistic data for the bench: hundreds of users, thousands of articles and comments.

Rows go in through the models (the same columns and defaults the site uses), in bulk so
seeding takes seconds. Every account shares one Argon2 hash of ``PASSWORD``: hashing
hundreds of distinct passwords would add a minute to every run and change nothing that is
measured (each verification costs the same whatever the salt).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, text

from bastion.content.rendering import render_markdown, summarise
from bastion.extensions import db
from bastion.models import Article, Comment, Role, User, utcnow
from bastion.security.passwords import hash_password

PASSWORD = "bench: correct horse battery staple"  # noqa: S105 - throwaway bench accounts
READER = "reader001"
USERS, EDITORS, ARTICLES, COMMENTS = 400, 40, 3000, 12000
FEATURED_COMMENTS = 15

_PARAGRAPHS = (
    "Security that costs little is security that stays switched on. *Measure* it.",
    "A session id in a signed cookie, the record on the server: logout means logout.",
    "Content Security Policy with a nonce per response keeps injected scripts inert.",
    "Rate limits live in Redis so every worker and every instance shares one count.",
    "Argon2id makes each guess expensive; throttling keeps guesses few.",
    "Lists:\n\n- escape output\n- validate input\n- log security events\n",
    "Code is shown as code: `SELECT 1` stays text, and `<script>` stays text too.",
)


@dataclass(frozen=True)
class Seeded:
    """What the scenarios need to know about the data."""

    featured_article_id: int
    reader: str
    logins: list[str]
    users: int
    articles: int
    comments: int


def _body(rng: random.Random) -> str:
    paragraphs = [rng.choice(_PARAGRAPHS) for _ in range(rng.randint(3, 7))]
    return f"## {rng.choice(('Notes', 'Why', 'How', 'Lessons'))}\n\n" + "\n\n".join(paragraphs)


def seed(rng_seed: int = 8) -> Seeded:
    """Fill an empty, migrated database (inside an app context)."""
    rng = random.Random(rng_seed)
    roles = {r.name: r for r in db.session.scalars(select(Role))}
    password_hash = hash_password(PASSWORD)
    now = utcnow()
    users = [
        User(
            username=f"editor{i + 1:03d}" if i < EDITORS else f"reader{i - EDITORS + 1:03d}",
            email=f"user{i + 1:03d}@example.org",
            password_hash=password_hash,
            role=roles["editor" if i < EDITORS else "viewer"],
            display_name=f"Bench User {i + 1}",
            email_confirmed_at=now,
            password_changed_at=now,
        )
        for i in range(USERS)
    ]
    db.session.add_all(users)
    db.session.flush()
    bodies = [_body(rng) for _ in range(40)]
    rendered = [(render_markdown(b), summarise(b)) for b in bodies]
    articles = []
    for i in range(ARTICLES):
        k = rng.randrange(len(bodies))
        articles.append(
            Article(
                author_id=users[rng.randrange(EDITORS)].id,
                title=f"Field notes {i + 1}: {rng.choice(('headers', 'sessions', 'limits', 'tokens'))}",
                slug=f"field-notes-{i + 1}",
                body_md=bodies[k],
                body_html=rendered[k][0],
                summary=rendered[k][1],
                status="published" if i % 10 else "draft",
                published_at=now - timedelta(minutes=ARTICLES - i) if i % 10 else None,
            )
        )
    db.session.add_all(articles)
    db.session.flush()
    published = [a for a in articles if a.status == "published"]
    featured = published[-1]  # the newest: first on the home page
    comments = [
        Comment(
            article_id=featured.id, author_id=users[EDITORS + j].id, body=f"Comment {j}: agreed."
        )
        for j in range(FEATURED_COMMENTS)
    ]
    comments += [
        Comment(
            article_id=rng.choice(published).id,
            author_id=users[rng.randrange(USERS)].id,
            body=rng.choice(("Useful, thanks.", "How does this scale?", "Nice **write-up**.")),
        )
        for _ in range(COMMENTS - FEATURED_COMMENTS)
    ]
    db.session.add_all(comments)
    db.session.commit()
    # A live database has planner statistics (autovacuum gathers them); a freshly bulk-loaded
    # one does not, and the planner would then join every article before sorting.
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    return Seeded(
        featured_article_id=featured.id,
        reader=READER,
        logins=[u.username for u in users[EDITORS:]],
        users=len(users),
        articles=len(articles),
        comments=len(comments),
    )
